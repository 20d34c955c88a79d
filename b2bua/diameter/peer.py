"""RFC 6733 section 5.6 peer state machine, sans-IO.

One :class:`Peer` per remote Diameter identity.  The transport feeds it
events (``start``, ``connected``, ``incoming_cer``, ``receive``,
``disconnected``, ``stop``, ``on_timer``) with the current time and an
opaque connection handle, and executes the returned actions: connect,
send, disconnect, accept, and the notifications ``Opened``, ``Closed``,
``Deliver`` and ``DwaReceived``.  Every transition of the RFC table lives
in :data:`TRANSITIONS`, one entry per row.

Capabilities exchange (5.3): CER/CEA carry Origin-Host/-Realm,
Host-IP-Address, Vendor-Id, Product-Name "b2bua", Firmware-Revision,
Origin-State-Id, Supported-Vendor-Id 10415 and Auth-Application-Id 4.
A CER from a host not in ``allowed_peers`` gets CEA 3010
DIAMETER_UNKNOWN_PEER; no common application gets 5010; both close.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from b2bua.diameter.dictionary import (
    APP_CREDIT_CONTROL,
    APP_RELAY,
    CMD_CAPABILITIES_EXCHANGE,
    CMD_DEVICE_WATCHDOG,
    CMD_DISCONNECT_PEER,
    DIAMETER_NO_COMMON_APPLICATION,
    DIAMETER_SUCCESS,
    DIAMETER_UNKNOWN_PEER,
    DISCONNECT_REBOOTING,
    VENDOR_3GPP,
)
from b2bua.diameter.errors import DecodeError, DiameterError
from b2bua.diameter.message import IdGenerator, Message, make_answer

__all__ = [
    "Accept",
    "Action",
    "Closed",
    "Connect",
    "Deliver",
    "Disconnect",
    "DwaReceived",
    "Opened",
    "Peer",
    "PeerConfig",
    "PeerEvent",
    "PeerInfo",
    "PeerNotOpen",
    "PeerState",
    "Send",
    "answer_cer",
    "build_cer",
    "build_dpr",
    "build_dwr",
    "elect",
]


class PeerNotOpen(DiameterError):
    """Send-Message outside I-Open / R-Open."""


class PeerState(enum.Enum):
    """States of RFC 6733 5.6."""

    CLOSED = "Closed"
    WAIT_CONN_ACK = "Wait-Conn-Ack"
    WAIT_I_CEA = "Wait-I-CEA"
    WAIT_CONN_ACK_ELECT = "Wait-Conn-Ack/Elect"
    WAIT_RETURNS = "Wait-Returns"
    R_OPEN = "R-Open"
    I_OPEN = "I-Open"
    CLOSING = "Closing"


class PeerEvent(enum.Enum):
    """Events of RFC 6733 5.6.2 (I-/R- prefixed where the connection matters)."""

    START = "Start"
    R_CONN_CER = "R-Conn-CER"
    I_RCV_CONN_ACK = "I-Rcv-Conn-Ack"
    I_RCV_CONN_NACK = "I-Rcv-Conn-Nack"
    TIMEOUT = "Timeout"
    I_RCV_CEA = "I-Rcv-CEA"
    I_RCV_NON_CEA = "I-Rcv-Non-CEA"
    I_PEER_DISC = "I-Peer-Disc"
    R_PEER_DISC = "R-Peer-Disc"
    WIN_ELECTION = "Win-Election"
    SEND_MESSAGE = "Send-Message"
    RCV_MESSAGE = "Rcv-Message"
    RCV_DWR = "Rcv-DWR"
    RCV_DWA = "Rcv-DWA"
    RCV_DPR = "Rcv-DPR"
    RCV_DPA = "Rcv-DPA"
    STOP = "Stop"


# --- actions ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connect:
    """I-Snd-Conn-Req: open the initiator transport connection."""


@dataclass(frozen=True, slots=True)
class Accept:
    """R-Accept: bind this incoming connection to the peer."""

    conn: object


@dataclass(frozen=True, slots=True)
class Send:
    """Write ``data`` (the encoded ``message``) on ``conn``."""

    conn: object
    message: Message
    data: bytes


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Close ``conn`` (I-Disc, R-Disc, R-Reject, Error, Cleanup)."""

    conn: object
    reason: str


