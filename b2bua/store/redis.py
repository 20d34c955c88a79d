"""The call store in Redis, through txredisapi (glue).

Key schema (``P`` is ``[store] key_prefix``, ``ID`` an instance id)::

    P instances        set     every instance id that has registered
    P lease:ID         string  ID, with a TTL of lease_time; renewed every renew_interval
    P calls:ID         hash    call key -> record (b2bua.store.recovery.encode_record)
    P taken:ID         hash    call key -> the survivor that adopted it from ID (TTL one day)

A realtime write is one ``HSET`` (or ``HDEL`` when the call is gone) per changed call,
several calls of one reactor turn going in one ``HMSET`` and one ``HDEL``. Taking over
one's own records at start, renewing the lease and adopting a dead instance's records
are Lua scripts, each atomic in Redis: an adoption checks that the lease is gone, moves
the records into the survivor's hash, deletes them and notes their keys in ``taken:ID``
in one step, so of several survivors exactly one gets them, an instance restarting in
the same moment finds either all of its records or none, and an instance that was only
cut off learns at its next renewal which calls are no longer its own.

One connection (commands stay in order), reconnecting on loss; every command has a
deadline, after which it is cancelled (txredisapi then never sends it) and counts as a
failure. ``rediss://`` wraps it in TLS with the server's certificate checked against
``ca_file`` (or the system CAs); with ``sentinels`` the master is found through Redis
Sentinel. Passwords are never logged (``RedisUrl`` prints masked).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import txredisapi
from twisted.internet import ssl
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import IReactorTime

from b2bua.config import StoreSettings
from b2bua.diameter.tls import _certificates
from b2bua.store.base import Change, Renewal, Renewed

__all__ = ["RedisStore", "connect_store"]

T = TypeVar("T")

#: How long the "adopted by" marker of a dead instance is kept (ms).
ADOPTED_MARKER_MS = 86_400_000

# KEYS: lease, instances, calls, taken of ARGV[1]; ARGV: id, lease ms
_TAKE_OVER = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[4])
return redis.call('HGETALL', KEYS[3])
"""

# KEYS: lease, instances, taken of ARGV[1]; ARGV: id, lease ms
_RENEW = """
local kept = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
if kept == 1 then return {'kept'} end
local taken = redis.call('HKEYS', KEYS[3])
if #taken == 0 then return {'expired'} end
redis.call('DEL', KEYS[3])
local reply = {'adopted'}
for i = 1, #taken do reply[i + 1] = taken[i] end
return reply
"""

# KEYS: lease of dead, calls of dead, calls of survivor, instances, taken of dead
# ARGV: dead, survivor, marker ms
_ADOPT = """
if ARGV[1] == ARGV[2] or redis.call('EXISTS', KEYS[1]) == 1 then return {} end
redis.call('SREM', KEYS[4], ARGV[1])
local records = redis.call('HGETALL', KEYS[2])
if #records == 0 then return {} end
for i = 1, #records, 2 do
  redis.call('HSET', KEYS[3], records[i], records[i + 1])
  redis.call('HSET', KEYS[5], records[i], ARGV[2])
end
redis.call('DEL', KEYS[2])
redis.call('PEXPIRE', KEYS[5], ARGV[3])
return records
"""

# KEYS: calls; ARGV: key, record, key, record...
_REPLACE = """
redis.call('DEL', KEYS[1])
for i = 1, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return #ARGV / 2
"""


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _renewed(reply: Sequence[bytes | str]) -> Renewed:
    """The renewal script's reply: its outcome, then the keys a survivor took."""
    outcome, *taken = (_text(item) for item in reply)
    return Renewed(Renewal(outcome), tuple(sorted(taken)))


def _pairs(flat: Sequence[bytes | str]) -> dict[str, bytes]:
    """``HGETALL``'s flat reply as {key: record}."""
    result = {}
    for i in range(0, len(flat) - 1, 2):
        value = flat[i + 1]
        result[_text(flat[i])] = value if isinstance(value, bytes) else value.encode("utf-8")
    return result


