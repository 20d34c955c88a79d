"""The SIP service: binds the endpoint's listeners on start, closes them on stop."""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import gatherResults

from b2bua.sip.endpoint import SipEndpoint


class SipService(Service):
    """Runs one `SipEndpoint` inside the twistd service tree."""

    name = "sip"

    def __init__(self, endpoint: SipEndpoint) -> None:
        self.endpoint = endpoint

    def startService(self) -> None:
        self.endpoint.listen()
        super().startService()

    def stopService(self) -> Any:
        super().stopService()
        return gatherResults(self.endpoint.stop())