@dataclass(frozen=True, slots=True)
class Opened:
    """The peer reached I-Open or R-Open on ``conn``."""

    conn: object
    peer: PeerInfo


@dataclass(frozen=True, slots=True)
class Closed:
    """The peer returned to Closed; ``disconnect_cause`` is from a received DPR."""

    reason: str
    disconnect_cause: int | None = None


@dataclass(frozen=True, slots=True)
class Deliver:
    """Process: an application message (request or answer) for the upper layer."""

    conn: object
    message: Message


@dataclass(frozen=True, slots=True)
class DwaReceived:
    """Process-DWA: a watchdog answer arrived (feed the RFC 3539 watchdog)."""

    conn: object
    message: Message


Action = Connect | Accept | Send | Disconnect | Opened | Closed | Deliver | DwaReceived


# --- capabilities ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeerConfig:
    """Local identity and capabilities advertised in CER/CEA (RFC 6733 5.3)."""

    origin_host: str
    origin_realm: str
    host_ip_addresses: tuple[str, ...] = ("127.0.0.1",)
    vendor_id: int = 0  # 5.3.3: zero means "ignore"; b2bua has no enterprise number
    product_name: str = "b2bua"
    firmware_revision: int = 1
    origin_state_id: int = 0
    auth_application_ids: tuple[int, ...] = (APP_CREDIT_CONTROL,)
    acct_application_ids: tuple[int, ...] = ()
    supported_vendor_ids: tuple[int, ...] = (VENDOR_3GPP,)
    vendor_specific_application_ids: tuple[tuple[int, int], ...] = ()  # (vendor, auth app)
    allowed_peers: frozenset[str] | None = None  # None: accept any Origin-Host
    connect_timeout: float = 10.0
    cea_timeout: float = 10.0
    dpa_timeout: float = 5.0

    @property
    def applications(self) -> frozenset[int]:
        """All application ids this node supports."""
        apps = set(self.auth_application_ids) | set(self.acct_application_ids)
        apps |= {app for _vendor, app in self.vendor_specific_application_ids}
        return frozenset(apps)

    def capability_avps(self) -> list[Any]:
        """The CER/CEA body shared by both messages (after Origin-Host/-Realm)."""
        avps: list[Any] = [("Host-IP-Address", ip) for ip in self.host_ip_addresses]
        avps += [
            ("Vendor-Id", self.vendor_id),
            ("Product-Name", self.product_name),
            ("Origin-State-Id", self.origin_state_id),
        ]
        avps += [("Supported-Vendor-Id", v) for v in self.supported_vendor_ids]
        avps += [("Auth-Application-Id", a) for a in self.auth_application_ids]
        avps += [("Acct-Application-Id", a) for a in self.acct_application_ids]
        avps += [
            ("Vendor-Specific-Application-Id", [("Vendor-Id", v), ("Auth-Application-Id", a)])
            for v, a in self.vendor_specific_application_ids
        ]
        avps.append(("Firmware-Revision", self.firmware_revision))
        return avps


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """What the remote peer announced in its CER or CEA."""

    origin_host: str
    origin_realm: str
    host_ip_addresses: tuple[str, ...] = ()
    vendor_id: int = 0
    product_name: str = ""
    origin_state_id: int | None = None
    applications: frozenset[int] = field(default_factory=frozenset)

    @classmethod
    def from_message(cls, msg: Message) -> PeerInfo:
        """Read a CER/CEA; raises DecodeError on malformed values."""
        apps = {a.value for a in msg.find_all("Auth-Application-Id")}
        apps |= {a.value for a in msg.find_all("Acct-Application-Id")}
        for vsai in msg.find_all("Vendor-Specific-Application-Id"):
            apps |= {a.value for a in vsai.find_all("Auth-Application-Id")}
            apps |= {a.value for a in vsai.find_all("Acct-Application-Id")}
        return cls(
            origin_host=msg.origin_host or "",
            origin_realm=msg.origin_realm or "",
            host_ip_addresses=tuple(str(a.value) for a in msg.find_all("Host-IP-Address")),
            vendor_id=msg.get("Vendor-Id", 0),
            product_name=msg.get("Product-Name", ""),
            origin_state_id=msg.get("Origin-State-Id"),
            applications=frozenset(apps),
        )


