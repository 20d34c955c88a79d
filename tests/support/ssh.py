"""A small SSH client on twisted.conch for the manhole: key login, a pty and a shell.

It runs on the test's reactor (pytest-twisted): :func:`open_console` logs in with one
key and returns the shell channel, whose :meth:`ShellChannel.run` types a statement at
the Python prompt and returns its output as plain text (terminal escapes stripped).
"""

from __future__ import annotations

import time
from typing import Any

from twisted.conch.ssh import connection, session, userauth
from twisted.conch.ssh.channel import SSHChannel
from twisted.conch.ssh.keys import Key
from twisted.conch.ssh.transport import SSHClientTransport
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import ClientFactory
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from tests.support.telnet import PROMPT, strip_telnet


class ShellChannel(SSHChannel):
    """The session channel: asks for a pty and a shell, and keeps what the server sends."""

    name = b"session"

    def __init__(self, opened: Deferred[ShellChannel], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.opened = opened
        self.raw = b""
        self._used = 0
        self.is_closed = False

    def channelOpen(self, specificData: bytes) -> None:
        pty = session.packRequest_pty_req(b"vt100", (24, 120, 0, 0), b"")
        asked = self.conn.sendRequest(self, b"pty-req", pty, wantReply=True)
        asked.addCallback(lambda _: self.conn.sendRequest(self, b"shell", b"", wantReply=True))
        asked.addCallbacks(lambda _: self.opened.callback(self), self.opened.errback)

    def dataReceived(self, data: bytes) -> None:
        self.raw += data

    def closed(self) -> None:
        self.is_closed = True
        self.loseConnection()

    def text(self) -> str:
        return strip_telnet(self.raw).decode("utf-8", "replace").replace("\r", "")

    async def read_until(self, reactor: Any, needle: str, timeout: float = 10) -> str:
        """Wait (polling the reactor) until ``needle`` appears after what was read before."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            found = text.find(needle, self._used)
            if found >= 0:
                chunk = text[self._used : found + len(needle)]
                self._used = found + len(needle)
                return chunk
            if self.is_closed or time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not received; got:\n{text[self._used :]}")
            await deferLater(reactor, 0.02, lambda: None)

    async def run(self, reactor: Any, statement: str) -> str:
        """Type ``statement`` at the prompt; its output up to the next prompt."""
        self.write(statement.encode("utf-8") + b"\r")
        # Skip to the echo of what was typed (the console may redraw its prompt first).
        await self.read_until(reactor, statement)
        text = await self.read_until(reactor, PROMPT)
        _, _, output = text.partition("\n")
        return output[: -len(PROMPT)].rstrip("\n")


class _Auth(userauth.SSHUserAuthClient):
    """Offers one key, once, or one password, once; nothing else."""

    def __init__(
        self, user: bytes, key: Key | None, password: str | None, service: connection.SSHConnection
    ) -> None:
        super().__init__(user, service)
        self.key = key
        self.password = password
        self.offered = False

    def getPublicKey(self) -> Key | None:
        if self.offered or self.key is None:
            return None
        self.offered = True
        public: Key = self.key.public()
        return public

    def getPrivateKey(self) -> Deferred[Key]:
        assert self.key is not None
        return succeed(self.key)

    def getPassword(self, prompt: bytes | None = None) -> Deferred[bytes] | None:
        password, self.password = self.password, None
        return None if password is None else succeed(password.encode("utf-8"))


class _Connection(connection.SSHConnection):
    def __init__(self, opened: Deferred[ShellChannel]) -> None:
        super().__init__()
        self.opened = opened

    def serviceStarted(self) -> None:
        self.openChannel(ShellChannel(self.opened, conn=self))


class _Transport(SSHClientTransport):
    factory: _Factory

    def verifyHostKey(self, hostKey: bytes, fingerprint: bytes) -> Deferred[bool]:
        self.factory.host_key = Key.fromString(hostKey)
        return succeed(True)  # the test compares it with the one the daemon logged

    def connectionSecure(self) -> None:
        factory = self.factory
        self.requestService(
            _Auth(factory.user, factory.key, factory.password, _Connection(factory.opened))
        )

    def connectionLost(self, reason: Failure | None = None) -> None:
        super().connectionLost(reason)
        if not self.factory.opened.called:
            self.factory.opened.errback(reason or Failure(ConnectionDone()))


class _Factory(ClientFactory):
    def buildProtocol(self, addr: Any) -> Any:
        transport = _Transport()
        transport.factory = self
        return transport

    def __init__(self, user: bytes, key: Key | None, password: str | None) -> None:
        self.user = user
        self.key = key
        self.password = password
        self.host_key: Key | None = None
        self.opened: Deferred[ShellChannel] = Deferred()


async def open_console(
    reactor: Any, port: int, user: str, key: Key | None = None, password: str | None = None
) -> tuple[ShellChannel, Key | None]:
    """Log in to 127.0.0.1:``port`` as ``user`` with ``key`` or ``password``; the shell and
    the server's host key.

    Fails (the Deferred's error: the connection closed) when the login is refused.
    """
    factory = _Factory(user.encode("utf-8"), key, password)
    await TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=10).connect(factory)
    shell = await factory.opened
    await shell.read_until(reactor, PROMPT)
    return shell, factory.host_key
