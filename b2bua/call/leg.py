"""One leg of a call: b2bua's dialog with the caller (A) or with the callee (B), sans-IO.

A leg owns what b2bua says on that side and nothing of the other: its Call-ID and local
tag (random for B; the A-leg keeps the caller's Call-ID and gets our To tag), its Contact,
its dialog(s) (the B-leg may have several early dialogs when the INVITE forks), the
session timer negotiated on that side, the ACKs sent there (re-sent when a 2xx is
retransmitted) and the last session description sent there (a session refresh by
re-INVITE repeats it unchanged).

:meth:`Leg.snapshot` / :meth:`Leg.restore` keep what a confirmed leg needs after a restart
(its dialog, session timer, refresh method and last session description); transaction
state (forks, ACKs, a refresh in flight) does not survive one.
"""

from __future__ import annotations

from typing import Any

from b2bua.call.events import Side
from b2bua.call.session_timer import Refresher, SessionTimer
from b2bua.sip.dialog import Dialog, Hop
from b2bua.sip.headers import SipURI
from b2bua.sip.message import Message, Request

__all__ = ["Leg"]

#: No methods known yet (one shared object: every empty frozenset() is a new one).
_NONE: frozenset[str] = frozenset()


class Leg:
    """b2bua's side of one leg.

    ``dialog`` is the dialog once it exists (A: from the INVITE, early until our 2xx;
    B: the fork whose 2xx was taken); ``forks`` are the B-leg's early dialogs by remote
    tag.  ``default_hop`` is where requests go when no dialog says otherwise (A: the SBC
    that sent the INVITE; B: the route's next hop).
    """

    __slots__ = (
        "acks",
        "call_id",
        "contact",
        "default_hop",
        "dialog",
        "forks",
        "last_fork",
        "local_tag",
        "min_se_floor",
        "peer_allow",
        "refresh_failed",
        "refresh_key",
        "refresh_with_invite",
        "sdp_sent",
        "side",
        "timer",
        "timer_since",
        "transport",
        "unacked",
    )

    def __init__(
        self,
        side: Side,
        call_id: str,
        local_tag: str,
        contact: SipURI,
        default_hop: Hop,
    ) -> None:
        self.side = side
        self.call_id = call_id
        self.local_tag = local_tag
        self.contact = contact
        self.default_hop = default_hop
        self.transport = default_hop.transport
        self.dialog: Dialog | None = None
        self.forks: dict[str, Dialog] = {}
        self.last_fork: str | None = None
        self.timer: SessionTimer | None = None
        self.timer_since = 0.0
        self.min_se_floor = 0
        self.refresh_key: int | None = None
        self.refresh_failed = False
        self.refresh_with_invite = False
        self.peer_allow: frozenset[str] = _NONE
        #: ACK we sent for the 2xx to our INVITE with this CSeq number.
        self.acks: dict[int, Request] = {}
        #: CSeq numbers of our INVITEs whose 2xx is not ACKed yet (waiting for the other leg);
        #: a dict as a set (an empty set takes 216 bytes, an empty dict 64).
        self.unacked: dict[int, None] = {}
        self.sdp_sent: tuple[bytes, str] | None = None

    def __repr__(self) -> str:
        return f"<Leg {self.side.value} {self.call_id} {self.local_tag}>"

    def snapshot(self) -> dict[str, Any]:
        """What a confirmed leg needs after a restart, as JSON-able values."""
        timer = self.timer
        sdp = self.sdp_sent
        hop = self.default_hop
        return {
            "side": self.side.value,
            "call_id": self.call_id,
            "local_tag": self.local_tag,
            "default_hop": [hop.transport, hop.host, hop.port],
            "transport": self.transport,
            "dialog": None if self.dialog is None else self.dialog.snapshot(),
            "timer": None if timer is None else [timer.interval, timer.refresher.value],
            "timer_since": self.timer_since,
            "min_se_floor": self.min_se_floor,
            "refresh_failed": self.refresh_failed,
            "refresh_with_invite": self.refresh_with_invite,
            "peer_allow": sorted(self.peer_allow),
            "sdp_sent": None if sdp is None else [sdp[0].decode("latin-1"), sdp[1]],
        }

    @classmethod
    def restore(cls, data: dict[str, Any], contact: SipURI, *, cseq_margin: int = 0) -> Leg:
        """The leg of a :meth:`snapshot`, with ``contact`` (this instance's) as its Contact.

        KeyError, TypeError, ValueError or SipParseError if ``data`` is not a snapshot.
        """
        transport, host, port = data["default_hop"]
        leg = cls(Side(data["side"]), str(data["call_id"]), str(data["local_tag"]), contact,
                  Hop(str(transport), str(host), int(port)))  # fmt: skip
        leg.transport = str(data["transport"])
        dialog = data["dialog"]
        leg.dialog = None if dialog is None else Dialog.restore(dialog, cseq_margin=cseq_margin)
        timer = data["timer"]
        leg.timer = None if timer is None else SessionTimer(int(timer[0]), Refresher(timer[1]))
        leg.timer_since = float(data["timer_since"])
        leg.min_se_floor = int(data["min_se_floor"])
        leg.refresh_failed = bool(data["refresh_failed"])
        leg.refresh_with_invite = bool(data["refresh_with_invite"])
        leg.peer_allow = frozenset(str(method) for method in data["peer_allow"])
        sdp = data["sdp_sent"]
        leg.sdp_sent = None if sdp is None else (str(sdp[0]).encode("latin-1"), str(sdp[1]))
        return leg

    @property
    def remote_tag(self) -> str | None:
        """The far end's tag, once a dialog exists."""
        dialog = self.active_dialog()
        return dialog.remote_tag if dialog is not None else None

    def active_dialog(self) -> Dialog | None:
        """The dialog requests go in: the confirmed one, else the latest early fork."""
        if self.dialog is not None:
            return self.dialog
        if self.last_fork is not None:
            return self.forks.get(self.last_fork)
        return None

    def dialog_for(self, remote_tag: str | None) -> Dialog | None:
        """The dialog (confirmed or early) whose remote tag is ``remote_tag``."""
        tag = remote_tag or ""
        if self.dialog is not None and self.dialog.remote_tag == tag:
            return self.dialog
        return self.forks.get(tag)

    def hop(self, dialog: Dialog | None = None) -> Hop:
        """Where a request in ``dialog`` (default: the active one) goes."""
        dialog = dialog if dialog is not None else self.active_dialog()
        if dialog is not None:
            hop = dialog.next_hop(self.transport)
            if hop is not None:
                return hop
        return self.default_hop

    def note_sent(self, message: Message) -> None:
        """Remember the session description in ``message`` if it carries one."""
        if message.body and message.media_type == "application/sdp":
            self.sdp_sent = (message.body, message.content_type or "application/sdp")

    def learn_allow(self, message: Message) -> None:
        """Remember the methods the far end allows (UPDATE decides how we refresh)."""
        values = message.headers.get_all("allow")
        if values:
            self.peer_allow = frozenset(v.strip().upper() for v in values if v.strip())
