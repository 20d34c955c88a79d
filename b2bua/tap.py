"""``twistd b2bua``: command-line options and the service tree.

The configuration is read and validated in `Options.postOptions`, before twistd
daemonizes and before any socket is bound: a bad file stops start-up with one line per
problem on stderr and exit code 2. `makeService` then builds a `B2buaService` whose
children start in dependency order and stop in reverse.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from twisted.application.service import IService, Service
from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.python import usage

from b2bua import logs
from b2bua.call.callmap import CallMap, make_call_service
from b2bua.charging.controller import ChargingController, event_figures
from b2bua.charging.engine import ChargingEngine, DiameterClient, RoIdentity
from b2bua.charging.messages import SessionIdGenerator
from b2bua.charging.messaging import EventCharger
from b2bua.config import Config, ConfigError, load_config
from b2bua.daemon import DaemonRoot, StopOnSignals, refuse_configuration
from b2bua.diameter.dictionary import APP_CREDIT_CONTROL, CMD_ABORT_SESSION, CMD_RE_AUTH
from b2bua.diameter.message import Message
from b2bua.diameter.service import DiameterService, make_diameter_service, validate_diameter
from b2bua.ocs.operator import late_namespace
from b2bua.ocs.server import make_ocs_service
from b2bua.ops.cdr import CdrFile, CdrWriter, engine_lookup
from b2bua.ops.gctune import tune_gc
from b2bua.ops.logfile import LogDestination, take_over
from b2bua.ops.logfile import current as current_log_destination
from b2bua.ops.manhole import ManholeService, make_manhole_service
from b2bua.ops.metrics import MetricsService, Sources, collect
from b2bua.ops.reload import SighupService, reload_config
from b2bua.sip.endpoint import SipEndpoint
from b2bua.sip.service import SipService
from b2bua.store.service import StoreService, join_calls, make_store_service
from b2bua.timers.driver import WheelDriver
from b2bua.timers.wheel import TimerWheel

log = logs.logger(__name__)


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
            refuse_configuration(err.problems)
        if self["check"]:
            sys.stdout.write(f"{self['config']}: configuration OK\n")
            raise SystemExit(0)
        # twistd builds its log observer after this: hand it ours ([log] format).
        log_settings = self.config.log
        take_over(getattr(self, "parent", None), log_settings.format, log_settings.level)


class B2buaService(DaemonRoot):
    """The root service: starts children in order; a child that cannot start ends start-up
    (`DaemonRoot`); stops them one at a time in reverse order."""

    timers: WheelDriver
    endpoint: SipEndpoint
    diameter: DiameterService | None
    clock: IReactorTime
    calls: CallMap
    charging: ChargingEngine | None
    metrics: MetricsService | None
    cdr: CdrWriter | None
    config: Config
    manhole: ManholeService | None
    store: StoreService | None = None
    log_output: LogDestination | None = None  # the log file SIGHUP reopens

    def startService(self) -> None:
        super().startService()
        log.info("b2bua started ({children})", children=", ".join(self.namedServices) or "-")

    def stopService(self) -> Deferred[None]:
        """Stop children one at a time, last started first.

        MultiService would stop them all at once; the order matters here: the calls end
        (BYE both legs, CCR-T) while SIP can still send, the CCR-Ts are answered before
        Diameter says DPR, and the in-process OCS goes last.
        """
        log.info("b2bua stopping")
        return ensureDeferred(self._stop_in_order())

    async def _stop_in_order(self) -> None:
        Service.stopService(self)
        for child in reversed(list(self)):
            if child is self.diameter:
                await self._wait_for_answers()
            try:
                await maybeDeferred(child.stopService)
            except Exception:  # stop boundary: one child's failure must not stop the rest
                log.failure("stopping {name} failed", name=child.name)
        self.timers.stop()

    async def _wait_for_answers(self) -> None:
        """Give requests in flight (the last CCR-Ts) up to Tx to be answered."""
        diameter = self.diameter
        assert diameter is not None
        deadline = self.clock.seconds() + diameter.settings.tx_timeout
        while diameter.pending_count and self.clock.seconds() < deadline:
            await deferLater(self.clock, 0.05, lambda: None)


def build_service(config: Config, reactor: Any) -> B2buaService:
    """The service tree for `config`, on `reactor` (tests pass a fake one).

    One timer wheel serves the whole process (transactions, calls, charging), driven by
    one reactor timer.
    """
    logs.set_level(config.log.level)
    root = B2buaService()
    root.setName("b2bua")
    root.config = config
    root.clock = reactor
    timers = WheelDriver(TimerWheel(), reactor)
    root.timers = timers
    ocs = None
    if config.ocs.enabled:
        ocs = make_ocs_service(config, reactor, timers)
        ocs.setServiceParent(root)
    root.diameter = None
    if config.peers:
        root.diameter = make_diameter_service(config, reactor, timers)
        root.diameter.setServiceParent(root)
    # [store]: a child before SIP and the calls, so that it stops after them (the calls
    # stay up, their state is final) and before Diameter: the final writes go out. Its
    # start restores calls one reactor turn later, when SIP and charging are running.
    root.store = None
    if config.store.mode != "memory":
        root.store = make_store_service(config.store, reactor)
        root.store.setServiceParent(root)
    endpoint = SipEndpoint(config.sip, reactor, timers)
    SipService(endpoint).setServiceParent(root)
    root.endpoint = endpoint
    calls = make_call_service(config, endpoint, timers)
    calls.setServiceParent(root)
    root.calls = calls.callmap
    root.charging = None
    if root.diameter is not None:
        # With a store, the engine's CCRs pass its gate (restore waits for a peer; fencing).
        client = root.diameter if root.store is None else root.store.guard(root.diameter)
        root.charging = charging_engine(
            config, root.diameter, calls.callmap, timers, reactor, client=client
        )
    if root.store is not None:
        join_calls(root.store, calls, root.charging)
    root.cdr = None
    if config.cdr.file:
        # Observes after the charging controller: the CCR-Ts have left when it writes.
        output = CdrFile(config.cdr.file, max_bytes=config.cdr.max_bytes, keep=config.cdr.keep)
        lookup = engine_lookup(root.charging) if root.charging is not None else None
        events = event_figures if root.charging is not None else None
        root.cdr = CdrWriter(output, lookup, events)
        calls.callmap.add_observer(root.cdr)
        calls.callmap.messages.observers.append(root.cdr)  # after the charging controller
    root.metrics = None
    if config.metrics.listen:
        sources = Sources(calls.callmap, endpoint, root.diameter, root.charging, root.store)
        root.metrics = MetricsService(config.metrics.listen, lambda: collect(sources), reactor)
        root.metrics.setName("metrics")
        root.metrics.setServiceParent(root)
    root.manhole = None
    if config.manhole.listen or config.manhole.ssh_listen:
        root.manhole = make_manhole_service(root, reactor, lambda: reload_config(root))
        if ocs is not None:  # the in-process lab OCS: top_up(), show(), ... in the console
            root.manhole.namespace.update(late_namespace(lambda: ocs.operator))
        if root.store is not None:
            root.manhole.namespace["store"] = root.store
        root.manhole.setServiceParent(root)
    return root


def charging_engine(
    config: Config,
    diameter: DiameterService,
    callmap: CallMap,
    timers: WheelDriver,
    clock: Any,
    *,
    client: DiameterClient | None = None,
) -> ChargingEngine:
    """The Ro charging engine, joined to the call map and to the Diameter client.

    ``client``: what the engine sends its CCRs through (default ``diameter``).
    """
    controller = ChargingController(callmap, config.charging.ro_settings(), clock)
    identity = RoIdentity(
        diameter.origin_host,
        diameter.origin_realm,
        diameter.destination_realm,
        diameter.destination_host or None,
    )
    engine = ChargingEngine(
        client=client or diameter,
        calls=controller,
        driver=timers,
        identity=identity,
        config=config.charging.charging_config(),
        single_ro_session_per_dialog=bool(config.charging.single_ro_session_per_dialog),
        termination_retry_interval=config.charging.termination_retry_interval,
        termination_retry_limit=config.charging.termination_retry_limit or None,
    )
    controller.engine = engine
    controller.events = EventCharger(
        client=diameter,
        control=controller,
        driver=timers,
        identity=identity,
        session_ids=SessionIdGenerator(identity.origin_host, timers.seconds()),
        config=config.charging.charging_config(),
        stats=engine.stats,
        continue_on_failure=config.charging.direct_debiting_failure_handling == "continue",
        keep_termination=engine.keep_termination,
    )
    callmap.messages.observers.append(controller)
    for command, handler in (
        (CMD_RE_AUTH, engine.handle_rar),
        (CMD_ABORT_SESSION, engine.handle_asr),
    ):
        diameter.register_handler(APP_CREDIT_CONTROL, command, _ignore_peer(handler))
    callmap.add_observer(controller)
    return engine


def _ignore_peer(handler: Callable[[Message], Message]) -> Callable[[Message, str], Message]:
    """The engine answers RAR/ASR by Session-Id alone; the service also names the peer."""
    return lambda request, peer: handler(request)


def makeService(options: Options) -> IService:
    """twistd entry point."""
    from twisted.internet import reactor

    root = build_service(options.config, reactor)
    root.log_output = current_log_destination()
    SighupService(root, reactor).setServiceParent(root)
    StopOnSignals(reactor).setServiceParent(root)
    tune_gc()
    return root
