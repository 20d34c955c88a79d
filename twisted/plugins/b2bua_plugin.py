"""twistd plugin: ``twistd b2bua --config FILE``. Kept tiny: b2bua.tap is imported lazily."""

from twisted.application.service import ServiceMaker

b2bua = ServiceMaker(
    "b2bua",
    "b2bua.tap",
    "SIP back-to-back user agent with Diameter Ro online charging",
    "b2bua",
)
