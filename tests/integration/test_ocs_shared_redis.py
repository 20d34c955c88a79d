"""Two real ``twistd ocs`` processes sharing one real redis-server never over-grant (issue 7).

One redis-server (the session fixture of `tests.ocs.redis_fixture`) and two OCS processes
on it: ``backend = redis``, the same ``redis_url`` and ``key_prefix`` (unique per test, so
tests sharing the server do not see each other's keys), the same accounts file, their own
Diameter port, Origin-Host and ledger. The subscriber has 100 s; clients connected to both
processes ask, all at once, for 30 s on many sessions. Redis runs every reservation as one
atomic script, so exactly 100 s are granted in all, whichever process answers; every other
request is refused 4012. The ledgers of both processes and the account hash in Redis (read
with a few raw RESP commands, per the key schema of `b2bua.ocs.backend_redis`) must agree.
A retransmission (T flag) sent to the other process than the original is answered from the
stored answer, nothing reserved or debited twice.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from b2bua.diameter.avp import Avp
from b2bua.diameter.dictionary import CC_INITIAL_REQUEST, CC_TERMINATION_REQUEST
from b2bua.diameter.message import FLAG_RETRANSMIT, Message, check_command, decode
from b2bua.ocs.ledger import LedgerEntry, billed, read_ledger
from tests.diameter import factories
from tests.integration.test_ocs_diameter import (
    CLIENT_REALM,
    SUBSCRIBER,
    DiameterClient,
    ccr,
    grant_of,
)
from tests.ocs.redis_fixture import RedisServer, redis_server
from tests.support.daemon import Daemon, start_plugin
from tests.support.ports import free_port

__all__ = ["redis_server"]  # the session fixture, re-exported for pytest to find here

pytestmark = pytest.mark.integration

ACCOUNT = "15550100"  # the Redis account key of SUBSCRIBER (normalised)
BALANCE = 100  # seconds of credit
USED = 5  # seconds a granted session reports in its CCR-Termination (at most its grant - 1)
CLIENTS_PER_OCS = 2  # connections (distinct Origin-Hosts) to each OCS process
SESSIONS_PER_CLIENT = 10  # 2 processes x 2 clients x 10 = 40 sessions
WAIT = 10.0  # bound on any single wait
BUDGET = 24.0  # bound on a test's start-up and body; stopping the pair takes at most 5 s more


class Budget:
    """A whole-test time limit: every wait is capped by what is left of it."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self, cap: float = WAIT) -> float:
        """Seconds the next wait may take (at most `cap`); fails once the budget is spent."""
        remaining = self.deadline - time.monotonic()
        assert remaining > 0, "the test ran out of its time budget"
        return min(cap, remaining)


# -- Redis, read directly (RESP over a plain socket) --


def _read_reply(reader: Any) -> Any:
    """One RESP reply from a buffered socket reader, decoded."""
    line: bytes = reader.readline()
    assert line.endswith(b"\r\n"), f"truncated Redis reply {line!r}"
    kind, body = line[:1], line[1:-2]
    if kind == b"+":
        return body.decode()
    if kind == b"-":
        raise AssertionError(f"Redis error: {body.decode()}")
    if kind == b":":
        return int(body)
    if kind == b"$":
        size = int(body)
        return None if size < 0 else reader.read(size + 2)[:-2].decode()
    if kind == b"*":
        count = int(body)
        return None if count < 0 else [_read_reply(reader) for _ in range(count)]
    raise AssertionError(f"unexpected Redis reply {line!r}")


def redis_command(server: RedisServer, *args: str) -> Any:
    """One Redis command on a fresh connection, its decoded reply."""
    request = f"*{len(args)}\r\n".encode()
    for arg in args:
        data = arg.encode()
        request += b"$%d\r\n%s\r\n" % (len(data), data)
    with socket.create_connection((server.host, server.port), timeout=WAIT) as conn:
        conn.sendall(request)
        with conn.makefile("rb") as reader:
            return _read_reply(reader)