def common_applications(local: frozenset[int], remote: frozenset[int]) -> frozenset[int]:
    """Applications both sides support; the relay id matches everything."""
    if APP_RELAY in remote:
        return local
    if APP_RELAY in local:
        return remote
    return local & remote


def build_cer(config: PeerConfig, ids: IdGenerator) -> Message:
    """Capabilities-Exchange-Request (RFC 6733 5.3.1)."""
    return Message.request(
        "Capabilities-Exchange",
        avps=[
            ("Origin-Host", config.origin_host),
            ("Origin-Realm", config.origin_realm),
            *config.capability_avps(),
        ],
        hop_by_hop=ids.next_hop_by_hop(),
        end_to_end=ids.next_end_to_end(),
    )


def answer_cer(config: PeerConfig, cer: Message) -> tuple[Message, PeerInfo | None]:
    """Process-CER: the CEA to send and, on success, the peer's capabilities.

    Usable before a :class:`Peer` exists (RFC 6733 5.6.1 incoming
    connection logic): 3010 for a host outside ``allowed_peers``, 5010 when
    no application is shared, a protocol error for a malformed CER.
    """
    try:
        info = PeerInfo.from_message(cer)
        code = DIAMETER_SUCCESS
        allowed = config.allowed_peers
        if allowed is not None and info.origin_host.lower() not in allowed:
            code = DIAMETER_UNKNOWN_PEER
        elif not common_applications(config.applications, info.applications):
            code = DIAMETER_NO_COMMON_APPLICATION
    except DecodeError as exc:
        code = exc.result_code
        info = None
    body = config.capability_avps() if code == DIAMETER_SUCCESS else []
    cea = make_answer(
        cer,
        code,
        body,
        origin_host=config.origin_host,
        origin_realm=config.origin_realm,
    )
    return cea, (info if code == DIAMETER_SUCCESS else None)


def build_dwr(config: PeerConfig, ids: IdGenerator) -> Message:
    """Device-Watchdog-Request (RFC 6733 5.5.1)."""
    return Message.request(
        "Device-Watchdog",
        avps=[
            ("Origin-Host", config.origin_host),
            ("Origin-Realm", config.origin_realm),
            ("Origin-State-Id", config.origin_state_id),
        ],
        hop_by_hop=ids.next_hop_by_hop(),
        end_to_end=ids.next_end_to_end(),
    )


def build_dpr(config: PeerConfig, ids: IdGenerator, cause: int) -> Message:
    """Disconnect-Peer-Request with Disconnect-Cause (RFC 6733 5.4.1)."""
    return Message.request(
        "Disconnect-Peer",
        avps=[
            ("Origin-Host", config.origin_host),
            ("Origin-Realm", config.origin_realm),
            ("Disconnect-Cause", cause),
        ],
        hop_by_hop=ids.next_hop_by_hop(),
        end_to_end=ids.next_end_to_end(),
    )


def elect(local_host: str, remote_host: str) -> bool:
    """RFC 6733 5.6.4: the local node wins if its Origin-Host sorts higher (ASCII, no case)."""
    return local_host.lower().encode() > remote_host.lower().encode()


# --- the machine ----------------------------------------------------------------

_S = PeerState
_E = PeerEvent
Handler = Callable[["Peer"], PeerState]


