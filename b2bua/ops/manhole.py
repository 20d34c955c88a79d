"""The manhole: a Python prompt with the operator's helpers, over telnet and SSH (glue).

Built from twisted.conch's telnet, SSH and manhole pieces.  A telnet login asks for a
user name and a password, checked against the ``[manhole] passwd`` file (PBKDF2 hashes,
see :mod:`b2bua.ops.passwd`) in a worker thread so that the reactor never waits for the
hash.  Passwords are neither stored nor logged.  Over SSH (``[manhole] ssh_listen``) a
key of ``ssh_authorized_keys`` logs in, and on loopback a passwd user's password too;
the host key is created at the first start (see :mod:`b2bua.ops.sshkeys`).  The prompt
runs in the reactor thread: what is typed there sees the live service tree, and a slow
statement stalls the whole daemon.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.application.service import Service
from twisted.conch import manhole, manhole_ssh, telnet
from twisted.conch.checkers import IAuthorizedKeysDB, SSHPublicKeyChecker
from twisted.conch.error import ValidPublicKey
from twisted.conch.insults import insults
from twisted.conch.interfaces import IConchUser
from twisted.conch.ssh.keys import Key
from twisted.cred import credentials, error, portal
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import ISSHPrivateKey
from twisted.internet import defer, protocol, threads
from twisted.python.failure import Failure
from zope.interface import implementer

from b2bua import logs
from b2bua.config import endpoint_is_loopback
from b2bua.daemon import ListenError, listen_now
from b2bua.ops.helpers import Operator
from b2bua.ops.passwd import DUMMY_HASH, read_passwd, users_summary, verify_password
from b2bua.ops.sshkeys import (
    SshKeyError,
    fingerprint,
    load_or_create_host_key,
    read_authorized_keys,
    too_open,
)

__all__ = [
    "KeyChecker",
    "ManholeService",
    "PasswdChecker",
    "SshConsole",
    "make_manhole_service",
    "ssh_console",
]

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


@implementer(ICredentialsChecker, IAuthorizedKeysDB)
class KeyChecker:
    """Checks SSH public keys (and their signatures) against the authorized_keys file.

    Any key listed may log in under any user name; the log names the user and the key's
    fingerprint.
    """

    credentialInterfaces = (ISSHPrivateKey,)

    def __init__(self, keys: list[Key]) -> None:
        self.keys = keys
        self._checker = SSHPublicKeyChecker(self)

    def getAuthorizedKeys(self, username: bytes) -> list[Key]:
        return list(self.keys)

    def requestAvatarId(self, creds: Any) -> defer.Deferred[bytes | tuple[()]]:
        user: str = creds.username.decode("utf-8", "replace")

        def accepted(avatar: bytes | tuple[()]) -> bytes | tuple[()]:
            key = fingerprint(Key.fromString(creds.blob))
            log.info("manhole: {user} logged in over SSH with key {key}", user=user, key=key)
            return avatar

        def refused(failure: Failure) -> Failure:
            if not failure.check(ValidPublicKey):  # that one is the client asking first
                log.warn("manhole: SSH key refused for {user!r}", user=user)
            return failure

        attempt: defer.Deferred[bytes | tuple[()]] = self._checker.requestAvatarId(creds)
        return attempt.addCallbacks(accepted, refused)


class _SshSession(manhole_ssh.TerminalSession):
    """conch's terminal session, completed: a resized window and an EOF are not errors."""

    width, height = 80, 24  # a client that asks for no pty still gets a prompt

    def openShell(self, proto: Any) -> None:
        self.terminal = self.chainedProtocolFactory()
        self.transportFactory(
            proto, self.terminal, IConchUser(self.original), self.width, self.height
        )

    def windowChanged(self, newWindowSize: Any) -> None:
        rows, columns = newWindowSize[:2]
        terminal: Any = self.terminal.terminalProtocol
        if terminal is not None:
            terminal.terminalSize(columns, rows)

    def eofReceived(self) -> None:
        """The client closed its input: the session ends when it closes the channel."""


