"""twistd plugin: ``twistd ocs --config FILE``, the lab OCS. b2bua.ocs.tap is imported lazily."""

from twisted.application.service import ServiceMaker

ocs = ServiceMaker(
    "ocs",
    "b2bua.ocs.tap",
    "the lab online charging system: a Diameter Ro credit-control server for b2bua",
    "ocs",
)
