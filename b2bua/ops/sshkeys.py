"""The SSH console's keys: its host key file and the operators' authorized_keys file.

The host key is Ed25519, kept in the OpenSSH private key format.  When the file named by
``[manhole] ssh_host_key`` does not exist, the first start creates it, readable by its
owner only (mode 0600), so that the fingerprint operators were told to trust stays the
same across restarts.  Fingerprints are written as ``ssh-keygen -l`` writes them
(``SHA256:...``).

``[manhole] ssh_authorized_keys`` is an OpenSSH ``authorized_keys`` file: one public key a
line (``ssh-ed25519 AAAA... alice@laptop``); blank lines and ``#`` comments are ignored.
Option prefixes (``from=...``) are not supported and refused, so that nobody believes
they restrict anything.  Any key listed may log in, under any user name.
"""

from __future__ import annotations

import os
import stat
import struct

from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.conch.ssh.keys import BadKeyError, FingerprintFormats, Key

__all__ = [
    "SshKeyError",
    "fingerprint",
    "load_or_create_host_key",
    "parse_authorized_keys",
    "read_authorized_keys",
    "too_open",
]

_KEY_TYPES = (
    b"ssh-ed25519",
    b"ssh-rsa",
    b"ecdsa-sha2-nistp256",
    b"ecdsa-sha2-nistp384",
    b"ecdsa-sha2-nistp521",
)


class SshKeyError(ValueError):
    """A key file is unusable; the message names the file or line and why."""


def fingerprint(key: Key) -> str:
    """``SHA256:...`` as OpenSSH prints it."""
    text: str = key.fingerprint(FingerprintFormats.SHA256_BASE64)
    return "SHA256:" + text.rstrip("=")


def parse_authorized_keys(text: str) -> list[Key]:
    """The public keys of an authorized_keys file's text; SshKeyError naming a bad line."""
    found: list[Key] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if fields[0].encode() not in _KEY_TYPES:
            raise SshKeyError(
                f"line {number}: expected a public key starting with one of "
                f"{', '.join(kind.decode() for kind in _KEY_TYPES)} (options are not supported)"
            )
        try:
            key = Key.fromString(" ".join(fields[:2]).encode("ascii"))
        except (BadKeyError, ValueError, IndexError, struct.error) as err:
            raise SshKeyError(f"line {number}: not a valid public key ({err})") from None
        if not key.isPublic():
            raise SshKeyError(f"line {number}: a private key; list public keys only")
        found.append(key)
    return found


def read_authorized_keys(path: str) -> list[Key]:
    """The keys of the file at ``path``; SshKeyError when it is unreadable or has none."""
    try:
        with open(path, encoding="utf-8") as handle:
            keys = parse_authorized_keys(handle.read())
    except (OSError, UnicodeDecodeError) as err:
        raise SshKeyError(f"cannot read {path!r}: {err}") from None
    if not keys:
        raise SshKeyError(f"{path!r} lists no key")
    return keys


def load_or_create_host_key(path: str) -> tuple[Key, bool]:
    """The host key in ``path`` (created, mode 0600, when absent) and whether it was created.

    SshKeyError when the file exists but is not a private key.
    """
    try:
        key = Key.fromFile(path)
    except FileNotFoundError:
        pass
    except (OSError, BadKeyError, ValueError) as err:
        raise SshKeyError(f"SSH host key {path!r}: {err}") from None
    else:
        if not key.isPublic():
            return key, False
        raise SshKeyError(f"SSH host key {path!r} is a public key; a private key is needed")
    key = Key(ed25519.Ed25519PrivateKey.generate())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key.toString("openssh"))
    except OSError as err:
        raise SshKeyError(f"cannot create the SSH host key {path!r}: {err}") from None
    return key, True


def too_open(path: str) -> bool:
    """True when group or others may read the file (a host key must be the owner's only)."""
    return bool(os.stat(path).st_mode & (stat.S_IRWXG | stat.S_IRWXO))