def account_in_redis(server: RedisServer, prefix: str) -> tuple[int, int]:
    """(bal:seconds, res:seconds) of the subscriber's account hash."""
    flat = redis_command(server, "HGETALL", f"{prefix}acct:{ACCOUNT}")
    fields = dict(zip(flat[0::2], flat[1::2], strict=True))
    return int(fields["bal:seconds"]), int(fields["res:seconds"])


# -- the two OCS processes --


@dataclass
class OcsProcess:
    """One running ``twistd ocs`` of the pair."""

    name: str
    origin_host: str
    port: int
    ledger: Path
    daemon: Daemon

    def entries(self) -> list[LedgerEntry]:
        """Its ledger, as written so far."""
        return read_ledger(self.ledger)


@dataclass
class SharedOcs:
    """Two OCS processes on one Redis, and the key prefix they share."""

    redis: RedisServer
    prefix: str
    processes: tuple[OcsProcess, OcsProcess]
    budget: Budget

    def account(self) -> tuple[int, int]:
        """(balance, reserved) in Redis now."""
        return account_in_redis(self.redis, self.prefix)

    def open_sessions(self) -> int:
        """Sessions Redis still holds open (the ``stale`` ZSET of the key schema)."""
        return int(redis_command(self.redis, "ZCARD", f"{self.prefix}stale"))

    def all_entries(self) -> list[LedgerEntry]:
        """Both ledgers, one after the other."""
        return [entry for ocs in self.processes for entry in ocs.entries()]


def _start_ocs(name: str, tmp_path: Path, accounts: Path, common: str) -> OcsProcess:
    """Start ``twistd ocs`` NAME on a free port with its own ledger (not waiting for it)."""
    directory = tmp_path / name
    directory.mkdir()
    port = free_port()
    ledger = directory / "ledger.jsonl"
    origin_host = f"{name}.lab.example"
    config = directory / "ocs.conf"
    config.write_text(
        "[ocs]\n"
        f"listen = aaa://127.0.0.1:{port}\n"
        f"origin_host = {origin_host}\n"
        f"accounts = {accounts}\n"
        f"ledger = {ledger}\n" + common
    )
    daemon = start_plugin("ocs", config, log_path=directory / "ocs.log")
    return OcsProcess(name, origin_host, port, ledger, daemon)


@pytest.fixture
def shared(redis_server: RedisServer, tmp_path: Path) -> Iterator[SharedOcs]:
    """Two ``twistd ocs`` on one Redis; both stopped, and their logs checked, afterwards."""
    budget = Budget(BUDGET)
    prefix = f"test:issue7:{uuid4().hex[:8]}:"
    accounts = tmp_path / "accounts.json"
    accounts.write_text(
        json.dumps({"accounts": [{"subscriber": SUBSCRIBER, "seconds": BALANCE, "events": 0}]})
    )
    common = (
        "backend = redis\n"
        f"redis_url = redis://{redis_server.host}:{redis_server.port}/0\n"
        f"key_prefix = {prefix}\n"
    )
    started: list[OcsProcess] = []
    try:
        for name in ("ocs-a", "ocs-b"):  # both start at once, racing to create the account
            started.append(_start_ocs(name, tmp_path, accounts, common))
        for ocs in started:
            ocs.daemon.wait_for_log("OCS listening on", timeout=budget.left(WAIT * 1.5))
        yield SharedOcs(redis_server, prefix, (started[0], started[1]), budget)
    finally:
        for ocs in started:  # SIGTERM both first, so they stop in parallel
            ocs.daemon.terminate()
        for ocs in started:
            ocs.daemon.stop(timeout=5)
    for ocs in started:
        assert "Traceback" not in ocs.daemon.log_text(), ocs.daemon.log_text()


# -- Diameter clients --


