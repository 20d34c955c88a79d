"""Micro-benchmarks of the transaction layer (run with --benchmark-enable; no timing asserts)."""

from __future__ import annotations

import pytest

from b2bua.sip.message import Request, Response, make_response, parse_message
from b2bua.sip.transaction import (
    Deliver,
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    Send,
    State,
    TransactionTable,
)
from tests.sip import factories

INVITE = factories.request("INVITE")
BYE = factories.request("BYE", to_tag="a6c85cf")


def wire(message):
    """What the far end sees: the message serialized and parsed again."""
    return parse_message(message.serialize())


def invite_rejected_round_trip(hop=wire) -> State:
    """INVITE -> 100 -> 486 -> ACK through client and server transactions and tables."""
    clients, servers = TransactionTable(), TransactionTable()
    ict = InviteClientTransaction(INVITE.copy())
    clients.add(ict)
    [send] = ict.start(0.0)
    request = hop(send.message)
    ist = InviteServerTransaction(request)
    servers.add(ist)
    trying, _deliver = ist.start(0.001)
    assert isinstance(trying, Send)
    clients.match_response(hop(trying.message)).receive(hop(trying.message), 0.002)
    [final] = ist.respond(make_response(request, 486, to_tag="b2b"), 0.01)
    response = hop(final.message)
    assert isinstance(response, Response)
    delivered, ack = clients.match_response(response).receive(response, 0.02)
    assert isinstance(delivered, Deliver)
    ack_request = hop(ack.message)
    assert isinstance(ack_request, Request)
    servers.match_request(ack_request).receive(ack_request, 0.03)
    return ist.state


def bye_round_trip(hop=wire) -> State:
    """BYE -> 200 through non-INVITE client and server transactions."""
    clients, servers = TransactionTable(), TransactionTable()
    nict = NonInviteClientTransaction(BYE.copy())
    clients.add(nict)
    [send] = nict.start(0.0)
    request = hop(send.message)
    nist = NonInviteServerTransaction(request)
    servers.add(nist)
    nist.start(0.001)
    [final] = nist.respond(make_response(request, 200), 0.01)
    response = hop(final.message)
    clients.match_response(response).receive(response, 0.02)
    return nict.state


@pytest.mark.benchmark
def test_bench_invite_round_trip_on_the_wire(benchmark):
    """A rejected INVITE round trip, every message serialized and parsed."""
    assert benchmark(invite_rejected_round_trip) is State.CONFIRMED


@pytest.mark.benchmark
def test_bench_invite_round_trip_objects_only(benchmark):
    """The same round trip passing message objects: the transaction layer alone."""
    assert benchmark(invite_rejected_round_trip, lambda m: m) is State.CONFIRMED


@pytest.mark.benchmark
def test_bench_bye_round_trip_on_the_wire(benchmark):
    """A BYE/200 round trip, every message serialized and parsed."""
    assert benchmark(bye_round_trip) is State.COMPLETED
