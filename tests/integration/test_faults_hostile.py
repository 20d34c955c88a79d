"""Hostile input and port security against the real daemon over real sockets (issue 11).

One ``twistd b2bua`` per module, every port open: SIP on UDP, TCP and TLS, the lab OCS
in-process (its Diameter port), a Diameter listener for incoming peers, the manhole and
/metrics. Raw bytes are thrown at each port: oversized messages, header floods, thousands
of Via lines, deep Grouped AVPs, AVP lengths that lie, an unknown command with
Application-Id 0 followed by an abrupt close, a CER from an unknown Origin-Host. After each
the daemon must still answer; at the end a normal charged call still works, and neither
the log nor the CDR file holds a traceback or any configured secret.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from b2bua.config import ManholeSettings, MetricsSettings, endpoint_is_loopback
from b2bua.diameter.avp import MAX_DEPTH, Avp
from b2bua.diameter.dictionary import DIAMETER_UNKNOWN_PEER
from b2bua.diameter.message import Message, MessageFramer
from b2bua.ops.passwd import hash_password
from b2bua.sip.message import MAX_HEADER_LINES
from tests.diameter import factories
from tests.support.daemon import Daemon, start_plugin
from tests.support.freediameter import make_pki
from tests.support.ports import free_port
from tests.support.sipp import Sipp, run_until_done

pytestmark = pytest.mark.integration

CALLER = "+15550101"
MANHOLE_PASSWORD = "correct-horse-battery"  # a test secret, grepped for in the log
WAIT = 5.0  # bound on every socket wait
MAX_SIZE = 32768  # [sip] max_message_size of the lab: floods fit, "oversized" does not


@dataclass
class HostileLab:
    """The daemon with every port on loopback, and the secrets it was configured with."""

    dir: Path
    sip_port: int
    callee_port: int
    ocs_port: int
    listen_port: int
    tls_port: int
    secrets: list[str]
    daemon: Daemon

    def cdr_text(self) -> str:
        path = self.dir / "cdr.jsonl"
        return path.read_text() if path.exists() else ""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileLab]:
    """One daemon for the module; its log is checked for tracebacks and secrets at the end."""
    workdir = tmp_path_factory.mktemp("hostile")
    pki = make_pki(workdir / "pki")
    ports = [free_port() for _ in range(7)]
    sip, callee, ocs, listen, tls, manhole, metrics = ports
    (workdir / "accounts.json").write_text(
        json.dumps({"accounts": [{"subscriber": CALLER, "seconds": 600}]})
    )
    passwd_hash = hash_password(MANHOLE_PASSWORD, iterations=1000)
    (workdir / "manhole.passwd").write_text(f"ops:{passwd_hash}\n")
    key_lines = [
        line for line in pki.server_key.read_text().splitlines() if line and "-----" not in line
    ]
    config = workdir / "b2bua.conf"
    config.write_text(
        f"[sip]\nlisten = udp:127.0.0.1:{sip}, tcp:127.0.0.1:{sip}, tls:127.0.0.1:{tls}\n"
        f"max_message_size = {MAX_SIZE}\n"
        f"tls_certificate = {pki.server_cert}\ntls_private_key = {pki.server_key}\n"
        f"tls_ca_certificates = {pki.ca}\n"
        "[log]\nlevel = debug\n"
        "[calls]\ntrusted = 127.0.0.0/8\n"
        f"[route:all]\nnext_hop = 127.0.0.1:{callee}\ncharging = orig\n"
        "[diameter]\norigin_host = b2bua.test\norigin_realm = test\n"
        f"destination_realm = test\nreconnect_interval = 1\nlisten = aaa://127.0.0.1:{listen}\n"
        f"[peer:ocs]\nuri = aaa://127.0.0.1:{ocs}\nhost = ocs.test\naccept_incoming = yes\n"
        f"[ocs]\nenabled = yes\nlisten = aaa://127.0.0.1:{ocs}\n"
        "origin_host = ocs.test\norigin_realm = test\n"
        "accounts = accounts.json\nledger = ledger.jsonl\n"
        f"[metrics]\nlisten = tcp:{metrics}:interface=127.0.0.1\n"
        f"[manhole]\nlisten = tcp:{manhole}:interface=127.0.0.1\npasswd = manhole.passwd\n"
        "[cdr]\nfile = cdr.jsonl\n"
    )
    daemon = Daemon(config, log_path=workdir / "b2bua.log")
    try:
        daemon.wait_for_log("Diameter peer ocs open")
        yield HostileLab(
            workdir,
            sip,
            callee,
            ocs,
            listen,
            tls,
            [MANHOLE_PASSWORD, passwd_hash.split("$")[-1], *key_lines],
            daemon,
        )
    finally:
        daemon.stop()
    log = daemon.log_text()
    assert "Traceback" not in log, log


# -- SIP ---------------------------------------------------------------------------------


def request(
    port: int,
    local_port: int,
    *,
    branch: str,
    extra: str = "",
    body: str = "",
    content_length: int | None = None,
) -> bytes:
    """An OPTIONS to the b2bua, with ``extra`` header lines (and a Content-Length that lies)."""
    return (
        f"OPTIONS sip:ping@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK-{branch};rport\r\n"
        "From: <sip:probe@127.0.0.1>;tag=probe\r\n"
        f"To: <sip:ping@127.0.0.1:{port}>\r\n"
        f"Call-ID: {branch}@hostile.test\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Max-Forwards: 70\r\n"
        f"{extra}"
        f"Content-Length: {len(body) if content_length is None else content_length}\r\n"
        f"\r\n{body}"
    ).encode()


def udp_exchange(port: int, payload: bytes | None, *, branch: str) -> bytes | None:
    """Send ``payload`` (if any), then an OPTIONS; the first final answer to the OPTIONS."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(WAIT)
        local = sock.getsockname()[1]
        if payload is not None:
            sock.sendto(payload, ("127.0.0.1", port))
        sock.sendto(request(port, local, branch=branch), ("127.0.0.1", port))
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            answer = sock.recv(65536)
            if f"branch=z9hG4bK-{branch};".encode() in answer and answer[8:9] != b"1":
                return answer
    return None


