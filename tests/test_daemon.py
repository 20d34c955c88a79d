"""The daemon boundaries: SIGTERM/SIGINT as a normal stop, and listeners bound at start."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import pytest
from twisted.internet.error import CannotListenError, ReactorNotRunning
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor

from b2bua.daemon import ListenError, StopOnSignals, listen_now


class FakeReactor:
    """Records what StopOnSignals asks of the reactor; runs callFromThread at once."""

    def __init__(self) -> None:
        self.when_running: list[Callable[[], None]] = []
        self.stops = 0
        self.running = True

    def callWhenRunning(self, f: Callable[[], None]) -> None:
        self.when_running.append(f)

    def callFromThread(self, f: Callable[..., None], *args: Any) -> None:
        f(*args)

    def stop(self) -> None:
        if not self.running:
            raise ReactorNotRunning()
        self.stops += 1
        self.running = False


def test_sigterm_stops_the_reactor_once_without_recording_the_signal() -> None:
    """Handlers go in once the reactor runs; a signal asks for one stop, a second changes
    nothing (twistd then exits 0 instead of re-raising the signal)."""
    reactor = FakeReactor()
    installed: dict[int, Any] = {}
    service = StopOnSignals(
        reactor, install=lambda number, handler: installed.update({number: handler})
    )
    service.startService()
    assert installed == {}  # the reactor's own handlers are not in yet
    (take_over,) = reactor.when_running
    take_over()
    assert set(installed) == {signal.SIGTERM, signal.SIGINT}
    installed[signal.SIGTERM](signal.SIGTERM, None)
    assert reactor.stops == 1 and service.stopping
    installed[signal.SIGINT](signal.SIGINT, None)
    assert reactor.stops == 1


def test_a_stop_already_under_way_is_not_an_error() -> None:
    """The reactor stopping for another reason when the signal comes: nothing is raised."""
    reactor = FakeReactor()
    reactor.running = False
    installed: dict[int, Any] = {}
    service = StopOnSignals(
        reactor, install=lambda number, handler: installed.update({number: handler})
    )
    service.startService()
    reactor.when_running[0]()
    installed[signal.SIGTERM](signal.SIGTERM, None)
    assert reactor.stops == 0


def test_handlers_are_not_installed_for_a_service_stopped_before_the_reactor_ran() -> None:
    """startService then stopService before the reactor runs: no handler is installed."""
    reactor = FakeReactor()
    installed: dict[int, Any] = {}
    service = StopOnSignals(
        reactor, install=lambda number, handler: installed.update({number: handler})
    )
    service.startService()
    service.stopService()
    reactor.when_running[0]()
    assert installed == {}


class RefusingReactor(MemoryReactor):
    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:
        raise CannotListenError(interface, port, OSError(98, "Address already in use"))


def test_listen_now_gives_the_port_or_one_clear_error() -> None:
    """A bound port is returned at once; a refused one raises ListenError naming all."""
    factory = Factory.forProtocol(Protocol)
    port = listen_now(MemoryReactor(), "tcp:9201:interface=127.0.0.1", factory, "metrics")
    assert port.getHost().port == 9201
    with pytest.raises(ListenError) as caught:
        listen_now(RefusingReactor(), "tcp:9201:interface=127.0.0.1", factory, "metrics")
    message = str(caught.value)
    assert message.startswith("metrics cannot listen on tcp:9201:interface=127.0.0.1: ")
    assert "Address already in use" in message
