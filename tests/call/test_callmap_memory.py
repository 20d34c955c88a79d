"""What an ended call leaves behind while its transactions linger (RFC 6026, Timer J/K)."""

from __future__ import annotations

import gc
import weakref

from tests.call.test_callmap import CALLEE, SBC, World, connected, in_dialog, reply, requests


def test_lingering_transactions_do_not_keep_an_ended_call_alive() -> None:
    """After the BYE exchange the call is gone at once, though its INVITE and BYE client
    transactions stay up to 32 s to absorb retransmissions."""
    world = World()
    _, ok = connected(world)
    (bridge,) = world.callmap._bridges.values()
    gone = weakref.ref(bridge)
    del bridge
    world.send(in_dialog("BYE", ok, cseq=2, branch="z9hG4bK-bye"))
    (bye,) = requests(world.take(CALLEE), "BYE")
    world.send(reply(bye, 200), CALLEE)
    assert len(world.callmap) == 0
    assert len(world.endpoint.table) > 0  # the transactions are still there...
    gc.collect()
    assert gone() is None  # ...the call's state is not


def test_a_retransmitted_2xx_after_the_call_ended_is_absorbed() -> None:
    """A 2xx retransmission reaching a lingering INVITE transaction of a finished call
    changes nothing and sends nothing."""
    world = World()
    b_invite, ok = connected(world)
    world.send(in_dialog("BYE", ok, cseq=2, branch="z9hG4bK-bye"))
    (bye,) = requests(world.take(CALLEE), "BYE")
    world.send(reply(bye, 200), CALLEE)
    world.take(SBC)
    gc.collect()
    world.send(reply(b_invite, 200), CALLEE)
    assert world.take(CALLEE) == [] and world.take(SBC) == []
    assert len(world.callmap) == 0