#: What the log says when each payload of `hostile_sip` is refused (None: it is answered).
REFUSAL = {
    "oversized": "message too large",
    "header_flood": "too many header fields",
    "thousands_of_vias": "too many header fields",
    "folded_forever": "too many header fields",
    "lying_content_length": "body shorter than Content-Length",
    "garbage": "bad Request-Line",
    "comma_vias": None,
}


def hostile_sip() -> dict[str, bytes]:
    """Payloads a SIP port must refuse cheaply (keyed by what they are)."""
    via = "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-flood\r\n"
    return {
        "oversized": request(1, 1, branch="big", body="x" * (MAX_SIZE + 100)),
        "header_flood": request(1, 1, branch="flood", extra="X-Flood: 1\r\n" * 2000),
        "thousands_of_vias": request(1, 1, branch="vias", extra=via * (MAX_HEADER_LINES + 50)),
        "comma_vias": request(
            1, 1, branch="cvias", extra="Via: " + ", ".join(["SIP/2.0/UDP h"] * 400) + "\r\n"
        ),
        "lying_content_length": request(1, 1, branch="cl", content_length=999_999),
        "garbage": bytes(range(256)) * 4,
        "folded_forever": b"OPTIONS sip:x SIP/2.0\r\nVia: a\r\n" + b" b\r\n" * 1000 + b"\r\n",
    }


@pytest.mark.parametrize("case", sorted(hostile_sip()))
def test_hostile_sip_datagram_is_refused_and_the_port_still_answers(
    lab: HostileLab, case: str
) -> None:
    """A hostile UDP datagram: dropped or answered 4xx/5xx, and the next OPTIONS is answered."""
    payload = hostile_sip()[case][:65000]
    refusal = REFUSAL[case]
    before = lab.daemon.log_text().count(refusal) if refusal else 0
    answer = udp_exchange(lab.sip_port, payload, branch=f"after-{case}")
    assert answer is not None and answer.startswith(b"SIP/2.0 "), (answer, lab.daemon.log_text())
    if refusal:
        assert lab.daemon.log_text().count(refusal) == before + 1, lab.daemon.log_text()


def test_a_large_valid_datagram_is_not_truncated(lab: HostileLab) -> None:
    """A 20 KB OPTIONS under max_message_size is read whole (Twisted's default is 8 KiB)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(WAIT)
        local = sock.getsockname()[1]
        big = request(lab.sip_port, local, branch="large", extra="Content-Type: text/plain\r\n",
                      body="y" * 20000)  # fmt: skip
        sock.sendto(big, ("127.0.0.1", lab.sip_port))
        answer = sock.recv(65536)
    assert answer.startswith(b"SIP/2.0 200"), answer


def tcp_refused(port: int, payload: bytes) -> bytes:
    """Send ``payload`` on a fresh TCP connection; what comes back before the close."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        try:
            sock.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            return b""
        received = b""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                return received
            if not data:
                return received
            received += data
    raise AssertionError(f"connection still open after {payload[:60]!r}...")


