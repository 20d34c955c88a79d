"""Manhole users: a passwd-style file of ``user:hash`` lines, and a tool that writes them.

The hash is PBKDF2-HMAC-SHA256 from the standard library, written as::

    $pbkdf2-sha256$ITERATIONS$SALT$DIGEST

with SALT (16 random bytes) and DIGEST (32 bytes) in URL-safe base64 without padding.
Blank lines and lines starting with ``#`` are ignored.  Plain text passwords are never
stored, and b2bua never logs them.

Create a line (the password is asked for twice, without echo)::

    python -m b2bua.ops.passwd alice >> /etc/b2bua/manhole.passwd
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import os
import re
import sys
from collections.abc import Mapping, Sequence

__all__ = ["DEFAULT_ITERATIONS", "PasswdError", "hash_password", "parse_passwd", "read_passwd",
           "verify_password"]  # fmt: skip

SCHEME = "pbkdf2-sha256"
DEFAULT_ITERATIONS = 200_000
_MIN_ITERATIONS = 1_000
_HASH_RE = re.compile(r"\$pbkdf2-sha256\$(\d{1,9})\$([A-Za-z0-9_-]{8,})\$([A-Za-z0-9_-]{43})")
_USER_RE = re.compile(r"[A-Za-z0-9_.@-]{1,64}")


class PasswdError(ValueError):
    """The passwd file is unusable; the message names the line."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(
    password: str, *, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None
) -> str:
    """The stored form of ``password`` (a new random salt unless ``salt`` is given)."""
    salt = os.urandom(16) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return f"${SCHEME}${iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches the stored hash (a constant-time comparison)."""
    match = _HASH_RE.fullmatch(stored)
    if match is None:
        return False
    iterations = int(match.group(1))
    salt, expected = _unb64(match.group(2)), _unb64(match.group(3))
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return hmac.compare_digest(digest, expected)


#: Compared against when the user is unknown, so that a refusal takes as long either way.
DUMMY_HASH = hash_password("", salt=b"\0" * 16)


def parse_passwd(text: str) -> dict[str, str]:
    """``{user: hash}`` of a passwd file's text; PasswdError naming the first bad line."""
    users: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, colon, stored = line.partition(":")
        if not colon or not _USER_RE.fullmatch(user):
            raise PasswdError(f"line {number} is not user:hash")
        match = _HASH_RE.fullmatch(stored)
        if match is None or int(match.group(1)) < _MIN_ITERATIONS:
            raise PasswdError(
                f"line {number}: the hash of {user!r} is not $pbkdf2-sha256$ITERATIONS$SALT$DIGEST"
                " (make one with: python -m b2bua.ops.passwd USER)"
            )
        if user in users:
            raise PasswdError(f"line {number}: user {user!r} appears twice")
        users[user] = stored
    return users


def read_passwd(path: str) -> dict[str, str]:
    """The users of the file at ``path``; PasswdError when it cannot be read or parsed."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as err:
        raise PasswdError(f"cannot read {path!r}: {err}") from None
    return parse_passwd(text)


def users_summary(users: Mapping[str, str]) -> str:
    """``alice, bob`` (names only, never hashes)."""
    return ", ".join(sorted(users)) or "-"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m b2bua.ops.passwd USER``: print a ``USER:HASH`` line for a passwd file."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or not _USER_RE.fullmatch(args[0]):
        sys.stderr.write("usage: python -m b2bua.ops.passwd USER  (USER: letters, digits, _.@-)\n")
        return 2
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            sys.stderr.write("the passwords differ\n")
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        sys.stderr.write("an empty password is not allowed\n")
        return 1
    sys.stdout.write(f"{args[0]}:{hash_password(password)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