class RedisStore:
    """A :class:`~b2bua.store.base.CallStore` on one txredisapi connection handler."""

    def __init__(
        self, redis: Any, clock: IReactorTime, *, prefix: str, timeout: float = 5.0
    ) -> None:
        self.redis = redis
        self.clock = clock
        self.prefix = prefix
        self.timeout = timeout
        self.commands = 0

    def _key(self, kind: str, instance: str = "") -> str:
        return f"{self.prefix}{kind}:{instance}" if instance else f"{self.prefix}{kind}"

    def _run(self, method: str, *args: Any) -> Deferred[Any]:
        """One command with a deadline; cancelled (and never sent) when it passes."""
        self.commands += 1
        command: Deferred[Any] = getattr(self.redis, method)(*args)
        return command.addTimeout(self.timeout, self.clock)

    def _eval(self, script: str, keys: list[str], args: list[Any]) -> Deferred[Any]:
        return self._run("eval", script, keys, args)

    def take_over(self, instance: str, lease: float) -> Deferred[dict[str, bytes]]:
        keys = [self._key(kind, instance) for kind in ("lease", "instances", "calls", "taken")]
        keys[1] = self._key("instances")
        return self._eval(_TAKE_OVER, keys, [instance, int(lease * 1000)]).addCallback(_pairs)

    def renew(self, instance: str, lease: float) -> Deferred[Renewed]:
        keys = [self._key("lease", instance), self._key("instances")]
        keys.append(self._key("taken", instance))
        return self._eval(_RENEW, keys, [instance, int(lease * 1000)]).addCallback(_renewed)

    def write(self, instance: str, changes: Sequence[Change]) -> Deferred[None]:
        calls = self._key("calls", instance)
        stored = {key: value for key, value in changes if value is not None}
        gone = [key for key, value in changes if value is None]
        steps: list[Deferred[Any]] = []
        if len(stored) == 1:
            ((key, value),) = stored.items()
            steps.append(self._run("hset", calls, key, value))
        elif stored:
            steps.append(self._run("hmset", calls, stored))
        if gone:
            steps.append(self._run("hdel", calls, gone))
        return _all(steps)

    def replace(self, instance: str, records: Mapping[str, bytes]) -> Deferred[None]:
        flat: list[Any] = []
        for key, value in records.items():
            flat += [key, value]
        done = self._eval(_REPLACE, [self._key("calls", instance)], flat)
        return done.addCallback(lambda _: None)

    def instances(self) -> Deferred[list[str]]:
        return self._run("smembers", self._key("instances")).addCallback(
            lambda members: sorted(_text(member) for member in members)
        )

    def adopt(self, dead: str, survivor: str) -> Deferred[dict[str, bytes]]:
        keys = [
            self._key("lease", dead),
            self._key("calls", dead),
            self._key("calls", survivor),
            self._key("instances"),
            self._key("taken", dead),
        ]
        return self._eval(_ADOPT, keys, [dead, survivor, ADOPTED_MARKER_MS]).addCallback(_pairs)

    def close(self) -> Deferred[None]:
        closed: Deferred[Any] = self.redis.disconnect()
        return closed.addCallback(lambda _: None)


def _all(steps: list[Deferred[Any]]) -> Deferred[None]:
    """One Deferred for commands sent together; the first failure fails it."""
    if not steps:
        return succeed(None)
    gathered: Deferred[Any] = gatherResults(steps, consumeErrors=True)
    return gathered.addCallbacks(lambda _: None, lambda failure: failure.value.subFailure)


def _tls_options(settings: StoreSettings, host: str) -> Any:
    """Client TLS for rediss://: the server's chain and name are verified."""
    trust = (
        ssl.trustRootFromCertificates(_certificates(settings.ca_file, "[store] ca_file"))
        if settings.ca_file
        else ssl.platformTrust()
    )
    return ssl.optionsForClientTLS(host, trustRoot=trust)


def connect_store(
    settings: StoreSettings,
    clock: IReactorTime,
    connect: Callable[..., Any] | None = None,
) -> RedisStore:
    """A store on a lazy, reconnecting connection to ``settings.url`` (or its sentinels).

    Nothing blocks: the connection is made in the background and commands wait for it
    (until their deadline).
    """
    url = settings.url
    options: dict[str, Any] = {
        "dbid": url.db,
        "password": url.password,
        "username": url.username,
        "replyTimeout": settings.connect_timeout,
        "connectTimeout": settings.connect_timeout,
        "charset": None,
        "convertNumbers": False,
    }
    if url.tls:
        options["ssl_context_factory"] = _tls_options(settings, url.host)
    if settings.sentinels:
        # The sentinels are asked without a password; the master with the URL's.
        sentinel = txredisapi.Sentinel(
            list(settings.sentinels),
            connectTimeout=settings.connect_timeout,
            replyTimeout=settings.connect_timeout,
        )
        # txredisapi checks the master's ROLE reply as text: this connection decodes
        # replies as UTF-8 (the records are UTF-8 JSON; _pairs turns them back to bytes).
        redis = sentinel.master_for(
            settings.sentinel_master,
            dbid=url.db,
            password=url.password,
            username=url.username,
            replyTimeout=settings.connect_timeout,
            convertNumbers=False,
        )
    else:
        make = connect or txredisapi.makeConnection
        redis = make(
            url.host,
            url.port,
            url.db,
            1,  # one connection: commands reach Redis in the order they were sent
            True,  # reconnect
            True,  # lazy: no waiting at start-up
            None,  # charset: records are bytes
            url.password,
            options.get("ssl_context_factory", False),
            settings.connect_timeout,
            settings.connect_timeout,
            False,  # convertNumbers
            url.username,
        )
    factory = getattr(redis, "_factory", None)
    if factory is not None:  # reconnect at least once per renewal, not after up to 10 s
        factory.maxDelay = max(0.5, settings.renew_interval)
    return RedisStore(redis, clock, prefix=settings.key_prefix, timeout=settings.connect_timeout)