class Client:
    """A Diameter client connected (CER/CEA done) to one OCS process; pipelines requests."""

    def __init__(self, ocs: OcsProcess, origin_host: str, budget: Budget) -> None:
        self.ocs = ocs
        self.origin_host = origin_host
        self.budget = budget
        self.conn = DiameterClient(ocs.port)
        self.conn.sock.settimeout(budget.left())
        cea = self.conn.request(factories.cer(origin_host=origin_host, origin_realm=CLIENT_REALM))
        assert cea.result_code == 2001
        assert cea.origin_host == ocs.origin_host

    def exchange(self, requests: Sequence[Message]) -> list[Message]:
        """Send every request in one burst; their answers, in the order of the requests."""
        ids = []
        burst = b""
        for request in requests:
            self.conn.hop_by_hop += 1
            request.hop_by_hop = self.conn.hop_by_hop
            if not request.end_to_end:  # a retransmission keeps its original's
                request.end_to_end = request.hop_by_hop
            ids.append(request.hop_by_hop)
            burst += request.encode()
        sock = self.conn.sock
        sock.settimeout(self.budget.left())
        sock.sendall(burst)
        answers: dict[int, Message] = {}
        while len(answers) < len(ids):
            sock.settimeout(self.budget.left())
            data = sock.recv(65536)
            assert data, f"{self.ocs.name} closed the connection"
            for item in self.conn.framer.feed(data):
                assert isinstance(item, Message), item
                if not item.is_request and item.hop_by_hop in ids:
                    check_command(item)
                    assert item.hop_by_hop not in answers, "two answers to one request"
                    answers[item.hop_by_hop] = item
        return [answers[hop_by_hop] for hop_by_hop in ids]

    def request(self, message: Message) -> Message:
        """One request, its answer."""
        (answer,) = self.exchange([message])
        return answer

    def close(self) -> None:
        """Close the connection (no DPR: the process is stopped right after)."""
        self.conn.close()


@pytest.fixture
def connect(shared: SharedOcs) -> Iterator[Callable[[OcsProcess, str], Client]]:
    """Opens clients to the pair; closes them all before the processes stop."""
    clients: list[Client] = []

    def opener(ocs: OcsProcess, origin_host: str) -> Client:
        client = Client(ocs, origin_host, shared.budget)
        clients.append(client)
        return client

    try:
        yield opener
    finally:
        for client in clients:
            client.close()


def request_from(
    client: Client, request_type: int, number: int, session: str, **units: int
) -> Message:
    """A CCR of the shared helper, sent with this client's Origin-Host."""
    message = ccr(request_type, number, session, **units)
    for avp in message.avps:
        if avp.name == "Origin-Host":
            avp.value = client.origin_host
    return message


def retransmission(message: Message) -> Message:
    """A copy of `message` (same End-to-End id) with the T flag set: a failover resend."""
    copy = decode(message.encode())
    copy.flags |= FLAG_RETRANSMIT
    return copy


def concurrently(
    jobs: Sequence[tuple[Client, list[Message]]], budget: Budget
) -> list[list[Message]]:
    """Every client sends its burst at the same moment (a barrier); the answers per job."""
    barrier = threading.Barrier(len(jobs), timeout=budget.left())

    def run(job: tuple[Client, list[Message]]) -> list[Message]:
        client, requests = job
        barrier.wait()
        return client.exchange(requests)

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(run, job) for job in jobs]
        return [future.result(timeout=budget.left()) for future in futures]


def same_answer(first: Message, again: Message) -> None:
    """`again` answers like `first`: result, request type and number, every MSCC AVP."""
    assert again.result_code == first.result_code
    assert again.get("CC-Request-Type") == first.get("CC-Request-Type")
    assert again.get("CC-Request-Number") == first.get("CC-Request-Number")
    msccs: list[Avp] = first.find_all("Multiple-Services-Credit-Control")
    assert msccs and again.find_all("Multiple-Services-Credit-Control") == msccs


@dataclass
class Sent:
    """One CCR sent, where, and its answer."""

    client: Client
    session: str
    request: Message
    answer: Message


# -- the tests --


def expected_grants(ask: int) -> list[int]:
    """The grants 100 s make for requests of `ask` s each, smallest first."""
    full, rest = divmod(BALANCE, ask)
    return ([rest] if rest else []) + [ask] * full


def used_of(grant: int) -> int:
    """What a granted session reports used: USED s, less when its grant is smaller."""
    return min(USED, max(1, grant - 1))