class Peer:
    """One peer's RFC 6733 5.6 state machine.

    Connections are opaque handles chosen by the transport; the machine
    remembers which one is the initiator (``i_conn``) and which the
    responder (``r_conn``).  Every method returns the actions to execute in
    order.
    """

    def __init__(
        self,
        config: PeerConfig,
        now: float,
        *,
        ids: IdGenerator | None = None,
    ) -> None:
        self.config = config
        self.ids = ids or IdGenerator(now)
        self.state = _S.CLOSED
        self.i_conn: object | None = None
        self.r_conn: object | None = None
        self.remote: PeerInfo | None = None
        self._r_info: PeerInfo | None = None  # CER info of the pending responder
        self._r_cea: Message | None = None  # CEA owed to the pending responder
        self._deadline: float | None = None
        self._now = now
        self._out: list[Action] = []
        self._conn: object | None = None  # connection of the current event
        self._msg: Message | None = None  # message of the current event
        self._cause: int = DISCONNECT_REBOOTING

    # -- public event API ----------------------------------------------------------
    def next_deadline(self) -> float | None:
        """When :meth:`on_timer` must be called (None: no timer running)."""
        return self._deadline

    @property
    def is_open(self) -> bool:
        """True in I-Open or R-Open."""
        return self.state in (_S.I_OPEN, _S.R_OPEN)

    @property
    def active_conn(self) -> object | None:
        """The connection application messages go to."""
        if self.state is _S.I_OPEN:
            return self.i_conn
        if self.state is _S.R_OPEN:
            return self.r_conn
        return None

    def start(self, now: float) -> list[Action]:
        """Start: the application wants a connection to this peer."""
        return self._fire(now, _E.START)

    def connected(self, now: float, conn: object) -> list[Action]:
        """I-Rcv-Conn-Ack: the initiator connection is up."""
        self.i_conn = conn
        return self._fire(now, _E.I_RCV_CONN_ACK, conn)

    def connect_failed(self, now: float) -> list[Action]:
        """I-Rcv-Conn-Nack: the initiator connection attempt failed."""
        return self._fire(now, _E.I_RCV_CONN_NACK)

    def incoming_cer(self, now: float, conn: object, cer: Message) -> list[Action]:
        """R-Conn-CER: a new incoming connection whose first message is ``cer``."""
        return self._fire(now, _E.R_CONN_CER, conn, cer)

    def receive(self, now: float, conn: object, msg: Message) -> list[Action]:
        """A message arrived on ``conn``; classified into the 5.6.2 events."""
        if conn is not self.i_conn and conn is not self.r_conn:
            return [Disconnect(conn, "message on a connection not bound to this peer")]
        code = msg.command_code
        request = msg.is_request
        if conn is self.i_conn and self.state in (_S.WAIT_I_CEA, _S.WAIT_RETURNS):
            if code == CMD_CAPABILITIES_EXCHANGE and not request:
                return self._fire(now, _E.I_RCV_CEA, conn, msg)
            return self._fire(now, _E.I_RCV_NON_CEA, conn, msg)
        if code == CMD_DEVICE_WATCHDOG:
            event = _E.RCV_DWR if request else _E.RCV_DWA
        elif code == CMD_DISCONNECT_PEER:
            event = _E.RCV_DPR if request else _E.RCV_DPA
        else:
            event = _E.RCV_MESSAGE
        return self._fire(now, event, conn, msg)

    def disconnected(self, now: float, conn: object) -> list[Action]:
        """I-Peer-Disc / R-Peer-Disc: the transport closed ``conn``."""
        if conn is self.i_conn:
            return self._fire(now, _E.I_PEER_DISC, conn)
        if conn is self.r_conn:
            return self._fire(now, _E.R_PEER_DISC, conn)
        return []

    def send(self, now: float, msg: Message) -> list[Action]:
        """Send-Message; raises PeerNotOpen outside the open states."""
        if not self.is_open:
            raise PeerNotOpen(f"peer is {self.state.value}")
        return self._fire(now, _E.SEND_MESSAGE, None, msg)

    def send_dwr(self, now: float) -> list[Action]:
        """Snd-DWR on the open connection (the watchdog's SendWatchdog)."""
        if not self.is_open:
            return []
        return [self._send(self.active_conn, build_dwr(self.config, self.ids))]

    def stop(self, now: float, cause: int = DISCONNECT_REBOOTING) -> list[Action]:
        """Stop: orderly shutdown with DPR carrying ``cause``."""
        self._cause = cause
        return self._fire(now, _E.STOP)

    def on_timer(self, now: float) -> list[Action]:
        """Timeout, if the state timer has expired."""
        if self._deadline is None or now < self._deadline:
            return []
        return self._fire(now, _E.TIMEOUT)

    # -- dispatch ------------------------------------------------------------------
    def _fire(
        self, now: float, event: PeerEvent, conn: object = None, msg: Message | None = None
    ) -> list[Action]:
        handler = TRANSITIONS.get((self.state, event))
        if handler is None:
            return self._unexpected(event, conn)
        self._now = now
        out: list[Action] = []
        self._out = out
        self._conn = conn
        self._msg = msg
        before = self.state
        self.state = handler(self)
        if self.state is not before:
            self._enter(self.state)
        # Elect produces Win-Election immediately when the local node wins.
        if self.state is _S.WAIT_RETURNS and self._r_info is not None and self._won():
            self.state = TRANSITIONS[(_S.WAIT_RETURNS, _E.WIN_ELECTION)](self)
            self._enter(self.state)
        self._conn = self._msg = None
        return out

    def _unexpected(self, event: PeerEvent, conn: object) -> list[Action]:
        """Events the table does not list: refuse extra connections, ignore the rest."""
        if event is _E.R_CONN_CER and conn is not None:
            return [Disconnect(conn, f"CER in state {self.state.value}")]
        return []

    def _enter(self, state: PeerState) -> None:
        cfg = self.config
        if state in (_S.WAIT_CONN_ACK, _S.WAIT_CONN_ACK_ELECT):
            self._deadline = self._now + cfg.connect_timeout
        elif state in (_S.WAIT_I_CEA, _S.WAIT_RETURNS):
            self._deadline = self._now + cfg.cea_timeout
        elif state is _S.CLOSING:
            self._deadline = self._now + cfg.dpa_timeout
        else:
            self._deadline = None
        if state is _S.CLOSED:
            self.i_conn = self.r_conn = None
            self._r_info = None
            self._r_cea = None

    def _won(self) -> bool:
        info = self._r_info
        return info is not None and elect(self.config.origin_host, info.origin_host)

    # -- action helpers ------------------------------------------------------------------
    def _send(self, conn: object, msg: Message) -> Send:
        action = Send(conn, msg, msg.encode())
        self._out.append(action)
        return action

    def _disc(self, conn: object, reason: str) -> None:
        if conn is not None:
            self._out.append(Disconnect(conn, reason))

    def _closed(self, reason: str, cause: int | None = None) -> PeerState:
        self._out.append(Closed(reason, cause))
        return _S.CLOSED

    def _process_cer(self) -> bool:
        """R-Accept + Process-CER; on failure send the error CEA and reject."""
        msg = self._msg
        conn = self._conn
        assert msg is not None
        cea, info = answer_cer(self.config, msg)
        if info is None:
            self._send(conn, cea)
            self._disc(conn, f"CER rejected with {cea.result_code}")
            return False
        self._out.append(Accept(conn))
        self.r_conn = conn
        self._r_info = info
        self._r_cea = cea
        return True

    def _r_snd_cea(self) -> PeerState:
        """R-Snd-CEA on the pending responder, then R-Open."""
        assert self._r_cea is not None and self._r_info is not None
        self._send(self.r_conn, self._r_cea)
        self.remote = self._r_info
        self._r_cea = None
        self._out.append(Opened(self.r_conn, self._r_info))
        return _S.R_OPEN

    def _i_snd_cer(self) -> None:
        self._send(self.i_conn, build_cer(self.config, self.ids))

    def _error(self, reason: str) -> PeerState:
        """Error: drop every connection and return to Closed."""
        self._disc(self.i_conn, reason)
        self._disc(self.r_conn, reason)
        return self._closed(reason)

    # -- transition handlers (named "<state>__<event>") -------------------------------
    def closed__start(self) -> PeerState:
        self._out.append(Connect())
        return _S.WAIT_CONN_ACK

    def closed__r_conn_cer(self) -> PeerState:
        if not self._process_cer():
            return _S.CLOSED
        return self._r_snd_cea()

    def wait_conn_ack__ack(self) -> PeerState:
        self._i_snd_cer()
        return _S.WAIT_I_CEA

    def wait_conn_ack__nack(self) -> PeerState:
        self.i_conn = None
        return self._closed("connection failed")

    def wait_conn_ack__r_conn_cer(self) -> PeerState:
        return _S.WAIT_CONN_ACK_ELECT if self._process_cer() else _S.WAIT_CONN_ACK

    def any__timeout(self) -> PeerState:
        return self._error(f"timeout in {self.state.value}")

    def wait_i_cea__cea(self) -> PeerState:
        msg = self._msg
        assert msg is not None
        try:
            code = msg.result_code
            info = PeerInfo.from_message(msg)
        except DecodeError as exc:
            return self._error(f"malformed CEA ({exc.result_code})")
        if code is None or not 2000 <= code < 3000:
            return self._error(f"CEA result {code}")
        if not common_applications(self.config.applications, info.applications):
            return self._error("no common application in CEA (5010)")
        self.remote = info
        self._out.append(Opened(self.i_conn, info))
        return _S.I_OPEN

    def wait_i_cea__r_conn_cer(self) -> PeerState:
        return _S.WAIT_RETURNS if self._process_cer() else _S.WAIT_I_CEA

    def wait_i_cea__i_peer_disc(self) -> PeerState:
        self._disc(self.i_conn, "peer closed")
        return self._closed("peer closed before CEA")

    def wait_i_cea__non_cea(self) -> PeerState:
        return self._error("message other than CEA while waiting for CEA")

    def elect__ack(self) -> PeerState:
        self._i_snd_cer()
        return _S.WAIT_RETURNS

    def elect__nack(self) -> PeerState:
        self.i_conn = None
        return self._r_snd_cea()

    def elect__r_peer_disc(self) -> PeerState:
        self._disc(self.r_conn, "responder closed")
        self.r_conn = None
        self._r_info = None
        self._r_cea = None
        return _S.WAIT_CONN_ACK

    def r_reject(self) -> PeerState:
        self._disc(self._conn, "R-Reject: connection already established or elected")
        return self.state

    def returns__win(self) -> PeerState:
        self._disc(self.i_conn, "won election")
        self.i_conn = None
        return self._r_snd_cea()

    def returns__i_peer_disc(self) -> PeerState:
        self._disc(self.i_conn, "initiator closed")
        self.i_conn = None
        return self._r_snd_cea()

    def returns__i_rcv_cea(self) -> PeerState:
        self._disc(self.r_conn, "lost election")
        self.r_conn = None
        self._r_info = None
        self._r_cea = None
        return self.wait_i_cea__cea()

    def returns__r_peer_disc(self) -> PeerState:
        self._disc(self.r_conn, "responder closed")
        self.r_conn = None
        self._r_info = None
        self._r_cea = None
        return _S.WAIT_I_CEA

    def open__send(self) -> PeerState:
        assert self._msg is not None
        self._send(self.active_conn, self._msg)
        return self.state

    def open__rcv_message(self) -> PeerState:
        assert self._msg is not None
        self._out.append(Deliver(self._conn, self._msg))
        return self.state

    def open__rcv_dwr(self) -> PeerState:
        dwr = self._msg
        assert dwr is not None
        cfg = self.config
        dwa = make_answer(
            dwr,
            DIAMETER_SUCCESS,
            [("Origin-State-Id", cfg.origin_state_id)],
            origin_host=cfg.origin_host,
            origin_realm=cfg.origin_realm,
        )
        self._send(self._conn, dwa)
        return self.state

    def open__rcv_dwa(self) -> PeerState:
        assert self._msg is not None
        self._out.append(DwaReceived(self._conn, self._msg))
        return self.state

    def open__stop(self) -> PeerState:
        self._send(self.active_conn, build_dpr(self.config, self.ids, self._cause))
        return _S.CLOSING

    def open__rcv_dpr(self) -> PeerState:
        dpr = self._msg
        assert dpr is not None
        try:
            self._cause = int(dpr.get("Disconnect-Cause", DISCONNECT_REBOOTING))
        except DecodeError:
            self._cause = DISCONNECT_REBOOTING
        cfg = self.config
        self._send(
            self._conn,
            make_answer(
                dpr, DIAMETER_SUCCESS, origin_host=cfg.origin_host, origin_realm=cfg.origin_realm
            ),
        )
        return _S.CLOSING

    def open__peer_disc(self) -> PeerState:
        self._disc(self._conn, "peer closed")
        return self._closed("peer closed the connection")

    def closing__rcv_dpa(self) -> PeerState:
        self._disc(self._conn, "DPA received")
        return self._closed("disconnected by DPR/DPA", self._cause)

    def closing__peer_disc(self) -> PeerState:
        self._disc(self._conn, "peer closed after DPR/DPA")
        return self._closed("disconnected by DPR/DPA", self._cause)


