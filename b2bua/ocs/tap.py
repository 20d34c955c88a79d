"""``twistd ocs``: the lab online charging system as its own process.

``twistd ocs --config FILE`` reads the same INI format as b2bua (b2bua.conf(5)); it uses
the ``[ocs]`` and ``[log]`` sections and ignores the others, so one file can serve both
daemons. The configuration and the accounts file are validated in `Options.postOptions`,
before twistd daemonizes or anything is bound: a mistake is one line per problem on stderr
and exit status 2; ``--check`` validates and exits. The ``enabled`` switch of ``[ocs]`` is
for ``twistd b2bua`` only: ``twistd ocs`` always runs the OCS.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from b2bua import logs
from b2bua.config import Config, ConfigError, load_config
from b2bua.daemon import DaemonRoot, StopOnSignals, refuse_configuration
from b2bua.ocs.accounts import Account, AccountsFileError, load_accounts
from b2bua.ocs.operator import late_namespace
from b2bua.ocs.server import OcsService, make_ocs_service
from b2bua.ops.gctune import tune_gc
from b2bua.ops.manhole import ManholeService, PasswdChecker
from b2bua.ops.passwd import read_passwd
from b2bua.timers.driver import WheelDriver
from b2bua.timers.wheel import TimerWheel

log = logs.logger(__name__)


class Options(usage.Options):
    """``twistd ocs`` options."""

    synopsis = "[--config FILE] [--check]"
    longdesc = (
        "Run the lab online charging system: a Diameter credit-control server (RFC 4006, "
        "Ro) holding prepaid balances for b2bua. It reads the [ocs] and [log] sections of "
        "the configuration file. See b2bua.conf(5)."
    )
    optParameters = [
        ["config", "c", "/etc/b2bua/ocs.conf", "the configuration file (INI, see b2bua.conf(5))"],
    ]
    optFlags = [
        ["check", None, "validate the configuration and accounts files, print the result, exit"],
    ]

    config: Config
    accounts: list[Account]

    def postOptions(self) -> None:
        """Validate the configuration and the accounts now, before anything binds."""
        try:
            self.config = load_config(self["config"])
            path = self.config.ocs.accounts
            self.accounts = load_accounts(path) if path else []
        except ConfigError as err:
            refuse_configuration(err.problems)
        except AccountsFileError as err:
            refuse_configuration([f"{self['config']}: [ocs] accounts: {err}"])
        if self["check"]:
            sys.stdout.write(
                f"{self['config']}: configuration OK ({len(self.accounts)} accounts)\n"
            )
            raise SystemExit(0)


class OcsRoot(DaemonRoot):
    """The root service of ``twistd ocs``: the timer wheel's driver and the OCS.

    A child that cannot start ends start-up (`DaemonRoot`). The wheel keeps running until
    the OCS has stopped (its DPA waits are timers).
    """

    def __init__(self, driver: WheelDriver) -> None:
        super().__init__()
        self.driver = driver

    def startService(self) -> None:
        self.driver.start()
        super().startService()
        log.info("ocs started")

    def stopService(self) -> Any:
        log.info("ocs stopping")
        stopped = super().stopService()

        def stop_wheel(result: object) -> object:
            self.driver.stop()
            return result

        return stopped.addBoth(stop_wheel)


def build_service(options: Options, reactor: Any) -> OcsRoot:
    """The service tree of ``twistd ocs`` on `reactor` (tests pass a fake one)."""
    config = options.config
    logs.set_level(config.log.level)
    driver = WheelDriver(TimerWheel(), reactor)
    root = OcsRoot(driver)
    root.setName("ocs")
    ocs: OcsService = make_ocs_service(config, reactor, driver, accounts=options.accounts)
    ocs.setServiceParent(root)
    if config.manhole.listen:  # the operator's console: top_up(), show(), reauth(), ...
        namespace: dict[str, object] = {"ocs": ocs}
        namespace.update(late_namespace(lambda: ocs.operator))
        checker = PasswdChecker(read_passwd(config.manhole.passwd))
        ManholeService(config.manhole.listen, checker, namespace, reactor).setServiceParent(root)
    return root


def makeService(options: Options) -> IService:
    """twistd entry point."""
    from twisted.internet import reactor

    root = build_service(options, reactor)
    StopOnSignals(reactor).setServiceParent(root)  # SIGTERM is an operator's stop: exit 0
    tune_gc()
    return root