@pytest.mark.parametrize(
    "case", ["oversized", "header_flood", "thousands_of_vias", "lying_content_length"]
)
def test_hostile_sip_stream_is_closed_and_the_port_still_answers(
    lab: HostileLab, case: str
) -> None:
    """On TCP a framing error closes the connection; UDP (same process) still answers."""
    tcp_refused(lab.sip_port, hostile_sip()[case])  # Content-Length 999999 > max_message_size
    assert udp_exchange(lab.sip_port, None, branch=f"tcp-{case}") is not None


def test_tls_port_refuses_plain_garbage(lab: HostileLab) -> None:
    """Bytes that are no TLS handshake on the tls: listener: the connection is closed."""
    tcp_refused(lab.tls_port, b"\x16\x03\x01\xff\xff" + bytes(range(256)) * 8)
    assert udp_exchange(lab.sip_port, None, branch="after-tls") is not None


# -- Diameter ----------------------------------------------------------------------------


class RawPeer:
    """A Diameter connection driven by hand: send any bytes, read framed messages."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.framer = MessageFramer()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self) -> Message | None:
        """The next message, or None when the peer closed the connection."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                return None
            if not data:
                return None
            for item in self.framer.feed(data):
                assert isinstance(item, Message), item
                return item
        raise AssertionError("no Diameter message within the wait")

    def until_closed(self) -> list[Message]:
        """What the other end sends before it closes the connection (within the wait)."""
        received: list[Message] = []
        while (message := self.read()) is not None:
            received.append(message)
        return received

    def close(self) -> None:
        self.sock.close()


def open_peer(port: int, origin_host: str = "fuzzer.test") -> RawPeer:
    peer = RawPeer(port)
    peer.send(factories.cer(origin_host=origin_host, origin_realm="test").encode())
    cea = peer.read()
    assert cea is not None and cea.result_code == 2001, cea
    return peer


def ccr_with(*extra: object) -> Message:
    """A CCR-I from the fuzzer, with ``extra`` AVPs appended."""
    ccr = factories.ccr_initial()
    for avp in extra:
        ccr.avps.append(avp)  # type: ignore[arg-type]
    ccr.avps[:] = [
        Avp.new("Origin-Host", "fuzzer.test") if a.name == "Origin-Host" else a for a in ccr.avps
    ]
    return ccr


def nested(depth: int) -> Avp:
    avp = Avp.new("Subscription-Id-Data", "1")
    for _ in range(depth):
        avp = Avp.new("Subscription-Id", [avp])
    return avp


def lying_avp_length() -> bytes:
    raw = bytearray(ccr_with().encode())
    struct.pack_into(">I", raw, 24, (0x40 << 24) | 0xFFFF)  # Session-Id claims 64 KiB
    return bytes(raw)


def test_ocs_port_answers_a_deep_grouped_avp_with_failed_avp(lab: HostileLab) -> None:
    """A Grouped AVP nested past MAX_DEPTH: an error answer (5012) carrying Failed-AVP."""
    peer = open_peer(lab.ocs_port)
    try:
        peer.send(ccr_with(nested(MAX_DEPTH + 4)).encode())
        answer = peer.read()
        assert answer is not None and answer.result_code == 5012, answer
        assert answer.find("Failed-AVP") is not None
    finally:
        peer.close()


def test_ocs_port_answers_a_lying_avp_length_with_5014(lab: HostileLab) -> None:
    """An AVP longer than its message: 5014 DIAMETER_INVALID_AVP_LENGTH with Failed-AVP."""
    peer = open_peer(lab.ocs_port)
    try:
        peer.send(lying_avp_length())
        answer = peer.read()
        assert answer is not None and answer.result_code == 5014, answer
        assert answer.find("Failed-AVP") is not None
    finally:
        peer.close()


def test_ocs_port_unknown_command_app_0_then_abrupt_close(lab: HostileLab) -> None:
    """Application-Id 0 and command 999999, then an RST: answered 3001, the OCS goes on."""
    peer = open_peer(lab.ocs_port)
    header = struct.pack(">IIIII", (1 << 24) | 20, (0x80 << 24) | 999_999, 0, 7, 7)
    peer.send(header)
    answer = peer.read()
    assert answer is not None and answer.result_code == 3001 and answer.is_error, answer
    peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.send(header)  # a second one, and the connection is reset before its answer
    peer.close()
    again = open_peer(lab.ocs_port, "fuzzer2.test")
    again.close()