# One entry per row of the RFC 6733 section 5.6 table, in table order.
TRANSITIONS: dict[tuple[PeerState, PeerEvent], Handler] = {
    # Closed        Start            I-Snd-Conn-Req                Wait-Conn-Ack
    (_S.CLOSED, _E.START): Peer.closed__start,
    # Closed        R-Conn-CER       R-Accept,Process-CER,R-Snd-CEA R-Open
    (_S.CLOSED, _E.R_CONN_CER): Peer.closed__r_conn_cer,
    # Wait-Conn-Ack I-Rcv-Conn-Ack   I-Snd-CER                     Wait-I-CEA
    (_S.WAIT_CONN_ACK, _E.I_RCV_CONN_ACK): Peer.wait_conn_ack__ack,
    # Wait-Conn-Ack I-Rcv-Conn-Nack  Cleanup                       Closed
    (_S.WAIT_CONN_ACK, _E.I_RCV_CONN_NACK): Peer.wait_conn_ack__nack,
    # Wait-Conn-Ack R-Conn-CER       R-Accept,Process-CER          Wait-Conn-Ack/Elect
    (_S.WAIT_CONN_ACK, _E.R_CONN_CER): Peer.wait_conn_ack__r_conn_cer,
    # Wait-Conn-Ack Timeout          Error                         Closed
    (_S.WAIT_CONN_ACK, _E.TIMEOUT): Peer.any__timeout,
    # Wait-I-CEA    I-Rcv-CEA        Process-CEA                   I-Open
    (_S.WAIT_I_CEA, _E.I_RCV_CEA): Peer.wait_i_cea__cea,
    # Wait-I-CEA    R-Conn-CER       R-Accept,Process-CER,Elect    Wait-Returns
    (_S.WAIT_I_CEA, _E.R_CONN_CER): Peer.wait_i_cea__r_conn_cer,
    # Wait-I-CEA    I-Peer-Disc      I-Disc                        Closed
    (_S.WAIT_I_CEA, _E.I_PEER_DISC): Peer.wait_i_cea__i_peer_disc,
    # Wait-I-CEA    I-Rcv-Non-CEA    Error                         Closed
    (_S.WAIT_I_CEA, _E.I_RCV_NON_CEA): Peer.wait_i_cea__non_cea,
    # Wait-I-CEA    Timeout          Error                         Closed
    (_S.WAIT_I_CEA, _E.TIMEOUT): Peer.any__timeout,
    # Wait-Conn-Ack/Elect I-Rcv-Conn-Ack  I-Snd-CER,Elect          Wait-Returns
    (_S.WAIT_CONN_ACK_ELECT, _E.I_RCV_CONN_ACK): Peer.elect__ack,
    # Wait-Conn-Ack/Elect I-Rcv-Conn-Nack R-Snd-CEA                R-Open
    (_S.WAIT_CONN_ACK_ELECT, _E.I_RCV_CONN_NACK): Peer.elect__nack,
    # Wait-Conn-Ack/Elect R-Peer-Disc     R-Disc                   Wait-Conn-Ack
    (_S.WAIT_CONN_ACK_ELECT, _E.R_PEER_DISC): Peer.elect__r_peer_disc,
    # Wait-Conn-Ack/Elect R-Conn-CER      R-Reject                 Wait-Conn-Ack/Elect
    (_S.WAIT_CONN_ACK_ELECT, _E.R_CONN_CER): Peer.r_reject,
    # Wait-Conn-Ack/Elect Timeout         Error                    Closed
    (_S.WAIT_CONN_ACK_ELECT, _E.TIMEOUT): Peer.any__timeout,
    # Wait-Returns  Win-Election     I-Disc,R-Snd-CEA              R-Open
    (_S.WAIT_RETURNS, _E.WIN_ELECTION): Peer.returns__win,
    # Wait-Returns  I-Peer-Disc      I-Disc,R-Snd-CEA              R-Open
    (_S.WAIT_RETURNS, _E.I_PEER_DISC): Peer.returns__i_peer_disc,
    # Wait-Returns  I-Rcv-CEA        R-Disc                        I-Open
    (_S.WAIT_RETURNS, _E.I_RCV_CEA): Peer.returns__i_rcv_cea,
    # Wait-Returns  R-Peer-Disc      R-Disc                        Wait-I-CEA
    (_S.WAIT_RETURNS, _E.R_PEER_DISC): Peer.returns__r_peer_disc,
    # Wait-Returns  R-Conn-CER       R-Reject                      Wait-Returns
    (_S.WAIT_RETURNS, _E.R_CONN_CER): Peer.r_reject,
    # Wait-Returns  Timeout          Error                         Closed
    (_S.WAIT_RETURNS, _E.TIMEOUT): Peer.any__timeout,
    # Wait-Returns  I-Rcv-Non-CEA    (not in the table: treated as Error)
    (_S.WAIT_RETURNS, _E.I_RCV_NON_CEA): Peer.wait_i_cea__non_cea,
}
for _open in (_S.R_OPEN, _S.I_OPEN):
    TRANSITIONS.update(
        {
            # X-Open Send-Message   X-Snd-Message            X-Open
            (_open, _E.SEND_MESSAGE): Peer.open__send,
            # X-Open X-Rcv-Message  Process                  X-Open
            (_open, _E.RCV_MESSAGE): Peer.open__rcv_message,
            # X-Open X-Rcv-DWR      Process-DWR,X-Snd-DWA    X-Open
            (_open, _E.RCV_DWR): Peer.open__rcv_dwr,
            # X-Open X-Rcv-DWA      Process-DWA              X-Open
            (_open, _E.RCV_DWA): Peer.open__rcv_dwa,
            # X-Open R-Conn-CER     R-Reject                 X-Open
            (_open, _E.R_CONN_CER): Peer.r_reject,
            # X-Open Stop           X-Snd-DPR                Closing
            (_open, _E.STOP): Peer.open__stop,
            # X-Open X-Rcv-DPR      X-Snd-DPA                Closing
            (_open, _E.RCV_DPR): Peer.open__rcv_dpr,
        }
    )
# R-Open R-Peer-Disc R-Disc Closed / I-Open I-Peer-Disc I-Disc Closed
TRANSITIONS[(_S.R_OPEN, _E.R_PEER_DISC)] = Peer.open__peer_disc
TRANSITIONS[(_S.I_OPEN, _E.I_PEER_DISC)] = Peer.open__peer_disc
TRANSITIONS.update(
    {
        # Closing I-Rcv-DPA / R-Rcv-DPA  I-Disc / R-Disc   Closed
        (_S.CLOSING, _E.RCV_DPA): Peer.closing__rcv_dpa,
        # Closing (not in the table) answers still in flight are delivered
        (_S.CLOSING, _E.RCV_MESSAGE): Peer.open__rcv_message,
        # Closing Timeout                Error             Closed
        (_S.CLOSING, _E.TIMEOUT): Peer.any__timeout,
        # Closing I-Peer-Disc / R-Peer-Disc  I-Disc / R-Disc  Closed
        (_S.CLOSING, _E.I_PEER_DISC): Peer.closing__peer_disc,
        (_S.CLOSING, _E.R_PEER_DISC): Peer.closing__peer_disc,
    }
)
