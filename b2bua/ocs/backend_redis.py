"""Redis OCS backend: balances and sessions shared by several OCS processes.

Every change runs inside one Lua script (EVALSHA, falling back to EVAL when Redis does
not know the script yet, e.g. after a restart or SCRIPT FLUSH). Redis runs a script
atomically, so the read-compute-write of a reservation cannot interleave with another
process's: OCS instances sharing one Redis never grant the same credit twice. The script
mirrors `MemoryBackend` step for step; the contract tests hold both to the same answers.

Key schema (``P`` is the configurable prefix, default ``b2bua:ocs:``):

``P accounts``
    SET of every subscriber key.
``P acct:<subscriber>``
    HASH: ``bal:<kind>`` balance and ``res:<kind>`` total reserved, credit units, for
    each kind (``seconds``, ``events``); ``rate:<rating group>`` rate overrides.
``P sess:<session id>``
    HASH: ``sub`` subscriber, ``n`` highest CC-Request-Number, ``o:<number>`` the
    operation of each number in the policy's window, ``closed`` 0/1, ``exp`` validity
    deadline; per rating group with a reservation ``u:<rg>`` units granted, ``c:<rg>``
    credit reserved, ``k:<rg>`` kind, ``q:<rg>`` rate.
``P ans:<session id>``
    HASH: ``<number>:<rg>`` -> JSON answer, replayed to retransmissions (the window's
    numbers only).
``P stale``
    ZSET of open session ids scored by their validity deadline, for `expire_stale`.
``P closed``
    ZSET of closed session ids scored by closing time; `expire_stale` deletes their two
    keys once older than the policy's retention. The keys also get that retention as a
    TTL, a backstop should nobody call `expire_stale`.

Times are the ``now`` the caller passes (float seconds). The script derives key names
from the prefix and the session's subscriber, so it needs a standalone (or replicated)
Redis, not Redis Cluster.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any, cast

import txredisapi
from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from b2bua.ocs.accounts import (
    Account,
    AccountExistsError,
    AccountSnapshot,
    UnknownSubscriberError,
    check_kind,
    check_request_number,
    check_units,
    normalise_subscriber,
)
from b2bua.ocs.ledger import Ledger
from b2bua.ocs.rating import (
    BalanceResult,
    CreditPolicy,
    CreditResult,
    ExpiredReservation,
    Operation,
    PriceResult,
    Rating,
    ResultCode,
    UnitKind,
)

__all__ = ["DEFAULT_PREFIX", "SCRIPT", "SCRIPT_SHA", "RedisBackend", "connect_redis_backend"]

DEFAULT_PREFIX = "b2bua:ocs:"

#: The credit-control script. ARGV[1] names the operation, ARGV[2] is a JSON object of
#: parameters (numbers already validated and defaulted by Python). Every reply is a JSON
#: object, so no client-side number conversion can mangle it.
SCRIPT = r"""
local op = ARGV[1]
local p = cjson.decode(ARGV[2])
local prefix = p.prefix
local MOD = 4294967296
local STALE = prefix .. 'stale'
local CLOSED = prefix .. 'closed'
local ACCOUNTS = prefix .. 'accounts'

local function akey(sub) return prefix .. 'acct:' .. sub end
local function skey(sid) return prefix .. 'sess:' .. sid end
local function anskey(sid) return prefix .. 'ans:' .. sid end
local function num(v) if v then return tonumber(v) end return 0 end
-- Negative amounts are written 0 - x: Lua prints -0 as "-0", which HINCRBY refuses.

local function answer(code, sub, rg)
  return {result_code = code, subscriber = sub, rating_group = rg, kind = '', granted = 0,
          final = false, debited = 0, cost = 0, balance_after = 0, reserved_after = 0}
end

-- Where a request number stands against the session's highest (rating.number_position).
local function position(highest, number)
  if number == highest then return 'same' end
  if (number - highest) % MOD <= p.window then return 'ahead' end
  if (highest - number) % MOD < p.window then return 'behind' end
  return 'outside'
end