def test_ocs_port_closes_a_stream_whose_length_field_lies(lab: HostileLab) -> None:
    """A message length above the bound: the framing is lost and the connection closed."""
    peer = open_peer(lab.ocs_port)
    try:
        peer.send(struct.pack(">II", (1 << 24) | 0xFFFFF0, (0x80 << 24) | 272) + bytes(12))
        answers = [m for m in peer.until_closed() if m.name != "DWR"]
        assert [(m.name, m.result_code) for m in answers] == [("CCA", 5015)], answers
    finally:
        peer.close()


def test_diameter_listener_refuses_an_unknown_origin_host_with_3010(lab: HostileLab) -> None:
    """A CER from a host that is no configured peer: CEA 3010 and the connection closed."""
    peer = RawPeer(lab.listen_port)
    try:
        peer.send(factories.cer(origin_host="intruder.test", origin_realm="evil").encode())
        cea = peer.read()
        assert cea is not None and cea.result_code == DIAMETER_UNKNOWN_PEER and cea.is_error
        assert peer.until_closed() == []
    finally:
        peer.close()
    assert "intruder.test" in lab.daemon.log_text()


def test_diameter_listener_closes_on_a_first_message_that_is_not_a_cer(lab: HostileLab) -> None:
    """A CCR before any CER on the listener: the connection is closed unanswered."""
    peer = RawPeer(lab.listen_port)
    try:
        peer.send(factories.ccr_initial().encode())
        assert peer.until_closed() == []
    finally:
        peer.close()


# -- defaults of the operator ports ------------------------------------------------------


def test_metrics_and_manhole_are_loopback_or_off_by_default() -> None:
    """/metrics listens on 127.0.0.1 unless told otherwise; the manhole is off, and never
    runs without a password file, on loopback or not."""
    assert endpoint_is_loopback(MetricsSettings().listen)
    assert ManholeSettings().listen == ""
    for listen in ("tcp:6023", "tcp:6023:interface=127.0.0.1"):
        assert ManholeSettings(listen=listen).cross_problems()
    assert not ManholeSettings(listen="tcp:6023", passwd="manhole.passwd").cross_problems()


def test_a_redis_password_is_never_logged(tmp_path: Path) -> None:
    """``twistd ocs`` with a password in its redis_url and Redis unreachable: it retries,
    and its log names neither the password nor the URL that holds it."""
    secret = "Sup3r-s3cret-pw"
    (tmp_path / "accounts.json").write_text('{"accounts": []}')
    config = tmp_path / "ocs.conf"
    config.write_text(
        f"[ocs]\nlisten = aaa://127.0.0.1:{free_port()}\naccounts = accounts.json\n"
        f"backend = redis\nredis_url = redis://:{secret}@127.0.0.1:{free_port()}/0\n"
    )
    ocs = start_plugin("ocs", config, log_path=tmp_path / "ocs.log")
    try:
        ocs.wait_for_log("Scheduling retry 2")
    finally:
        ocs.stop(timeout=5)
    assert secret not in ocs.log_text(), ocs.log_text()


# -- afterwards --------------------------------------------------------------------------


def test_zz_a_normal_call_still_works_and_no_secret_is_logged(lab: HostileLab) -> None:
    """After all of the above a charged call completes, is billed, and writes one CDR line;
    no configured secret (manhole password or hash, TLS key contents) is in the log or CDR."""
    callee = Sipp("uas", lab.dir, lab.callee_port, timeout=30).start()
    caller = Sipp(
        "charged_uac.xml",
        lab.dir,
        free_port(),
        remote=f"127.0.0.1:{lab.sip_port}",
        timeout=30,
        service="15550199",
        extra=["-key", "caller", CALLER, "-d", "1000"],
    ).start()
    try:
        assert run_until_done(caller, callee, timeout=30) == [0, 0], (
            caller.report() + callee.report()
        )
    finally:
        caller.stop()
        callee.stop()
    deadline = time.monotonic() + WAIT
    while not lab.cdr_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    cdr = lab.cdr_text()
    assert len(cdr.splitlines()) == 1, cdr
    log = lab.daemon.log_text()
    assert "Traceback" not in log, log
    for secret in lab.secrets:
        assert secret not in log and secret not in cdr, secret
