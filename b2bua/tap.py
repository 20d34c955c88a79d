"""``twistd b2bua``: command-line options and the service tree.

The configuration is read and validated in `Options.postOptions`, before twistd
daemonizes and before any socket is bound: a bad file stops start-up with one line per
problem on stderr and exit code 2. `makeService` then builds a `B2buaService` whose
children start in dependency order and stop in reverse.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.application.service import IService, MultiService
from twisted.python import usage

from b2bua import logs
from b2bua.config import Config, ConfigError, load_config
from b2bua.diameter.service import DiameterService, make_diameter_service, validate_diameter
from b2bua.ocs.server import make_ocs_service
from b2bua.sip.endpoint import SipEndpoint
from b2bua.sip.service import SipService
from b2bua.timers.driver import WheelDriver
from b2bua.timers.wheel import TimerWheel

log = logs.logger(__name__)

EXIT_CONFIG_ERROR = 2
EXIT_START_FAILED = 1


class Options(usage.Options):
    """``twistd b2bua`` options."""

    synopsis = "[--config FILE] [--check]"
    longdesc = (
        "Run the b2bua SIP back-to-back user agent with Diameter Ro online charging. "
        "See b2bua(8) and b2bua.conf(5)."
    )
    optParameters = [
        ["config", "c", "/etc/b2bua/b2bua.conf", "the configuration file (INI, see b2bua.conf(5))"],
    ]
    optFlags = [
        ["check", None, "validate the configuration file, print the result and exit"],
    ]

    config: Config

    def postOptions(self) -> None:
        """Validate the configuration now, so that nothing binds with a bad file."""
        try:
            self.config = load_config(self["config"])
            problems = validate_diameter(self.config)
            if problems:
                raise ConfigError(problems)
        except ConfigError as err:
            for line in err.problems:
                sys.stderr.write(line + "\n")
            raise SystemExit(EXIT_CONFIG_ERROR) from None
        if self["check"]:
            sys.stdout.write(f"{self['config']}: configuration OK\n")
            raise SystemExit(0)


class B2buaService(MultiService):
    """The root service: starts children in order; a child that cannot start ends start-up.

    MultiService already stops children in reverse order. A failure to start (a port in
    use, an unreadable certificate) becomes one critical log line and exit status 1
    instead of a traceback.
    """

    timers: WheelDriver
    endpoint: SipEndpoint
    diameter: DiameterService | None

    def startService(self) -> None:
        try:
            super().startService()
        except SystemExit:
            raise
        except Exception as err:  # start-up boundary: any failure ends the process cleanly
            log.critical("cannot start: {error}", error=_describe(err))
            raise SystemExit(EXIT_START_FAILED) from None
        log.info("b2bua started ({children})", children=", ".join(self.namedServices) or "-")

    def stopService(self) -> Any:
        log.info("b2bua stopping")
        stopped = super().stopService()
        self.timers.stop()
        return stopped


def _describe(err: BaseException) -> str:
    text = str(err) or err.__class__.__name__
    return text.replace("\n", " ")


def build_service(config: Config, reactor: Any) -> B2buaService:
    """The service tree for `config`, on `reactor` (tests pass a fake one).

    One timer wheel serves the whole process (transactions, calls, charging), driven by
    one reactor timer.
    """
    logs.set_level(config.log.level)
    root = B2buaService()
    root.setName("b2bua")
    timers = WheelDriver(TimerWheel(), reactor)
    root.timers = timers
    if config.ocs.enabled:
        make_ocs_service(config, reactor, timers).setServiceParent(root)
    root.diameter = None
    if config.peers:
        root.diameter = make_diameter_service(config, reactor, timers)
        root.diameter.setServiceParent(root)
    endpoint = SipEndpoint(config.sip, reactor, timers)
    SipService(endpoint).setServiceParent(root)
    root.endpoint = endpoint
    return root


def makeService(options: Options) -> IService:
    """twistd entry point."""
    from twisted.internet import reactor

    return build_service(options.config, reactor)
