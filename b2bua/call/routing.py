"""Routing of initial INVITEs: trusted sources and the ordered ``[route:NAME]`` rules.

A call is accepted only from ``[calls] trusted`` addresses (the SBCs); the first route
whose conditions all hold, in increasing ``priority`` and then name order, decides where
the B-leg goes and how the call is charged.  A condition left empty matches anything:

* ``source``: the address the INVITE came from is in one of the networks;
* ``trunk``: the header named by ``[calls] trunk_header`` (set by the SBC) has this value;
* ``user_prefix``: the Request-URI user (or ``tel:`` number) starts with one of these;
* ``domain``: the Request-URI host, case-insensitively.

Without any ``[route:NAME]`` section every call is routed back to the SBC that sent it,
uncharged (the implicit route ``default``).  :class:`Router` is immutable: a reload builds
a new one, and calls in progress keep the route they were given.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from functools import lru_cache

from b2bua.config import IpNetwork, RouteSettings, split_hop
from b2bua.sip.dialog import Hop
from b2bua.sip.headers import SipURI, TelURI
from b2bua.sip.message import Request

__all__ = ["DEFAULT_ROUTE", "Router", "is_trusted", "next_hop", "request_user_host"]

#: The route of every call when no ``[route:NAME]`` is configured.
DEFAULT_ROUTE = RouteSettings(name="default")


@lru_cache(maxsize=4096)
def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``host`` as an address; cached: the same SBCs send every call (parsing cost 7%)."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def is_trusted(host: str, networks: Iterable[IpNetwork]) -> bool:
    """Whether the source address ``host`` lies in one of ``networks``."""
    address = _address(host)
    if address is None:
        return False
    return any(address in network for network in networks)


def request_user_host(request: Request) -> tuple[str, str]:
    """The Request-URI user (or tel number) and host (lower case; '' for tel)."""
    uri = request.request_uri
    if isinstance(uri, SipURI):
        return uri.user or "", uri.bare_host.lower()
    if isinstance(uri, TelURI):
        return uri.number, ""
    return "", ""


def next_hop(route: RouteSettings, source: Hop) -> Hop:
    """Where the B-leg INVITE of ``route`` goes: its next_hop, else back to ``source``."""
    if route.next_hop:
        parts = split_hop(route.next_hop)
        if parts is not None:
            return Hop(*parts)
    return source


class Router:
    """The ordered routes, and the trunk header they may match on."""

    __slots__ = ("routes", "trunk_header")

    def __init__(self, routes: Sequence[RouteSettings], trunk_header: str = "X-Trunk") -> None:
        self.routes: tuple[RouteSettings, ...] = tuple(
            sorted(routes, key=lambda route: (route.priority, route.name))
        )
        self.trunk_header = trunk_header

    def select(self, request: Request, source_host: str) -> RouteSettings | None:
        """The first route matching ``request`` from ``source_host``; None: no route."""
        if not self.routes:
            return DEFAULT_ROUTE
        address = _address(source_host)
        user, host = request_user_host(request)
        trunk = (request.headers.get(self.trunk_header) or "").strip()
        for route in self.routes:
            if route.source and (
                address is None or not any(address in net for net in route.source)
            ):
                continue
            if route.trunk and route.trunk != trunk:
                continue
            if route.user_prefix and not any(user.startswith(p) for p in route.user_prefix):
                continue
            if route.domain and route.domain.strip("[]").lower() != host:
                continue
            return route
        return None
