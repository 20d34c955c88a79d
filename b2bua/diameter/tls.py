"""TLS for ``aaas://`` peers and listeners (RFC 6733 2.1 and 13.1), with pyOpenSSL.

TLS starts with the first octet (no Inband-Security-Id negotiation).  A client checks the
peer's chain against ``tls_ca_certificates`` (the system's CAs when empty) and its name
against the host of the peer's URI with service-identity (an IP literal is matched
against the certificate's IP addresses), and presents ``tls_certificate`` when set, for
mutual authentication.  A listener presents ``tls_certificate`` and, as 13.1 requires,
asks the client for a certificate signed by ``tls_ca_certificates``; with
``tls_require_client_certificate`` a client without one is refused.

Everything is read once, when the service is built, so that a bad file stops start-up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from OpenSSL import SSL, crypto
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator

from b2bua.config import DiameterSettings

if TYPE_CHECKING:  # the interface lives in a private module; only its name is needed
    from twisted.internet._sslverify import IOpenSSLTrustRoot

__all__ = ["TlsContexts", "TlsSetupError", "load_tls"]

_PEM_CERT = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)


class TlsSetupError(Exception):
    """A certificate, key or CA file is missing or unusable."""


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as err:
        raise TlsSetupError(f"cannot read {what} {path!r}: {err.strerror}") from None


def _certificates(path: str, what: str) -> list[ssl.Certificate]:
    blocks = _PEM_CERT.findall(_read(path, what))
    if not blocks:
        raise TlsSetupError(f"{what} {path!r} holds no PEM certificate")
    try:
        return [ssl.Certificate.loadPEM(block) for block in blocks]
    except Exception as err:  # pyOpenSSL raises its own Error types
        raise TlsSetupError(f"{what} {path!r}: {err}") from None


@dataclass(frozen=True)
class TlsContexts:
    """What one service needs: client options per host name, and the server options."""

    settings: DiameterSettings
    own: ssl.PrivateCertificate | None
    chain: tuple[ssl.Certificate, ...]
    trust: IOpenSSLTrustRoot
    cas: tuple[ssl.Certificate, ...]  # from tls_ca_certificates; empty: the system's

    def client(self, hostname: str) -> IOpenSSLClientConnectionCreator:
        """Options for connecting to an ``aaas://`` peer whose URI host is `hostname`."""
        extra = {"extraCertChain": [c.original for c in self.chain]} if self.chain else None
        return ssl.optionsForClientTLS(
            hostname,
            trustRoot=self.trust,
            clientCertificate=self.own,
            extraCertificateOptions=extra,
        )

    def server(self) -> ssl.CertificateOptions:
        """Options for an ``aaas://`` listener (needs tls_certificate and its key)."""
        if self.own is None:
            raise TlsSetupError(
                "[diameter] an aaas:// listener needs tls_certificate and tls_private_key"
            )
        key = self.own.privateKey.original
        cert = self.own.original
        chain = [c.original for c in self.chain]
        if self.settings.tls_require_client_certificate:
            return ssl.CertificateOptions(
                privateKey=key, certificate=cert, extraCertChain=chain, trustRoot=self.trust
            )
        # A certificate is asked for and checked when tls_ca_certificates is set, not required.
        return ssl.CertificateOptions(
            privateKey=key,
            certificate=cert,
            extraCertChain=chain,
            verify=bool(self.cas),
            caCerts=[c.original for c in self.cas] or None,
            requireCertificate=False,
        )


def load_tls(settings: DiameterSettings) -> TlsContexts:
    """Read the certificate, key and CA files named in `settings`."""
    own: ssl.PrivateCertificate | None = None
    chain: tuple[ssl.Certificate, ...] = ()
    if bool(settings.tls_certificate) != bool(settings.tls_private_key):
        raise TlsSetupError("[diameter] tls_certificate and tls_private_key go together")
    if settings.tls_certificate:
        certs = _certificates(settings.tls_certificate, "tls_certificate")
        key_pem = _read(settings.tls_private_key, "tls_private_key")
        try:
            key = ssl.KeyPair.load(key_pem, crypto.FILETYPE_PEM)
            own = ssl.PrivateCertificate.fromCertificateAndKeyPair(certs[0], key)
            probe = SSL.Context(SSL.TLS_METHOD)
            probe.use_certificate(own.original.to_cryptography())
            probe.use_privatekey(key.original.to_cryptography_key())
            probe.check_privatekey()  # the key belongs to the certificate
        except Exception as err:  # pyOpenSSL raises its own Error types
            raise TlsSetupError(f"tls_private_key {settings.tls_private_key!r}: {err}") from None
        chain = tuple(certs[1:])
    trust: IOpenSSLTrustRoot
    cas: list[ssl.Certificate] = []
    if settings.tls_ca_certificates:
        cas = _certificates(settings.tls_ca_certificates, "tls_ca_certificates")
        trust = ssl.trustRootFromCertificates(cas)
    else:
        trust = ssl.platformTrust()
    return TlsContexts(settings, own, chain, trust, tuple(cas))
