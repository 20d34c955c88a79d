"""The store in the service tree: write-through, the queue, leases and adoption (glue).

``[store] mode`` (Kamailio's ``db_mode``):

* ``realtime``: every change the recorder reports is written at the end of the reactor
  turn (several changes of one call in one turn: one write).
* ``shutdown``: every call is written when the service stops, and read back at start
  (then deleted from Redis: until the next clean stop the calls live in memory only).
* ``memory``: no store at all (:func:`make_store_service` is not called).

At start the instance takes over its lease and its records in one step
(:meth:`~b2bua.store.base.CallStore.take_over`) and restores them; a record that cannot
be read is logged, counted and deleted. Every ``renew_interval`` it renews the lease and
tries to adopt the records of every other registered instance; the store hands them to
exactly one survivor, and only once the owner's lease has run out. Adopted calls are
restored with ``end = (adopt == "end")``.

Restored and adopted calls are back on the SIP side at once; their CCRs wait in the
:class:`~b2bua.store.gate.CcrGate` until a Diameter peer is usable (``diameter_wait``).

Fencing. Once no renewal has been confirmed for ``lease_time`` (Redis out of reach, the
process paused), a survivor may adopt this instance's calls at any moment. From then on
until a renewal gets through, nothing is written, and when other instances share the
store, no CCR but a new call's CCR-I leaves (the gate holds them). The renewal says
whether the calls are still ours; if a survivor took some (:class:`~b2bua.store.base.Renewed`
names them), they are dropped here without BYE or CCR-T (the survivor ends or charges
them: one CCR-T per session, from it alone), and the rest is written again.

Redis away while running: calls go on from memory, writes wait in a bounded
:class:`~b2bua.store.core.WriteQueue` (one entry per call, its latest state) and are
written in order when a renewal gets through again; past the limit, every call is
written again instead. One log line marks each transition. A stop writes what is
waiting (bounded by ``connect_timeout``) and leaves the lease to run out, so that the
next start of this instance, or else a survivor, takes the calls over.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.defer import TimeoutError as NoAnswer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall

from b2bua import logs
from b2bua.call.callmap import CallService
from b2bua.charging.engine import ChargingEngine
from b2bua.config import StoreSettings
from b2bua.daemon import abort_start, refuse_configuration
from b2bua.diameter.tls import TlsSetupError
from b2bua.store.base import CallStore, Change, Renewal
from b2bua.store.core import Batcher, Lease, Link, WriteQueue, adoption_candidates
from b2bua.store.gate import CcrGate, UsablePeers
from b2bua.store.recovery import (
    CallStateRecorder,
    RecordError,
    decode_record,
    encode_record,
    session_ids,
)
from b2bua.store.redis import connect_store

__all__ = [
    "Codec",
    "Recorder",
    "StoreService",
    "StoreStats",
    "instance_name",
    "join_calls",
    "make_store_service",
]

log = logs.logger(__name__)


class Recorder(Protocol):
    """What the service needs of ``b2bua.store.recovery.CallStateRecorder``."""

    def listen(self, changed: Callable[[str], None]) -> None: ...

    def record_of(self, key: str, now: float) -> dict[str, Any] | None: ...

    def keys(self) -> list[str]: ...

    def restore(self, record: dict[str, Any], now: float, *, end: bool = False) -> None: ...

    def forget(self, key: str) -> list[str]: ...


@dataclass(frozen=True)
class Codec:
    """Records to bytes and back; ``error`` is what a record that cannot be read raises."""

    encode: Callable[[dict[str, Any]], bytes]
    decode: Callable[[bytes], dict[str, Any]]
    error: type[Exception]


@dataclass
class StoreStats:
    """What the store did (counters since start), for /metrics and the manhole."""

    writes: int = 0  # records written or deleted
    write_errors: int = 0  # write commands that failed
    restored: int = 0  # own records restored at start
    adopted: int = 0  # records adopted from dead instances
    bad_records: int = 0  # records that could not be restored (deleted)
    resyncs: int = 0  # every call written again after the queue overflowed
    leases_lost: int = 0  # renewals that found our calls adopted by a survivor


def instance_name(settings: StoreSettings) -> str:
    """``[store] instance_id``, or the host name when it is empty."""
    return settings.instance_id or socket.gethostname()


class StoreService(Service):
    """Keeps the recorder's records in a :class:`~b2bua.store.base.CallStore`."""

    name = "store"

    def __init__(
        self,
        store: CallStore,
        settings: StoreSettings,
        clock: IReactorTime,
        codec: Codec,
        *,
        instance: str,
        refuse: Callable[[str], None],
        where: str = "",
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.codec = codec
        self.instance = instance
        self.mode = settings.mode
        self.where = where or str(settings.url)
        self.stats = StoreStats()
        self.queue = WriteQueue(settings.queue_limit)
        self.link = Link()
        self.lease = Lease(settings.lease_time, settings.renew_interval)
        self.recorder: Recorder | None = None
        self.gate: CcrGate | None = None
        self._others = False  # other instances were registered at the last look
        self._refuse = refuse
        self._batch = Batcher()
        self._flush_call: IDelayedCall | None = None
        self._start_call: IDelayedCall | None = None
        self._loop: LoopingCall | None = None
        self._taken_over = False
        self._replaying = False
        self._in_flight: set[Deferred[None]] = set()

    # -- wiring ---------------------------------------------------------------------------

    def attach(self, recorder: Recorder) -> None:
        """Persist ``recorder``'s records (in realtime mode, each change as it happens)."""
        self.recorder = recorder
        if self.mode == "realtime":
            recorder.listen(self.changed)

    def guard(self, client: UsablePeers) -> CcrGate:
        """The Diameter client the charging engine uses: ``client`` behind a gate."""
        return self.use_gate(CcrGate(client, self.clock))

    def use_gate(self, gate: CcrGate) -> CcrGate:
        """Hold restored CCRs and fence through ``gate`` (the engine's Diameter client)."""
        self.gate = gate
        gate.fenced = self.fenced
        return gate

    def fenced(self) -> bool:
        """True while a survivor may have taken our calls (module docstring: fencing)."""
        return (
            self.mode == "realtime"
            and self._taken_over
            and self._others
            and self.lease.may_be_lost(self.clock.seconds())
        )

    def _may_write(self) -> bool:
        """Redis answers and the lease is surely ours (a write must not revive a record a
        survivor took)."""
        return (
            self._taken_over
            and bool(self.link.up)
            and not self.lease.may_be_lost(self.clock.seconds())
        )

    @property
    def queue_depth(self) -> int:
        """Calls whose writes wait for Redis."""
        return len(self.queue)

    @property
    def redis_up(self) -> bool:
        """True while the last command was answered."""
        return bool(self.link.up)

    def __repr__(self) -> str:
        state = {None: "connecting", True: "up", False: "DOWN"}[self.link.up]
        return (
            f"<store {self.mode} {self.where} instance={self.instance} redis={state} "
            f"queued={len(self.queue)} {self.stats}>"
        )

    # -- start ----------------------------------------------------------------------------

    def startService(self) -> None:
        """Connect and restore after the other services have started (next reactor turn)."""
        super().startService()
        log.info(
            "store: mode {mode}, {where}, instance {instance}",
            mode=self.mode,
            where=self.where,
            instance=self.instance,
        )
        self._start_call = self.clock.callLater(0, self._start_loop)

    def _start_loop(self) -> None:
        self._start_call = None
        loop = LoopingCall(self._tick)
        loop.clock = self.clock
        self._loop = loop
        loop.start(self.settings.renew_interval, now=True)

    def _tick(self) -> Deferred[None]:
        """One renewal round; never fails (LoopingCall would stop)."""
        return ensureDeferred(self._guarded(self._round))

    async def _guarded(self, step: Callable[[], Awaitable[None]]) -> None:
        try:
            await step()
        except Exception:  # timer boundary: a bug must not stop the renewals
            log.failure("store: renewal round failed")

    async def _round(self) -> None:
        if not self._taken_over:
            await self._take_over()
        else:
            await self._renew()
        if self._taken_over and self.link.up:
            await self._adopt()

    async def _take_over(self) -> None:
        now = self.clock.seconds()
        try:
            records = await self.store.take_over(self.instance, self.settings.lease_time)
        except Exception as err:
            first = self.link.up is None
            self._failed(err)
            if first and not self.settings.start_without_redis:
                self._refuse(
                    f"[store] mode = {self.mode}: Redis at {self.where} cannot be reached "
                    f"({_describe(err)}); set [store] start_without_redis = yes to start anyway"
                )
            return
        self._taken_over = True
        self.lease.renewed(now)
        self._succeeded()
        log.info(
            "store: instance {instance} holds its lease; {count} record(s) to restore",
            instance=self.instance,
            count=len(records),
        )
        restored = self._restore(records, adopted=False)
        if self.mode == "shutdown" and restored:
            # Shutdown mode keeps calls in memory until the next clean stop: records
            # read back now would be stale after a crash.
            await self._send([(key, None) for key in restored])
        await self._replay()

    async def _renew(self) -> None:
        now = self.clock.seconds()
        try:
            renewed = await self.store.renew(self.instance, self.settings.lease_time)
        except Exception as err:
            self._failed(err)
            return
        lost = self.lease.may_be_lost(now)
        self.lease.renewed(now)
        renewal = renewed.outcome
        if renewal is Renewal.ADOPTED:
            self.stats.leases_lost += 1
            self._forget_adopted(renewed.adopted)
            self.queue.overflowed = True  # write what is still ours, nothing of what went
        elif renewal is Renewal.EXPIRED and self.mode == "realtime":
            # Redis forgot the lease: it restarted without its data, or we were away
            # longer than lease_time. Our records may be gone too: write them all again.
            log.warn(
                "store: the lease of {instance} had {how}; writing every call again",
                instance=self.instance,
                how="run out" if lost else "gone (Redis restarted?)",
            )
            self.queue.overflowed = True
        if self.gate is not None:
            self.gate.release()  # what was fenced: the calls still here are ours
        if self._succeeded() or self.queue.overflowed or len(self.queue):
            await self._replay()

    def _forget_adopted(self, keys: tuple[str, ...]) -> None:
        """A survivor took these records while we were cut off: drop them here, silently."""
        log.error(
            "store: the lease of {instance} ran out and a survivor adopted {count} of its "
            "record(s); those calls are dropped here without BYE or CCR-T (the survivor "
            "ends or charges them)",
            instance=self.instance,
            count=len(keys),
        )
        recorder = self.recorder
        for key in keys:
            try:
                dropped = [] if recorder is None else recorder.forget(key)
            except Exception:  # one call must not keep the others here
                log.failure("store: dropping adopted record {key} failed", key=key)
                continue
            if self.gate is not None:
                self.gate.drop(dropped)

    async def _adopt(self) -> None:
        """Adopt the records of every instance whose lease is gone (the store decides)."""
        try:
            instances = await self.store.instances()
        except Exception as err:
            self._failed(err)
            return
        candidates = adoption_candidates(instances, self.instance)
        self._others = bool(candidates)
        for dead in candidates:
            try:
                records = await self.store.adopt(dead, self.instance)
            except Exception as err:
                self._failed(err)
                return
            if not records:
                continue
            log.warn(
                "store: instance {dead} is dead (lease gone); adopting {count} record(s), "
                "adopt = {adopt}",
                dead=dead,
                count=len(records),
                adopt=self.settings.adopt,
            )
            restored = self._restore(records, adopted=True)
            if self.mode == "shutdown" and restored:
                await self._send([(key, None) for key in restored])

    def _restore(self, records: dict[str, bytes], *, adopted: bool) -> list[str]:
        """Restore ``records``; delete those that cannot be. Returns the keys restored."""
        recorder = self.recorder
        if recorder is None or not records or not self.running:
            return []  # stopping: the records stay ours, for the next start (or a survivor)
        now = self.clock.seconds()
        end = adopted and self.settings.adopt == "end"
        restored: list[str] = []
        bad: list[str] = []
        for key, data in sorted(records.items()):
            try:
                record = self.codec.decode(data)
                if self.gate is not None:
                    self.gate.hold_restored(session_ids(record), self.settings.diameter_wait)
                recorder.restore(record, now, end=end)
            except self.codec.error as err:
                self.stats.bad_records += 1
                bad.append(key)
                log.error(
                    "store: record {key} cannot be restored ({error}); deleted", key=key, error=err
                )
            except Exception:  # one bad call must not keep the others from coming back
                self.stats.bad_records += 1
                bad.append(key)
                log.failure("store: restoring record {key} failed; deleted", key=key)
            else:
                restored.append(key)
        if adopted:
            self.stats.adopted += len(restored)
        else:
            self.stats.restored += len(restored)
        if bad:
            self._write_now([(key, None) for key in bad])
        return restored

    # -- writes ---------------------------------------------------------------------------

    def changed(self, key: str) -> None:
        """The recorder's listener: write ``key`` at the end of this reactor turn."""
        if self._batch.changed(key) and self._flush_call is None:
            self._flush_call = self.clock.callLater(0, self.flush)

    def flush(self) -> None:
        """Write the calls changed in this turn (or queue them while Redis is away)."""
        self._flush_call = None
        keys = self._batch.take()
        if keys:
            self._write_now([(key, self._encode(key)) for key in keys])

    def _encode(self, key: str) -> bytes | None:
        """``key``'s latest record as bytes, None when it has none (delete it)."""
        recorder = self.recorder
        if recorder is None:
            return None
        record = recorder.record_of(key, self.clock.seconds())
        return None if record is None else self.codec.encode(record)

    def _write_now(self, changes: list[Change]) -> None:
        if not self._may_write():
            self._enqueue(changes)
            return
        done = ensureDeferred(self._send(changes))
        self._in_flight.add(done)
        done.addBoth(lambda _: self._in_flight.discard(done))

    async def _send(self, changes: list[Change]) -> None:
        try:
            await self.store.write(self.instance, changes)
        except Exception as err:
            self.stats.write_errors += 1
            self._failed(err)
            if self.mode == "realtime":  # the latest state, not the one that failed
                changes = [(key, self._encode(key)) for key, _ in changes]
            self._enqueue(changes)  # shutdown mode: the deletes after a restore, as they were
            return
        self.stats.writes += len(changes)
        self._succeeded()

    def _enqueue(self, changes: list[Change]) -> None:
        for key, value in changes:
            if not self.queue.put(key, value) and self.queue.dropped == 1:
                log.error(
                    "store: the write queue is full ({limit} calls); every call will be "
                    "written again when Redis is back",
                    limit=self.queue.limit,
                )

    async def _replay(self) -> None:
        """Write what waited, in order; past an overflow, write every call again.

        Newer changes may be written meanwhile: one connection keeps the order.
        """
        if self._replaying:
            return
        self._replaying = True
        try:
            while self._may_write() and (len(self.queue) or self.queue.overflowed):
                if self.queue.overflowed:
                    await self._resync()
                    continue
                changes = self.queue.take()
                log.info("store: writing {count} queued call(s)", count=len(changes))
                await self._send(changes)
        finally:
            self._replaying = False

    async def _resync(self) -> bool:
        """Make the stored records exactly the recorder's (all calls written again)."""
        recorder = self.recorder
        self.queue.reset()
        records: dict[str, bytes] = {}
        for key in recorder.keys() if recorder is not None else []:
            value = self._encode(key)
            if value is not None:
                records[key] = value
        try:
            await self.store.replace(self.instance, records)
        except Exception as err:
            self.stats.write_errors += 1
            self.queue.overflowed = True
            self._failed(err)
            return False
        self.stats.resyncs += 1
        self.stats.writes += len(records)
        self._succeeded()
        log.info("store: {count} call(s) written", count=len(records))
        return True

    # -- link -----------------------------------------------------------------------------

    def _succeeded(self) -> bool:
        if self.link.succeeded() and self.link.transitions > 1:
            log.info(
                "store: Redis at {where} is back; {count} queued call(s) to write",
                where=self.where,
                count=len(self.queue),
            )
            return True
        return False

    def _failed(self, err: BaseException) -> None:
        if self.link.failed():
            log.warn(
                "store: Redis at {where} is unreachable ({error}); calls go on from memory, "
                "writes wait (at most {limit} calls)",
                where=self.where,
                error=_describe(err),
                limit=self.queue.limit,
            )

    # -- stop -----------------------------------------------------------------------------

    def stopService(self) -> Deferred[None]:
        """Write what is pending (shutdown mode: every call), bounded; keep the lease."""
        super().stopService()
        return ensureDeferred(self._stop())

    async def _stop(self) -> None:
        if self._start_call is not None and self._start_call.active():
            self._start_call.cancel()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        if self.gate is not None:
            self.gate.stop()
        if self._taken_over:
            await self._within(self._final_writes(), self.settings.connect_timeout)
        waiting = len(self.queue)
        if waiting:
            log.warn("store: {count} call(s) could not be written before the stop", count=waiting)
        try:
            await self.store.close()
        except Exception as err:
            log.debug("store: closing: {error}", error=_describe(err))

    async def _final_writes(self) -> None:
        if self.mode == "shutdown":
            if not await self._resync():
                log.warn("store: the calls could not be written for the next start")
            return
        self.flush()
        await self._replay()
        for pending in list(self._in_flight):
            await pending

    async def _within(self, work: Awaitable[None], seconds: float) -> None:
        done = ensureDeferred(_awaited(work))
        guard = self.clock.callLater(seconds, done.cancel)
        try:
            await done
        except Exception as err:
            log.warn("store: final writes did not finish: {error}", error=_describe(err))
        finally:
            if guard.active():
                guard.cancel()


async def _awaited(work: Awaitable[None]) -> None:
    await work


def _describe(err: BaseException) -> str:
    if isinstance(err, NoAnswer | CancelledError):
        return "no answer in time"
    return str(err) or err.__class__.__name__


def make_store_service(settings: StoreSettings, reactor: Any) -> StoreService:
    """The store service of ``[store]`` on a Redis connection made in the background.

    A failure to reach Redis at start ends the process with exit status 1 (unless
    ``start_without_redis``); a CA file that holds no certificate is a configuration error.
    """
    try:
        store = connect_store(settings, reactor)
    except TlsSetupError as err:
        refuse_configuration([str(err)])
    where = str(settings.url)
    if settings.sentinels:
        addresses = ", ".join(f"{host}:{port}" for host, port in settings.sentinels)
        where = f"sentinels {addresses} (master {settings.sentinel_master})"
    return StoreService(
        store,
        settings,
        reactor,
        Codec(encode_record, decode_record, RecordError),
        instance=instance_name(settings),
        refuse=lambda reason: abort_start(reactor, reason),
        where=where,
    )


def join_calls(service: StoreService, calls: CallService, engine: ChargingEngine | None) -> None:
    """Record ``calls`` (a CallService) and ``engine``'s Ro sessions in ``service``.

    ``engine`` sends through :meth:`StoreService.guard` (see ``b2bua.tap``).

    At stop, the calls that have a record stay up for the next start (no BYE, no CCR-T);
    calls still being set up cannot be restored and end as usual.
    """
    callmap = calls.callmap
    service.attach(CallStateRecorder(callmap, engine))
    calls.keep_on_stop = lambda call: callmap.snapshot_of(call.id) is not None