-- Note a new request number and its operation; forget numbers fallen out of the window.
local function remember(sid, highest, number)
  local sk, ans = skey(sid), anskey(sid)
  redis.call('HSET', sk, 'o:' .. number, op)
  if position(highest, number) == 'ahead' then
    highest = number
    redis.call('HSET', sk, 'n', number)
  end
  local function stale(n)
    local where = position(highest, tonumber(n))
    return where ~= 'same' and where ~= 'behind'
  end
  for _, f in ipairs(redis.call('HKEYS', sk)) do
    if string.sub(f, 1, 2) == 'o:' and stale(string.sub(f, 3)) then
      redis.call('HDEL', sk, f)
    end
  end
  for _, f in ipairs(redis.call('HKEYS', ans)) do
    if stale(string.match(f, '^(%d+):')) then redis.call('HDEL', ans, f) end
  end
end

local function has_grants(sk)
  for _, f in ipairs(redis.call('HKEYS', sk)) do
    if string.sub(f, 1, 2) == 'u:' then return true end
  end
  return false
end

local function drop_grant(sk, rg)
  redis.call('HDEL', sk, 'u:' .. rg, 'c:' .. rg, 'k:' .. rg, 'q:' .. rg)
end

-- A closed session keeps its answers for retransmissions until expire_stale purges it
-- (at closing time + retention, in the callers' clock); the TTL is a backstop for when
-- no one calls expire_stale.
local function close(sid)
  redis.call('HSET', skey(sid), 'closed', '1')
  redis.call('ZREM', STALE, sid)
  redis.call('ZADD', CLOSED, p.now, sid)
  redis.call('EXPIRE', skey(sid), p.retention)
  redis.call('EXPIRE', anskey(sid), p.retention)
end

-- Store the answer for retransmissions; keep the session open or close it.
local function settle(sid, rg, r)
  local sk, ans = skey(sid), anskey(sid)
  redis.call('HSET', ans, p.request_number .. ':' .. rg, cjson.encode(r))
  local closes = false
  if op == 'DIRECT_DEBIT' or op == 'REFUND' then
    closes = true
  elseif op == 'INITIAL' then
    closes = (not has_grants(sk)) and r.result_code ~= 2001
  elseif op == 'TERMINATE' then
    closes = not has_grants(sk)
  end
  if closes then
    close(sid)
  else
    redis.call('HSET', sk, 'closed', '0', 'exp', p.expires_at)
    redis.call('ZADD', STALE, p.expires_at, sid)
    redis.call('ZREM', CLOSED, sid)
    redis.call('PERSIST', sk)
    redis.call('PERSIST', ans)
  end
end

local function credit()
  local sid, number, rg = p.session_id, p.request_number, p.rating_group
  local sk = skey(sid)
  local opening = (op == 'INITIAL' or op == 'DIRECT_DEBIT' or op == 'REFUND')
  local s = redis.call('HMGET', sk, 'sub', 'n', 'closed', 'o:' .. number)
  local sub, step
  if not s[1] then
    if not opening then return {answer = answer(5002, p.subscriber, rg)} end
    step, sub = 'new', p.subscriber
  else
    sub = s[1]
    local seen = s[4]
    if seen and seen ~= op then return {answer = answer(5012, sub, rg)} end
    local stored = redis.call('HGET', anskey(sid), number .. ':' .. rg)
    if stored then return {stored = stored} end
    if seen then
      step = 'same'
    elseif s[3] == '1' then
      if opening then return {answer = answer(5012, sub, rg)} end
      return {answer = answer(5002, sub, rg)}
    elseif opening or position(tonumber(s[2]), number) == 'outside' then
      return {answer = answer(5012, sub, rg)}
    else
      step = 'next'
      remember(sid, tonumber(s[2]), number)
    end
  end
  local ak = akey(sub)
  local exists = redis.call('EXISTS', ak) == 1
  local kind = p.kind
  if (not exists) or kind == '' then
    local r = answer(exists and 5031 or 5030, sub, rg)
    if step ~= 'new' then
      if not exists then drop_grant(sk, rg) end
      settle(sid, rg, r)
    end
    return {answer = r}
  end
  local rate = p.rate
  local override = redis.call('HGET', ak, 'rate:' .. rg)
  if override then rate = tonumber(override) end
  if step == 'new' then
    redis.call('HSET', sk, 'sub', sub, 'n', number, 'o:' .. number, op, 'closed', '0')
  end
  local bal_f, res_f = 'bal:' .. kind, 'res:' .. kind
  local requested, used = p.requested, p.used
  local code, granted, final, debited, cost = 2001, 0, false, 0, 0
  if op == 'DIRECT_DEBIT' then
    local price = requested * rate
    local available = math.max(0, num(redis.call('HGET', ak, bal_f))
                                  - num(redis.call('HGET', ak, res_f)))
    if price <= available then
      redis.call('HINCRBY', ak, bal_f, 0 - price)
      granted, debited, cost = requested, requested, price
    else
      code = 4012
    end
  elseif op == 'REFUND' then
    redis.call('HINCRBY', ak, bal_f, requested * rate)
    debited, cost = 0 - requested, 0 - requested * rate
  else
    local held = redis.call('HMGET', sk, 'u:' .. rg, 'c:' .. rg, 'k:' .. rg, 'q:' .. rg)
    if held[1] then
      debited = math.min(used, tonumber(held[1]))
      cost = debited * tonumber(held[4])
      redis.call('HINCRBY', ak, 'bal:' .. held[3], 0 - cost)
      redis.call('HINCRBY', ak, 'res:' .. held[3], 0 - tonumber(held[2]))
      drop_grant(sk, rg)
    end
    if op ~= 'TERMINATE' then
      local balance = num(redis.call('HGET', ak, bal_f))
      local reserved = num(redis.call('HGET', ak, res_f))
      if rate == 0 then
        granted = requested
      else
        local available = math.max(0, balance - reserved)
        granted = math.min(requested, math.floor(available / rate))
        final = p.style == 'fui' and granted > 0 and reserved == 0
                and available - granted * rate < rate
      end
      if granted > 0 then
        redis.call('HSET', sk, 'u:' .. rg, granted, 'c:' .. rg, granted * rate,
                   'k:' .. rg, kind, 'q:' .. rg, rate)
        redis.call('HINCRBY', ak, res_f, granted * rate)
      elseif requested > 0 then
        code = 4012
      end
    end
  end
  local r = answer(code, sub, rg)
  r.kind, r.granted, r.final, r.debited, r.cost = kind, granted, final, debited, cost
  r.balance_after = num(redis.call('HGET', ak, bal_f))
  r.reserved_after = num(redis.call('HGET', ak, res_f))
  if granted > 0 and (op == 'INITIAL' or op == 'UPDATE') then r.validity = p.validity end
  settle(sid, rg, r)
  return {answer = r}
end

local function expire()
  local released = {}
  local purge = redis.call('ZRANGEBYSCORE', CLOSED, '-inf', '(' .. p.purge_before)
  for _, sid in ipairs(purge) do
    redis.call('DEL', skey(sid), anskey(sid))
    redis.call('ZREM', CLOSED, sid)
  end
  local ids = redis.call('ZRANGEBYSCORE', STALE, '-inf', '(' .. p.stale_before)
  table.sort(ids)
  for _, sid in ipairs(ids) do
    local sk = skey(sid)
    local flat = redis.call('HGETALL', sk)
    local fields = {}
    for i = 1, #flat, 2 do fields[flat[i]] = flat[i + 1] end
    local rgs = {}
    for f, _ in pairs(fields) do
      if string.sub(f, 1, 2) == 'u:' then table.insert(rgs, tonumber(string.sub(f, 3))) end
    end
    table.sort(rgs)
    local sub = fields['sub'] or ''
    local ak = akey(sub)
    local exists = redis.call('EXISTS', ak) == 1
    for _, rg in ipairs(rgs) do
      local kind, credit = fields['k:' .. rg], tonumber(fields['c:' .. rg])
      local item = {session_id = sid, subscriber = sub, rating_group = rg, kind = kind,
                    released_units = tonumber(fields['u:' .. rg]), released_credit = credit,
                    balance_after = 0, reserved_after = 0}
      if exists then
        item.reserved_after = redis.call('HINCRBY', ak, 'res:' .. kind, 0 - credit)
        item.balance_after = num(redis.call('HGET', ak, 'bal:' .. kind))
      end
      drop_grant(sk, rg)
      table.insert(released, item)
    end
    if fields['sub'] then
      close(sid)
    else
      redis.call('ZREM', STALE, sid)
    end
  end
  return {released = released}
end

local function put(account, fresh)
  local ak = akey(account.subscriber)
  for _, f in ipairs(redis.call('HKEYS', ak)) do
    if string.sub(f, 1, 5) == 'rate:' then redis.call('HDEL', ak, f) end
  end
  for kind, amount in pairs(account.balances) do
    redis.call('HSET', ak, 'bal:' .. kind, amount)
    if fresh then redis.call('HSET', ak, 'res:' .. kind, 0) end
  end
  for _, pair in ipairs(account.rates) do
    redis.call('HSET', ak, 'rate:' .. pair[1], pair[2])
  end
  redis.call('SADD', ACCOUNTS, account.subscriber)
end

local function admin()
  if op == 'PROVISION' then
    for _, account in ipairs(p.accounts) do
      put(account, redis.call('EXISTS', akey(account.subscriber)) == 0)
    end
    return {value = #p.accounts}
  end
  if op == 'LIST' then return {value = redis.call('SMEMBERS', ACCOUNTS)} end
  local ak = akey(p.subscriber)
  local exists = redis.call('EXISTS', ak) == 1
  if op == 'CREATE' then
    if exists then return {error = 'exists'} end
    put(p.account, true)
    return {value = true}
  elseif op == 'DELETE' then
    redis.call('SREM', ACCOUNTS, p.subscriber)
    return {value = redis.call('DEL', ak) == 1}
  elseif op == 'GET' then
    if not exists then return {value = false} end
    return {value = redis.call('HGETALL', ak)}
  end
  if not exists then return {error = 'unknown'} end
  if op == 'TOPUP' then
    return {value = redis.call('HINCRBY', ak, 'bal:' .. p.kind, p.amount)}
  elseif op == 'SET' then
    redis.call('HSET', ak, 'bal:' .. p.kind, p.amount)
    return {value = p.amount}
  end
  return redis.error_reply('unknown operation ' .. op)
end

local reply
if op == 'EXPIRE' then
  reply = expire()
elseif op == 'INITIAL' or op == 'UPDATE' or op == 'TERMINATE' or op == 'DIRECT_DEBIT'
    or op == 'REFUND' then
  reply = credit()
else
  reply = admin()
end
if type(reply) ~= 'table' or reply.err then return reply end
return cjson.encode(reply)
"""

SCRIPT_SHA = hashlib.sha1(SCRIPT.encode("utf-8"), usedforsecurity=False).hexdigest()


def _is_noscript(failure: Failure) -> bool:
    error = failure.value
    return isinstance(error, txredisapi.ResponseError) and str(error).startswith("NOSCRIPT")


def _snapshot(subscriber: str, flat: list[str]) -> AccountSnapshot:
    """An AccountSnapshot from the HGETALL of an account hash."""
    balances = {kind.value: 0 for kind in UnitKind}
    reserved = {kind.value: 0 for kind in UnitKind}
    rates: dict[int, int] = {}
    for name, value in zip(flat[0::2], flat[1::2], strict=True):
        field, _, arg = str(name).partition(":")
        if field == "bal":
            balances[arg] = int(value)
        elif field == "res":
            reserved[arg] = int(value)
        elif field == "rate":
            rates[int(arg)] = int(value)
    return AccountSnapshot(subscriber, balances, reserved, rates)


class RedisBackend:
    """`OcsBackend` on a txredisapi connection (or pool) to a shared Redis."""

    def __init__(
        self,
        redis: Any,
        *,
        prefix: str = DEFAULT_PREFIX,
        rating: Rating | None = None,
        policy: CreditPolicy | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.rating = rating if rating is not None else Rating.default()
        self.policy = policy if policy is not None else CreditPolicy()
        self.ledger = ledger

    def disconnect(self) -> Deferred[None]:
        """Close the Redis connection(s)."""
        return cast("Deferred[None]", self.redis.disconnect())

    def _run(self, operation: str, params: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """Run the script: EVALSHA, then EVAL if Redis lost (or never had) it."""
        argv = (operation, json.dumps({"prefix": self.prefix, **params}))
        sent: Deferred[Any] = self.redis.execute_command("EVALSHA", SCRIPT_SHA, 0, *argv)

        def load_and_retry(failure: Failure) -> Deferred[Any] | Failure:
            if _is_noscript(failure):
                return cast("Deferred[Any]", self.redis.execute_command("EVAL", SCRIPT, 0, *argv))
            return failure

        def decode(reply: object) -> dict[str, Any]:
            return cast("dict[str, Any]", json.loads(str(reply)))

        return sent.addErrback(load_and_retry).addCallback(decode)

    # -- credit control --

    def reserve(
        self,
        subscriber: str,
        session_id: str,
        request_number: int,
        rating_group: int,
        *,
        requested: int | None,
        now: float,
        validity: int | None = None,
    ) -> Deferred[CreditResult]:
        """CCR-INITIAL; see `OcsBackend.reserve`."""
        return self._credit(
            Operation.INITIAL, subscriber, session_id, request_number, rating_group,
            requested=requested, used=None, now=now, validity=validity,
        )  # fmt: skip

    def update(
        self,
        session_id: str,
        request_number: int,
        rating_group: int,
        *,
        used: int,
        requested: int | None,
        now: float,
        validity: int | None = None,
    ) -> Deferred[CreditResult]:
        """CCR-UPDATE; see `OcsBackend.update`."""
        return self._credit(
            Operation.UPDATE, None, session_id, request_number, rating_group,
            requested=requested, used=used, now=now, validity=validity,
        )  # fmt: skip

    def terminate(
        self,
        session_id: str,
        request_number: int,
        rating_group: int,
        *,
        used: int,
        now: float,
    ) -> Deferred[CreditResult]:
        """CCR-TERMINATION; see `OcsBackend.terminate`."""
        return self._credit(
            Operation.TERMINATE, None, session_id, request_number, rating_group,
            requested=0, used=used, now=now, validity=None,
        )  # fmt: skip

    def direct_debit(
        self,
        subscriber: str,
        session_id: str,
        request_number: int,
        rating_group: int,
        *,
        units: int,
        now: float,
    ) -> Deferred[CreditResult]:
        """IEC DIRECT_DEBITING; see `OcsBackend.direct_debit`."""
        return self._credit(
            Operation.DIRECT_DEBIT, subscriber, session_id, request_number, rating_group,
            requested=units, used=None, now=now, validity=None,
        )  # fmt: skip

    def refund(
        self,
        subscriber: str,
        session_id: str,
        request_number: int,
        rating_group: int,
        *,
        units: int,
        now: float,
    ) -> Deferred[CreditResult]:
        """REFUND_ACCOUNT; see `OcsBackend.refund`."""
        return self._credit(
            Operation.REFUND, subscriber, session_id, request_number, rating_group,
            requested=units, used=None, now=now, validity=None,
        )  # fmt: skip

    def _credit(
        self,
        operation: Operation,
        subscriber: str | None,
        session_id: str,
        request_number: int,
        rating_group: int,
        *,
        requested: int | None,
        used: int | None,
        now: float,
        validity: int | None,
    ) -> Deferred[CreditResult]:
        check_request_number(request_number)
        check_units("rating group", rating_group)
        if requested is not None:
            check_units("requested units", requested)
        if used is not None:
            check_units("used units", used)
        if validity is not None:
            check_units("validity", validity)
        tariff = self.rating.tariff(rating_group)
        if requested is None and operation in (Operation.INITIAL, Operation.UPDATE):
            requested = tariff.default_units if tariff is not None else None
        key = "" if subscriber is None else self._key_or_raw(subscriber)
        lifetime = validity if validity is not None else self.policy.default_validity
        params = {
            "session_id": session_id,
            "request_number": request_number,
            "rating_group": rating_group,
            "subscriber": key,
            "kind": tariff.kind.value if tariff is not None else "",
            "rate": tariff.rate if tariff is not None else 0,
            "requested": requested or 0,
            "used": used or 0,
            "now": now,
            "validity": lifetime,
            "expires_at": now + lifetime,
            "style": self.policy.final_unit_style,
            "retention": self.policy.session_retention,
            "window": self.policy.request_window,
        }

        def done(reply: dict[str, Any]) -> CreditResult:
            if "stored" in reply:
                result = CreditResult.from_dict(json.loads(reply["stored"]), duplicate=True)
            else:
                result = CreditResult.from_dict(reply["answer"])
            if self.ledger is not None:
                self.ledger.credit(
                    now, operation, session_id, request_number,
                    requested=None if operation is Operation.TERMINATE else requested,
                    used=used, result=result,
                )  # fmt: skip
            return result

        return self._run(operation.value, params).addCallback(done)

    def check_balance(
        self, subscriber: str, rating_group: int, *, now: float, units: int = 1
    ) -> Deferred[BalanceResult]:
        """CHECK_BALANCE; see `OcsBackend.check_balance` (one atomic read)."""
        check_units("units", units)
        key = self._key_or_raw(subscriber)

        def done(snapshot: AccountSnapshot | None) -> BalanceResult:
            tariff = self.rating.tariff(rating_group)
            if snapshot is None:
                result = BalanceResult(ResultCode.USER_UNKNOWN, key, rating_group, units=units)
            elif tariff is None:
                result = BalanceResult(ResultCode.RATING_FAILED, key, rating_group, units=units)
            else:
                kind = tariff.kind.value
                rate = snapshot.rates.get(rating_group, tariff.rate)
                result = BalanceResult(
                    ResultCode.SUCCESS,
                    key,
                    rating_group,
                    kind=kind,
                    units=units,
                    enough_credit=units * rate <= snapshot.available(kind),
                    rate=rate,
                    balance=snapshot.balances.get(kind, 0),
                    reserved=snapshot.reserved.get(kind, 0),
                )
            if self.ledger is not None:
                self.ledger.balance_check(now, result)
            return result

        return self._get(key).addCallback(done)

    def price_enquiry(
        self, subscriber: str, rating_group: int, *, units: int, now: float
    ) -> Deferred[PriceResult]:
        """PRICE_ENQUIRY; see `OcsBackend.price_enquiry`."""
        check_units("units", units)
        key = self._key_or_raw(subscriber)

        def done(snapshot: AccountSnapshot | None) -> PriceResult:
            tariff = self.rating.tariff(rating_group)
            if snapshot is None:
                result = PriceResult(ResultCode.USER_UNKNOWN, key, rating_group, units=units)
            elif tariff is None:
                result = PriceResult(ResultCode.RATING_FAILED, key, rating_group, units=units)
            else:
                rate = snapshot.rates.get(rating_group, tariff.rate)
                result = PriceResult(
                    ResultCode.SUCCESS,
                    key,
                    rating_group,
                    kind=tariff.kind.value,
                    units=units,
                    rate=rate,
                    cost=units * rate,
                )
            if self.ledger is not None:
                self.ledger.price(now, result)
            return result

        return self._get(key).addCallback(done)

    def expire_stale(self, now: float) -> Deferred[list[ExpiredReservation]]:
        """Session supervision; see `OcsBackend.expire_stale`."""
        # Cut-offs computed here and sent as repr() strings: Lua would print them with 14
        # significant digits only, and the memory backend compares exactly these values.
        params = {
            "now": now,
            "stale_before": repr(float(now - self.policy.stale_grace)),
            "purge_before": repr(float(now - self.policy.session_retention)),
            "retention": self.policy.session_retention,
        }

        def done(reply: dict[str, Any]) -> list[ExpiredReservation]:
            # cjson encodes an empty array as an empty object.
            released = [ExpiredReservation(**item) for item in reply["released"] or []]
            released.sort(key=lambda item: (item.session_id, item.rating_group))
            if self.ledger is not None:
                for item in released:
                    self.ledger.expired(now, item)
            return released

        return self._run(Operation.EXPIRE.value, params).addCallback(done)

    # -- administration --

    @staticmethod
    def _account_params(account: Account) -> dict[str, Any]:
        return {
            "subscriber": account.subscriber,
            "balances": dict(account.balances),
            # A list of pairs: cjson would turn integer keys into an array.
            "rates": [[rating_group, rate] for rating_group, rate in account.rates.items()],
        }

    def provision(self, accounts: Iterable[Account]) -> Deferred[int]:
        """Create or replace accounts; see `OcsBackend.provision`."""
        params = {"accounts": [self._account_params(account) for account in accounts]}
        if not params["accounts"]:
            return succeed(0)
        return self._run("PROVISION", params).addCallback(lambda reply: int(reply["value"]))

    def create_account(self, account: Account) -> Deferred[None]:
        """Add an account; see `OcsBackend.create_account`."""
        params = {"subscriber": account.subscriber, "account": self._account_params(account)}

        def done(reply: dict[str, Any]) -> None:
            if reply.get("error") == "exists":
                raise AccountExistsError(account.subscriber)

        return self._run("CREATE", params).addCallback(done)

    def delete_account(self, subscriber: str) -> Deferred[bool]:
        """Remove an account; see `OcsBackend.delete_account`."""
        params = {"subscriber": normalise_subscriber(subscriber)}
        return self._run("DELETE", params).addCallback(lambda reply: bool(reply["value"]))

    def top_up(self, subscriber: str, kind: str, amount: int) -> Deferred[int]:
        """Add credit; see `OcsBackend.top_up`."""
        return self._change("TOPUP", subscriber, kind, amount)

    def set_balance(self, subscriber: str, kind: str, amount: int) -> Deferred[int]:
        """Set a balance; see `OcsBackend.set_balance`."""
        return self._change("SET", subscriber, kind, amount)

    def _change(self, operation: str, subscriber: str, kind: str, amount: int) -> Deferred[int]:
        unit = check_kind(kind).value
        check_units("amount", amount)
        try:
            key = normalise_subscriber(subscriber)
        except ValueError as exc:
            return fail(exc)
        params = {"subscriber": key, "kind": unit, "amount": amount}

        def done(reply: dict[str, Any]) -> int:
            if reply.get("error") == "unknown":
                raise UnknownSubscriberError(key)
            return int(reply["value"])

        return self._run(operation, params).addCallback(done)

    def get_account(self, subscriber: str) -> Deferred[AccountSnapshot | None]:
        """The account now; see `OcsBackend.get_account`."""
        return self._get(normalise_subscriber(subscriber))

    def _get(self, key: str) -> Deferred[AccountSnapshot | None]:
        def done(reply: dict[str, Any]) -> AccountSnapshot | None:
            if reply["value"] is False:
                return None
            return _snapshot(key, list(reply["value"] or []))

        return self._run("GET", {"subscriber": key}).addCallback(done)

    def list_subscribers(self) -> Deferred[list[str]]:
        """Every subscriber; see `OcsBackend.list_subscribers`."""
        return self._run("LIST", {}).addCallback(
            lambda reply: sorted(str(name) for name in reply["value"] or [])
        )

    @staticmethod
    def _key_or_raw(subscriber: str) -> str:
        try:
            return normalise_subscriber(subscriber)
        except ValueError:
            return subscriber.strip()


def connect_redis_backend(
    host: str = "127.0.0.1",
    port: int = 6379,
    *,
    dbid: int | None = None,
    password: str | None = None,
    connect_timeout: float = 5.0,
    reply_timeout: float | None = 10.0,
    prefix: str = DEFAULT_PREFIX,
    rating: Rating | None = None,
    policy: CreditPolicy | None = None,
    ledger: Ledger | None = None,
) -> Deferred[RedisBackend]:
    """Connect to Redis (reconnecting on loss) and wrap the connection in a backend."""
    connected: Deferred[Any] = txredisapi.Connection(
        host,
        port,
        dbid=dbid,
        password=password,
        reconnect=True,
        connectTimeout=connect_timeout,
        replyTimeout=reply_timeout,
        convertNumbers=False,
    )
    return connected.addCallback(
        lambda redis: RedisBackend(
            redis, prefix=prefix, rating=rating, policy=policy, ledger=ledger
        )
    )