# 30 s: 1200 s asked, the first 4 requests Redis runs take everything. 3 s: 120 s asked,
# 60 s per process, so both processes must grant and their reservations interleave.
@pytest.mark.parametrize("ask", [30, 3], ids=["30s-slices", "3s-slices"])
def test_two_ocs_processes_never_grant_more_than_the_balance(
    shared: SharedOcs, connect: Callable[[OcsProcess, str], Client], ask: int
) -> None:
    """40 concurrent CCR-Is on two OCS processes share 100 s exactly; CCR-Ts settle it."""
    clients = [
        connect(ocs, f"b2bua-{n}.{ocs.name}.lab.example")
        for ocs in shared.processes
        for n in range(CLIENTS_PER_OCS)
    ]
    jobs = [
        (
            client,
            [
                request_from(
                    client, CC_INITIAL_REQUEST, 0, f"{client.origin_host};{i}", requested=ask
                )
                for i in range(SESSIONS_PER_CLIENT)
            ],
        )
        for client in clients
    ]
    answers = concurrently(jobs, shared.budget)
    initials = [
        Sent(client, request.session_id or "", request, answer)
        for (client, requests), burst in zip(jobs, answers, strict=True)
        for request, answer in zip(requests, burst, strict=True)
    ]

    # Every request answered: 2001 with a grant, or 4012 with none; 100 s granted in all.
    granted: dict[str, int] = {}
    codes: dict[int, int] = {}
    for sent in initials:
        assert sent.answer.session_id == sent.session
        code, seconds, _final = grant_of(sent.answer)
        codes[code or 0] = codes.get(code or 0, 0) + 1
        mscc_code = sent.answer.get_path("Multiple-Services-Credit-Control", "Result-Code")
        assert mscc_code == code, sent.answer
        if code == 2001:
            assert seconds is not None and 0 < seconds <= ask, sent.answer
            granted[sent.session] = seconds
        else:
            assert code == 4012 and seconds is None, sent.answer
    total = sum(granted.values())
    assert len(initials) == 2 * CLIENTS_PER_OCS * SESSIONS_PER_CLIENT
    assert total <= BALANCE
    assert total == BALANCE, granted  # demand exceeds supply
    grants = expected_grants(ask)
    assert sorted(granted.values()) == grants
    assert codes == {2001: len(grants), 4012: len(initials) - len(grants)}
    by_process = {
        ocs.name: sum(granted.get(s.session, 0) for s in initials if s.client.ocs is ocs)
        for ocs in shared.processes
    }
    if ask * SESSIONS_PER_CLIENT * CLIENTS_PER_OCS < BALANCE:  # neither can take it all
        assert all(by_process.values()), by_process

    # Both ledgers together: one line per request, the same grants, one chain of reservations.
    entries = shared.all_entries()
    opened = [e for e in entries if e.request_type == "INITIAL"]
    assert len(opened) == len(initials) and not any(e.duplicate for e in opened)
    assert {e.session_id: e.granted for e in opened if e.granted} == granted
    assert all(e.balance_after == BALANCE for e in opened)
    chain = sorted((e for e in opened if e.granted), key=lambda e: e.reserved_after)
    reserved = 0
    for entry in chain:  # Redis serialised the reservations of both processes
        reserved += entry.granted
        assert entry.reserved_after == reserved, chain
    assert max(e.reserved_after for e in opened) == BALANCE
    assert all(e.reserved_after == BALANCE for e in opened if e.result_code == 4012)
    assert shared.account() == (BALANCE, BALANCE)

    # Terminate every granted session (USED s used, at most), half on the other process.
    other = {clients[0]: clients[2], clients[1]: clients[3]}
    other.update({b: a for a, b in list(other.items())})
    terminations: dict[Client, list[Message]] = {}
    for index, sent in enumerate(s for s in initials if s.session in granted):
        client = sent.client if index % 2 == 0 else other[sent.client]
        terminations.setdefault(client, []).append(
            request_from(
                client, CC_TERMINATION_REQUEST, 1, sent.session, used=used_of(granted[sent.session])
            )
        )
    term_jobs = list(terminations.items())
    for (client, requests), burst in zip(
        term_jobs, concurrently(term_jobs, shared.budget), strict=True
    ):
        for request, answer in zip(requests, burst, strict=True):
            assert answer.session_id == request.session_id
            assert grant_of(answer) == (2001, None, False), (client.ocs.name, answer)

    used = sum(used_of(grant) for grant in granted.values())
    assert shared.account() == (BALANCE - used, 0)
    assert shared.open_sessions() == 0
    entries = shared.all_entries()
    closed = [e for e in entries if e.request_type == "TERMINATE"]
    assert sorted(e.session_id for e in closed) == sorted(granted)
    assert all(e.debited == used_of(granted[e.session_id]) for e in closed), closed
    assert all(e.result_code == 2001 for e in closed)
    assert billed(entries, ACCOUNT, "seconds") == used
    last = min(closed, key=lambda e: e.balance_after)
    assert (last.balance_after, last.reserved_after) == (BALANCE - used, 0)


