"""A real freeDiameter (``freeDiameterd``) on loopback, and throwaway TLS material.

`make_pki` writes a test CA and a server and a client certificate (EC P-256, valid for two
days) into a test's temporary directory; nothing private is ever committed.

`FreeDiameter` writes a freeDiameter configuration from `tests/integration/freediameter/`
templates into a temporary directory, starts the daemon on free ports, waits until it
listens, and stops it with SIGTERM (then SIGKILL).  freeDiameter insists on a TLS
certificate even when every peer is cleartext, so it gets one from `make_pki`.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TEMPLATES = Path(__file__).resolve().parents[1] / "integration" / "freediameter"
EXTENSIONS = Path("/usr/lib/freeDiameter")

# -- throwaway PKI ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """Paths of a CA and of one server and one client certificate with their keys."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _issue(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_name: x509.Name,
    common_name: str,
    names: tuple[str, ...],
    ips: tuple[str, ...],
    usage: x509.ObjectIdentifier,
    directory: Path,
    stem: str,
) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    alt: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    alt += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if alt:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    cert_path = directory / f"{stem}.crt"
    key_path = directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, key_path)
    return cert_path, key_path


def make_pki(
    directory: Path,
    *,
    server_names: tuple[str, ...] = ("localhost",),
    server_ips: tuple[str, ...] = ("127.0.0.1",),
    client_name: str = "client.example.com",
) -> Pki:
    """A fresh CA with one server and one client certificate, written under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("b2bua test CA")
    now = datetime.datetime.now(datetime.UTC)
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = directory / "ca.crt"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server_cn = server_names[0] if server_names else server_ips[0]
    server_cert, server_key = _issue(
        ca_key,
        ca_name,
        server_cn,
        server_names,
        server_ips,
        ExtendedKeyUsageOID.SERVER_AUTH,
        directory,
        "server",
    )
    client_cert, client_key = _issue(
        ca_key,
        ca_name,
        client_name,
        (client_name,),
        (),
        ExtendedKeyUsageOID.CLIENT_AUTH,
        directory,
        "client",
    )
    return Pki(ca_path, server_cert, server_key, client_cert, client_key)


# -- freeDiameter -------------------------------------------------------------------------------


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` at the time of the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def freediameter_binary() -> str:
    path = shutil.which("freeDiameterd")
    assert path, "freeDiameterd is installed by scripts/install-system-deps (freediameter)"
    return path


# freeDiameter 1.2.1 logs some of these ERROR lines whenever a TLS peer closes after
# DPR/DPA (its receiver thread sees the socket go, or its own TLS close_notify races the
# close): transport teardown, not a message problem.
TLS_TEARDOWN = (
    "in 'ret' :\tResource temporarily unavailable",
    "gnutls_record_recv(session, data, sz)' :\tResource temporarily unavailable",
    "fd_tls_rcvthr_core(conn, conn->cc_tls_para.session))' :\tTransport endpoint",
    # Any GnuTLS call failing as the connection goes: gnutls_bye, gnutls_record_recv...
    "TLS ERROR: in 'gnutls_",
)

# Log lines by which freeDiameter reports a message it could not parse, route or accept:
# any ERROR-level line, dbg_msg_dumps' error hooks, a Failed-AVP, a non-2xxx Result-Code.
PARSE_ERRORS = re.compile(
    r"\s(ERROR|FATAL!?)\s(?!.*shutdown sequence)|PARSING ERROR|ROUTING ERROR|DROPPED"
    r"|Failed-AVP|val='DIAMETER_(?!SUCCESS|LIMITED_SUCCESS)[A-Z_]+'"
)


@dataclass
class FreeDiameter:
    """One freeDiameterd process with a generated configuration in `workdir`."""

    workdir: Path
    identity: str = "fd.localdomain"
    realm: str = "localdomain"
    port: int = field(default_factory=free_tcp_port)
    tls_port: int = field(default_factory=free_tcp_port)
    tw: int = 6
    tc: int = 6
    allowed: tuple[str, ...] = ()  # Origin-Hosts let in by acl_wl (cleartext, ALLOW_IPSEC)
    connect_peers: tuple[str, ...] = ()  # extra ConnectPeer lines
    dump_messages: bool = True  # dbg_msg_dumps: every message with its dictionary parse
    client_name: str = "client.example.com"  # the client certificate also written to pki/
    process: subprocess.Popen[bytes] | None = None
    pki: Pki | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "freeDiameter.log"

    def write_config(self) -> Path:
        pki = self.pki = make_pki(
            self.workdir / "pki", server_names=(self.identity,), client_name=self.client_name
        )
        acl = self.workdir / "acl_wl.conf"
        acl.write_text("".join(f"ALLOW_IPSEC {host}\n" for host in self.allowed) or "\n")
        extensions = [
            f'LoadExtension = "{EXTENSIONS / "dict_nasreq.fdx"}";',
            f'LoadExtension = "{EXTENSIONS / "dict_dcca.fdx"}";',
            f'LoadExtension = "{EXTENSIONS / "dict_dcca_3gpp.fdx"}";',
            f'LoadExtension = "{EXTENSIONS / "acl_wl.fdx"}" : "{acl}";',
        ]
        if self.dump_messages:
            # errors, messages sent and received, routing decisions: all as dictionary trees
            extensions.append(f'LoadExtension = "{EXTENSIONS / "dbg_msg_dumps.fdx"}" : "0x0888";')
        template = Template((TEMPLATES / "freeDiameter.conf.in").read_text())
        text = template.substitute(
            identity=self.identity,
            realm=self.realm,
            port=self.port,
            tls_port=self.tls_port,
            tw=self.tw,
            tc=self.tc,
            cert=pki.server_cert,
            key=pki.server_key,
            ca=pki.ca,
            extensions="\n".join(extensions),
            peers="\n".join(self.connect_peers),
        )
        path = self.workdir / "freeDiameter.conf"
        path.write_text(text)
        return path

    def start(self, timeout: float = 10.0) -> None:
        """Start freeDiameterd and wait until it accepts TCP connections on `port`."""
        config = self.write_config()
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [freediameter_binary(), "-c", str(config)],
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"freeDiameterd exited {self.process.returncode}:\n{self.log_text()}"
                )
            if "daemon initialized" in self.log_text():
                return
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"freeDiameterd did not start in {timeout}s:\n{self.log_text()}")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def exchanged(self, peer: str) -> list[tuple[str, str]]:
        """(``RCV`` or ``SND``, command name) of each message dumped for `peer`, in order."""
        out = []
        lines = self.log_text().splitlines()
        for index, line in enumerate(lines[:-1]):
            match = re.search(r"\b(RCV from|SND to) '([^']*)':", line)
            if match and match.group(2) == peer:
                name = re.search(r"'([A-Za-z-]+-(?:Request|Answer))'", lines[index + 1])
                if name:
                    out.append((match.group(1).split()[0], name.group(1)))
        return out

    def parse_errors(self, ignore: tuple[str, ...] = ()) -> list[str]:
        """Log lines where freeDiameter reports a message it could not accept.

        Lines containing one of the `ignore` strings are left out.
        """
        return [
            line
            for line in self.log_text().splitlines()
            if PARSE_ERRORS.search(line) and not any(text in line for text in ignore)
        ]

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (freeDiameter then sends DPRs), SIGKILL if it hangs; the exit status."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode
