"""Free loopback ports for tests that start real servers."""

from __future__ import annotations

import socket

#: Ports already handed out: the kernel may offer a port just closed again, and two
#: servers of one test given the same port collide when they start.
_GIVEN: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on `host` at the time of the call (never one
    this process was given before)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = tcp.getsockname()[1]
            if port in _GIVEN:
                continue
            with socket.socket(family, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
            _GIVEN.add(port)
            return int(port)
    raise RuntimeError("no free port found")