def test_retransmission_to_the_other_ocs_is_answered_alike_and_not_charged_twice(
    shared: SharedOcs, connect: Callable[[OcsProcess, str], Client]
) -> None:
    """CCR-I (granted, refused) and CCR-T resent with the T flag to the other process."""
    first_ocs, second_ocs = shared.processes
    first = connect(first_ocs, "b2bua-1.lab.example")
    second = connect(second_ocs, "b2bua-2.lab.example")

    # On the first process: 70 s granted, the other 30 s granted, then 40 s refused.
    grant = request_from(first, CC_INITIAL_REQUEST, 0, "dup;granted", requested=70)
    granted = first.request(grant)
    assert grant_of(granted) == (2001, 70, False)
    fill = request_from(first, CC_INITIAL_REQUEST, 0, "dup;fill", requested=30)
    assert grant_of(first.request(fill)) == (2001, 30, False)
    refuse = request_from(first, CC_INITIAL_REQUEST, 0, "dup;refused", requested=40)
    refused = first.request(refuse)
    assert grant_of(refused) == (4012, None, False)
    assert shared.account() == (BALANCE, BALANCE)

    # Their retransmissions, to the second process: the stored answers, nothing reserved.
    again = second.request(retransmission(grant))
    assert again.origin_host == second_ocs.origin_host
    same_answer(granted, again)
    same_answer(refused, second.request(retransmission(refuse)))
    assert shared.account() == (BALANCE, BALANCE)

    # CCR-T on the first process, its retransmission on the second: debited once.
    terminate = request_from(first, CC_TERMINATION_REQUEST, 1, "dup;granted", used=USED)
    ended = first.request(terminate)
    assert grant_of(ended) == (2001, None, False)
    assert shared.account() == (BALANCE - USED, 30)
    same_answer(ended, second.request(retransmission(terminate)))
    assert shared.account() == (BALANCE - USED, 30)

    replayed = [e for e in second_ocs.entries() if e.duplicate]
    assert [(e.session_id, e.request_type) for e in replayed] == [
        ("dup;granted", "INITIAL"),
        ("dup;refused", "INITIAL"),
        ("dup;granted", "TERMINATE"),
    ]
    assert all(e.debited == 0 and e.cost == 0 for e in replayed)
    assert not any(e.duplicate for e in first_ocs.entries())

    # A CCR-T and its retransmission racing on both processes: one debit, one replay.
    race = request_from(first, CC_TERMINATION_REQUEST, 1, "dup;fill", used=USED)
    ((original,), (replay,)) = concurrently(
        [(first, [race]), (second, [retransmission(race)])], shared.budget
    )
    assert grant_of(original) == (2001, None, False)
    same_answer(original, replay)
    assert shared.account() == (BALANCE - 2 * USED, 0)
    assert shared.open_sessions() == 0
    entries = shared.all_entries()
    assert billed(entries, ACCOUNT, "seconds") == 2 * USED
    raced = [e for e in entries if e.session_id == "dup;fill" and e.request_type == "TERMINATE"]
    assert sorted((e.duplicate, e.debited) for e in raced) == [(False, USED), (True, 0)]
