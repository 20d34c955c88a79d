"""The manhole: a telnet console with a Python prompt and the operator's helpers (glue).

Built from twisted.conch's telnet and manhole pieces.  Every login asks for a user name
and a password, checked against the ``[manhole] passwd`` file (PBKDF2 hashes, see
:mod:`b2bua.ops.passwd`) in a worker thread so that the reactor never waits for the hash.
Passwords are neither stored nor logged.  The prompt runs in the reactor thread: what is
typed there sees the live service tree, and a slow statement stalls the whole daemon.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.conch import manhole, telnet
from twisted.conch.insults import insults
from twisted.cred import credentials, error, portal
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet import defer, endpoints, protocol, threads
from twisted.python.failure import Failure
from zope.interface import implementer

from b2bua import logs
from b2bua.ops.helpers import Operator
from b2bua.ops.passwd import DUMMY_HASH, read_passwd, users_summary, verify_password

__all__ = ["ManholeService", "PasswdChecker", "make_manhole_service"]

log = logs.logger(__name__)


@implementer(ICredentialsChecker)
class PasswdChecker:
    """Checks user names and passwords against the hashes of a passwd file."""

    credentialInterfaces = (credentials.IUsernamePassword,)

    def __init__(self, users: dict[str, str], *, in_thread: bool = True) -> None:
        self.users = users
        self.in_thread = in_thread

    def requestAvatarId(self, creds: Any) -> defer.Deferred[bytes | tuple[()]]:
        user: str = creds.username.decode("utf-8", "replace")
        password: str = creds.password.decode("utf-8", "replace")
        stored = self.users.get(user, DUMMY_HASH)
        known = user in self.users

        def check(matched: object) -> bytes | tuple[()]:
            if matched is True and known:
                log.info("manhole: {user} logged in", user=user)
                return user.encode("utf-8")
            log.warn("manhole: login refused for {user!r}", user=user)
            raise error.UnauthorizedLogin()

        if self.in_thread:
            return threads.deferToThread(verify_password, password, stored).addCallback(check)
        return defer.maybeDeferred(verify_password, password, stored).addCallback(check)


def _quietly(failure: Any) -> None:
    """A telnet option the client did not take (or never answered): the defaults do."""
    log.debug("manhole: telnet option not negotiated: {error}", error=failure.getErrorMessage())


class _Console(telnet.TelnetBootstrapProtocol):
    """The Python prompt behind the login: asks to echo and to go character at a time.

    Clients that never answer the negotiation (netcat, test clients) still get a working
    prompt; the requests they leave unanswered are dropped quietly.
    """

    def connectionMade(self) -> None:
        transport: Any = self.transport
        transport.negotiationMap[telnet.NAWS] = self.telnet_NAWS
        for request in (
            transport.will(telnet.ECHO),
            transport.will(telnet.SGA),
            transport.do(telnet.NAWS),
        ):
            request.addErrback(_quietly)
        self.protocol = self.protocolFactory(*self.protocolArgs, **self.protocolKwArgs)
        self.protocol.makeConnection(self)


class _Login(telnet.AuthenticatingTelnetProtocol):
    """User name, then password (not echoed); three failures close the connection."""

    MAX_FAILURES = 3
    failures = 0

    def telnet_User(self, line: bytes) -> str:
        self.username = line
        transport: Any = self.transport
        transport.will(telnet.ECHO).addErrback(_quietly)
        transport.write(b"Password: ")
        return "Password"

    def telnet_Password(self, line: bytes) -> str:
        username, password = self.username, line
        del self.username

        def login(_: object) -> None:
            creds = credentials.UsernamePassword(username, password)
            attempt = self.portal.login(creds, None, telnet.ITelnetProtocol)
            attempt.addCallbacks(self._cbLogin, self._ebLogin)

        # Stop hiding the input whether or not the client ever agreed to hide it.
        transport: Any = self.transport
        transport.wont(telnet.ECHO).addBoth(login)
        return "Discard"

    def _ebLogin(self, failure: Any) -> None:
        self.failures += 1
        transport: Any = self.transport
        if not failure.check(error.UnauthorizedLogin):
            log.failure("manhole: login failed", failure)
        if self.failures >= self.MAX_FAILURES:
            transport.write(b"\r\nAuthentication failed\r\n")
            transport.loseConnection()
            return
        transport.write(b"\r\nAuthentication failed\r\nUsername: ")
        self.state = "User"


@implementer(portal.IRealm)
class _ConsoleRealm:
    """Gives every logged-in user a Python prompt on the shared namespace."""

    def __init__(self, namespace: dict[str, object]) -> None:
        self.namespace = namespace

    def requestAvatar(self, avatar_id: Any, mind: Any, *interfaces: Any) -> Any:
        if telnet.ITelnetProtocol not in interfaces:
            raise NotImplementedError("only telnet")
        console = _Console(insults.ServerProtocol, manhole.Manhole, self.namespace)
        return telnet.ITelnetProtocol, console, lambda: None


class _TelnetFactory(protocol.ServerFactory):
    """A telnet transport that asks for a user name and password first."""

    def __init__(self, console_portal: portal.Portal) -> None:
        self.portal = console_portal

    def buildProtocol(self, addr: Any) -> protocol.Protocol:
        transport = telnet.TelnetTransport(_Login, self.portal)
        transport.factory = self
        return transport


class ManholeService(Service):
    """The console's listening port, its checker and its namespace.

    The port is bound in ``startService`` (not before), so that a port in use ends
    start-up with the root service's one-line message.
    """

    name = "manhole"

    def __init__(
        self, listen: str, checker: PasswdChecker, namespace: dict[str, object], reactor: Any
    ) -> None:
        self.listen = listen
        self.checker = checker
        self.namespace = namespace
        self.reactor = reactor
        self.factory = _TelnetFactory(portal.Portal(_ConsoleRealm(namespace), [checker]))
        self.port: Any = None

    def startService(self) -> None:
        endpoint = endpoints.serverFromString(self.reactor, self.listen)
        outcome: list[Any] = []
        endpoint.listen(self.factory).addBoth(outcome.append)
        if not outcome:
            raise RuntimeError(f"manhole: {self.listen} did not start listening")
        if isinstance(outcome[0], Failure):
            outcome[0].raiseException()
        self.port = outcome[0]
        super().startService()
        log.info(
            "manhole listening on {listen} for {users}",
            listen=self.listen,
            users=users_summary(self.checker.users),
        )

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        port, self.port = self.port, None
        if port is None:
            return defer.succeed(None)
        return defer.maybeDeferred(port.stopListening)

    def reload_users(self, path: str) -> None:
        """Read the passwd file again (SIGHUP); sessions already open stay open."""
        self.checker.users = read_passwd(path)
        log.info("manhole users: {users}", users=users_summary(self.checker.users))


def make_manhole_service(root: Any, reactor: Any, reload: Any) -> ManholeService:
    """The manhole of ``root.config`` ([manhole] listen set, passwd validated)."""
    settings = root.config.manhole
    operator = Operator(root, reload=reload, clock=reactor.seconds)
    return ManholeService(
        settings.listen, PasswdChecker(read_passwd(settings.passwd)), operator.namespace(), reactor
    )
