"""TLS for SIP (RFC 3261 §26.2.1, RFC 5922): contexts built from the [sip] settings.

Servers present `tls_certificate`/`tls_private_key`; when
`tls_require_client_certificate` is set, clients (the SBC) must present a certificate
signed by `tls_ca_certificates`. Outgoing connections verify the server's certificate
and its name (service-identity) against those CAs, or the system's when none are set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet import ssl

from b2bua.config import SipSettings


def _trust_root(settings: SipSettings) -> Any:
    if settings.tls_ca_certificates:
        pem = Path(settings.tls_ca_certificates).read_bytes()
        return ssl.trustRootFromCertificates(
            [ssl.Certificate.loadPEM(block) for block in _pem_blocks(pem)]
        )
    return ssl.platformTrust()


def _pem_blocks(pem: bytes) -> list[bytes]:
    marker = b"-----END CERTIFICATE-----"
    return [block + marker for block in pem.split(marker) if b"-----BEGIN CERTIFICATE" in block]


def _own_certificate(settings: SipSettings) -> ssl.PrivateCertificate:
    chain = Path(settings.tls_certificate).read_bytes()
    key = Path(settings.tls_private_key).read_bytes()
    own: ssl.PrivateCertificate = ssl.PrivateCertificate.loadPEM(
        _pem_blocks(chain)[0] + b"\n" + key
    )
    return own


def server_context(settings: SipSettings) -> ssl.CertificateOptions:
    """The context of tls: listeners; raises (OSError, SSL errors) on unusable files."""
    own = _own_certificate(settings)
    extra = [
        ssl.Certificate.loadPEM(block).original
        for block in _pem_blocks(Path(settings.tls_certificate).read_bytes())[1:]
    ]
    options: dict[str, Any] = {
        "privateKey": own.privateKey.original,
        "certificate": own.original,
        "extraCertChain": extra,
    }
    if settings.tls_require_client_certificate:
        options["trustRoot"] = _trust_root(settings)
    return ssl.CertificateOptions(**options)


def client_context(settings: SipSettings, host: str) -> Any:
    """The context of an outgoing TLS connection to `host`, verifying its certificate."""
    client_certificate = _own_certificate(settings) if settings.tls_certificate else None
    return ssl.optionsForClientTLS(
        host, trustRoot=_trust_root(settings), clientCertificate=client_certificate
    )
