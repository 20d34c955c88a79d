"""Which parts of a message cross from one leg to the other.

A B2BUA builds every message of a leg itself.  What it copies from the other leg is the
body (with the header fields that describe it) and the header fields an operator allows
(``[calls] pass_headers``: by default P-Asserted-Identity, P-Charging-Vector, Privacy and
Diversion).  Everything that identifies a leg (Via, Record-Route, Route, Contact, Call-ID,
the tags in From/To, CSeq) and every field b2bua negotiates per leg (Session-Expires,
Supported, Require, RSeq, RAck...) never crosses, whatever the configuration says.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from b2bua.sip.message import Message, canonical_key

__all__ = [
    "BODY_HEADERS",
    "DEFAULT_PASS_HEADERS",
    "NEVER_PASSED",
    "HeaderPolicy",
]

#: The default of ``[calls] pass_headers``.
DEFAULT_PASS_HEADERS: Final = (
    "P-Asserted-Identity",
    "P-Charging-Vector",
    "Privacy",
    "Diversion",
)

#: Fields that describe the body (RFC 3261 §20.11-§20.15): they travel with it.
BODY_HEADERS: Final = frozenset(
    {"content-type", "content-disposition", "content-encoding", "content-language"}
)

#: Fields b2bua writes for each leg itself; a policy that names one is refused.
NEVER_PASSED: Final = frozenset(
    {
        "via", "route", "record-route", "contact", "call-id", "from", "to", "cseq",
        "max-forwards", "content-length", "session-expires", "min-se", "supported",
        "require", "proxy-require", "unsupported", "allow", "rseq", "rack", "path",
        "service-route", "authorization", "proxy-authorization",
        *BODY_HEADERS,
    }
)  # fmt: skip


@dataclass(frozen=True)
class HeaderPolicy:
    """The header fields allowed across, as canonical (lower-case, full) names."""

    passed: frozenset[str]

    @classmethod
    def from_names(cls, names: Iterable[str]) -> HeaderPolicy:
        """A policy passing ``names``; ValueError for a field b2bua must write itself."""
        keys = frozenset(canonical_key(name) for name in names if name.strip())
        refused = sorted(keys & NEVER_PASSED)
        if refused:
            raise ValueError(f"b2bua writes {', '.join(refused)} itself; it cannot be passed")
        return cls(keys)

    def copy_headers(self, source: Message, target: Message, *, extra: Iterable[str] = ()) -> None:
        """Append to ``target`` the fields of ``source`` that the policy (or ``extra``) passes."""
        allowed = self.passed | {canonical_key(name) for name in extra}
        if not allowed:
            return
        for key, name, value in source.headers.keyed():
            if key in allowed:
                target.headers.add(name, value)

    @staticmethod
    def copy_body(source: Message, target: Message) -> None:
        """Give ``target`` the body of ``source`` with the fields describing it."""
        target.body = source.body
        target.headers.remove_keys(BODY_HEADERS)
        if not source.body:
            return
        for key, name, value in source.headers.keyed():
            if key in BODY_HEADERS:
                target.headers.add(name, value)