@dataclass
class SshConsole:
    """The console over SSH: where it listens, its host key file, who may log in."""

    listen: str
    host_key_path: str
    keys: KeyChecker
    host_key: Key | None = None

    def factory(self, console_portal: portal.Portal) -> manhole_ssh.ConchFactory:
        """An SSH server factory with the host key (loaded or created first)."""
        key, created = load_or_create_host_key(self.host_key_path)
        if created:
            log.info("manhole: SSH host key created in {path}", path=self.host_key_path)
        elif too_open(self.host_key_path):
            log.warn(
                "manhole: SSH host key {path} is readable by others: chmod 600 it",
                path=self.host_key_path,
            )
        self.host_key = key
        factory = manhole_ssh.ConchFactory(console_portal)
        # Instance attributes: ConchFactory's class-level dicts would be shared.
        keys: Any = factory  # typeshed says bytes; conch wants Key objects there
        keys.publicKeys = {key.sshType(): key.public()}
        keys.privateKeys = {key.sshType(): key}
        factory.noisy = False
        return factory


class ManholeService(Service):
    """The console's listening ports (telnet, SSH or both), its checkers and its namespace.

    The ports are bound in ``startService`` (not before), so that a port in use ends
    start-up with the root service's one-line message.
    """

    name = "manhole"

    def __init__(
        self,
        listen: str,
        checker: PasswdChecker,
        namespace: dict[str, object],
        reactor: Any,
        *,
        ssh: SshConsole | None = None,
    ) -> None:
        self.listen = listen
        self.checker = checker
        self.namespace = namespace
        self.reactor = reactor
        self.ssh = ssh
        self.factory = _TelnetFactory(portal.Portal(_ConsoleRealm(namespace), [checker]))
        self.ports: list[Any] = []

    @property
    def port(self) -> Any:
        """The telnet port (None: not listening)."""
        return self.ports[0] if self.ports and self.listen else None

    def startService(self) -> None:
        if self.listen:
            self.ports.append(listen_now(self.reactor, self.listen, self.factory, "manhole"))
            log.info(
                "manhole listening on {listen} for {users}",
                listen=self.listen,
                users=users_summary(self.checker.users),
            )
        if self.ssh is not None:
            self._start_ssh(self.ssh)
        super().startService()

    def _start_ssh(self, ssh: SshConsole) -> None:
        realm: Any = manhole_ssh.TerminalRealm()
        realm.sessionFactory = _SshSession
        namespace = self.namespace
        realm.chainedProtocolFactory = lambda: insults.ServerProtocol(manhole.Manhole, namespace)
        checkers: list[ICredentialsChecker] = [ssh.keys]
        if endpoint_is_loopback(ssh.listen):
            checkers.append(self.checker)  # passwords too, on loopback only
        try:
            factory = ssh.factory(portal.Portal(realm, checkers))
        except SshKeyError as err:
            raise ListenError(f"manhole: {err}") from None
        self.ports.append(listen_now(self.reactor, ssh.listen, factory, "manhole SSH"))
        assert ssh.host_key is not None
        log.info(
            "manhole SSH listening on {listen}, host key {fingerprint}, for {count} key(s)",
            listen=ssh.listen,
            fingerprint=fingerprint(ssh.host_key),
            count=len(ssh.keys.keys),
        )

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        ports, self.ports = self.ports, []
        stopped = [defer.maybeDeferred(port.stopListening) for port in ports]
        return defer.gatherResults(stopped).addCallback(lambda _: None)

    def reload_users(self, passwd: str, authorized_keys: str = "") -> None:
        """Read the passwd and authorized_keys files again (SIGHUP); open sessions stay."""
        self.checker.users = read_passwd(passwd) if passwd else {}
        log.info("manhole users: {users}", users=users_summary(self.checker.users))
        if self.ssh is not None:
            self.ssh.keys.keys = read_authorized_keys(authorized_keys) if authorized_keys else []
            log.info("manhole SSH keys: {count}", count=len(self.ssh.keys.keys))


def ssh_console(settings: Any) -> SshConsole | None:
    """The SSH side of a ``[manhole]`` section (None: no ``ssh_listen``); keys validated."""
    if not settings.ssh_listen:
        return None
    keys = (
        read_authorized_keys(settings.ssh_authorized_keys) if settings.ssh_authorized_keys else []
    )
    return SshConsole(settings.ssh_listen, settings.ssh_host_key, KeyChecker(keys))


def make_manhole_service(root: Any, reactor: Any, reload: Any) -> ManholeService:
    """The manhole of ``root.config`` ([manhole] listen or ssh_listen set, files validated)."""
    settings = root.config.manhole
    operator = Operator(root, reload=reload, clock=reactor.seconds)
    checker = PasswdChecker(read_passwd(settings.passwd) if settings.passwd else {})
    return ManholeService(
        settings.listen, checker, operator.namespace(), reactor, ssh=ssh_console(settings)
    )
