"""Real calls on loopback: SIPp caller -> b2bua -> SIPp callee, every message on the wire.

Each test starts a callee SIPp, b2bua and a caller SIPp, waits (bounded) for both SIPps to
end by themselves, and checks their exit status and b2bua's log.  The capture check
reads SIPp's message logs (``-trace_msg``): no Call-ID, tag, Via branch or Contact of one
leg may appear in any message of the other.

b2bua runs as the operator runs it: ``twistd -n b2bua --config FILE``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import Daemon
from tests.support.ports import free_port
from tests.support.sipp import Sipp, run_until_done

pytestmark = pytest.mark.integration


class Lab:
    """Ports, a configuration and the processes of one test."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.b2bua_port = free_port()
        self.caller_port = free_port()
        self.callee_port = free_port()
        self.daemon: Daemon | None = None
        self.sipps: list[Sipp] = []

    def start(self, calls: str = "", *, t1: float = 0.5) -> Daemon:
        config = self.dir / "b2bua.conf"
        config.write_text(
            f"[sip]\nlisten = udp:127.0.0.1:{self.b2bua_port}\nt1 = {t1}\n"
            f"[log]\nlevel = debug\n"
            f"[calls]\n{calls}\n"
            f"[route:callee]\nnext_hop = 127.0.0.1:{self.callee_port}\n"
            "[metrics]\nlisten =\n"  # not the default port, shared by every daemon
        )
        self.daemon = Daemon(config, log_path=self.dir / "b2bua.log")
        self.daemon.wait_for_log("b2bua started")
        return self.daemon

    def callee(self, scenario: str = "uas", **kwargs: object) -> Sipp:
        sipp = Sipp(scenario, self.dir, self.callee_port, timeout=20, **kwargs)  # type: ignore[arg-type]
        self.sipps.append(sipp)
        return sipp.start()

    def caller(self, scenario: str = "uac", **kwargs: object) -> Sipp:
        sipp = Sipp(
            scenario,
            self.dir,
            self.caller_port,
            remote=f"127.0.0.1:{self.b2bua_port}",
            timeout=20,
            **kwargs,  # type: ignore[arg-type]
        )
        self.sipps.append(sipp)
        return sipp.start()

    def log(self) -> str:
        assert self.daemon is not None
        return self.daemon.log_text()

    def stop(self) -> None:
        for sipp in self.sipps:
            sipp.stop()
        if self.daemon is not None:
            self.daemon.stop()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        lab.stop()


def passed(*sipps: Sipp, timeout: float = 25) -> None:
    """Both SIPps ended by themselves with every call successful."""
    statuses = run_until_done(*sipps, timeout=timeout)
    assert statuses == [0] * len(sipps), "\n".join(s.report() for s in sipps)


# ------------------------------------------------------------------- capture check

_MESSAGE_SPLIT = re.compile(r"^-{20,}.*$", re.MULTILINE)


def messages(sipp: Sipp) -> list[str]:
    """The SIP messages SIPp sent and received, as text."""
    parts = _MESSAGE_SPLIT.split(sipp.messages())
    out = []
    for part in parts:
        text = part.strip()
        if "SIP/2.0" in text:
            out.append(text[text.find("\n") + 1 :].strip() if "message" in text[:60] else text)
    return out


def identifiers(texts: list[str]) -> set[str]:
    """Call-IDs, From/To tags, Via branches and Contact URIs found in ``texts``."""
    found: set[str] = set()
    for text in texts:
        for pattern in (
            r"^(?:Call-ID|i)\s*:\s*(\S+)",
            r";tag=([^;>\s,]+)",
            r";branch=([^;>\s,]+)",
            r"^(?:Contact|m)\s*:[^<\n]*<([^>]+)>",
            r"^(?:Contact|m)\s*:\s*(sips?:[^;<>\s]+)",
        ):
            found.update(m for m in re.findall(pattern, text, re.MULTILINE | re.IGNORECASE))
    return found


def assert_legs_share_nothing(caller: Sipp, callee: Sipp, b2bua_port: int) -> None:
    """No identifier of one leg appears anywhere in the messages of the other.

    b2bua's own Contact (one listener serves both legs) is the only thing allowed on both.
    """
    a_texts, b_texts = messages(caller), messages(callee)
    assert a_texts and b_texts
    ours = f"@127.0.0.1:{b2bua_port}"
    a_ids = {i for i in identifiers(a_texts) if ours not in i}
    b_ids = {i for i in identifiers(b_texts) if ours not in i}
    assert len(a_ids) >= 4 and len(b_ids) >= 4
    a_blob, b_blob = "\n".join(a_texts), "\n".join(b_texts)
    leaked_to_b = sorted(i for i in a_ids if i in b_blob)
    leaked_to_a = sorted(i for i in b_ids if i in a_blob)
    assert leaked_to_b == [] and leaked_to_a == []


# ------------------------------------------------------------------------ the tests


def test_basic_call_caller_hangs_up(lab: Lab) -> None:
    """Caller -> b2bua -> callee: answered, caller hangs up; legs share no identifier."""
    callee = lab.callee("uas")
    lab.start()
    caller = lab.caller("b2b_uac.xml")
    passed(caller, callee)
    log = lab.log()
    assert "answered" in log and "ended: caller hung up" in log
    assert_legs_share_nothing(caller, callee, lab.b2bua_port)
    b_invite = next(m for m in messages(callee) if m.startswith("INVITE"))
    assert "P-Asserted-Identity: <sip:+4930111@example.com>" in b_invite
    assert "User-Agent" not in b_invite and "Max-Forwards: 69" in b_invite


def test_builtin_sipp_call(lab: Lab) -> None:
    """SIPp's own uac and uas scenarios complete through b2bua."""
    callee = lab.callee("uas")
    lab.start()
    caller = lab.caller("uac")
    passed(caller, callee)
    assert "ended: caller hung up" in lab.log()


def test_callee_hangs_up(lab: Lab) -> None:
    """The callee's BYE ends the call; the caller gets a BYE from b2bua."""
    callee = lab.callee("b2b_uas_bye.xml")
    lab.start()
    caller = lab.caller("b2b_uac_wait_bye.xml")
    passed(caller, callee)
    assert "ended: callee hung up" in lab.log()
    assert_legs_share_nothing(caller, callee, lab.b2bua_port)


def test_cancel_before_answer(lab: Lab) -> None:
    """CANCEL from the caller: CANCEL to the callee, 487 back to the caller."""
    callee = lab.callee("b2b_uas_ring.xml")
    lab.start()
    caller = lab.caller("b2b_uac_cancel.xml")
    passed(caller, callee)
    assert "ended: cancelled" in lab.log()
    assert_legs_share_nothing(caller, callee, lab.b2bua_port)


def test_busy_callee(lab: Lab) -> None:
    """486 from the callee reaches the caller; the call ends rejected."""
    callee = lab.callee("b2b_uas_busy.xml")
    lab.start()
    caller = lab.caller("b2b_uac_busy.xml")
    passed(caller, callee)
    assert "ended: rejected (486)" in lab.log()


def test_early_media_then_answer(lab: Lab) -> None:
    """183 with SDP reaches the caller before the 200."""
    callee = lab.callee("b2b_uas_early.xml")
    lab.start()
    caller = lab.caller("b2b_uac_early.xml")
    passed(caller, callee)
    assert_legs_share_nothing(caller, callee, lab.b2bua_port)


def test_reliable_provisional_and_prack_end_to_end(lab: Lab) -> None:
    """RFC 3262: the callee's reliable 183 reaches the caller, whose PRACK reaches it."""
    callee = lab.callee("b2b_uas_100rel.xml")
    lab.start()
    caller = lab.caller("b2b_uac_100rel.xml")
    passed(caller, callee)
    assert "ended: caller hung up" in lab.log()
    assert_legs_share_nothing(caller, callee, lab.b2bua_port)


def test_hold_and_resume(lab: Lab) -> None:
    """Two re-INVITEs (sendonly, sendrecv) cross b2bua with their answers and ACKs."""
    callee = lab.callee("b2b_uas_hold.xml")
    lab.start()
    caller = lab.caller("b2b_uac_hold.xml")
    passed(caller, callee)
    assert "ended: caller hung up" in lab.log()
    assert_legs_share_nothing(caller, callee, lab.b2bua_port)


def test_session_timer_expiry_when_the_caller_vanishes(lab: Lab) -> None:
    """The caller is the refresher (4 s) and disappears: both legs get BYE at ~2.7 s."""
    callee = lab.callee("uas")
    lab.start("session_expires = 30\nmin_se = 2\n", t1=0.1)
    caller = lab.caller("b2b_uac_vanish.xml")
    passed(caller, callee)
    assert "ended: session timer expired" in lab.log()


def test_untrusted_caller_gets_403(lab: Lab) -> None:
    """A caller outside [calls] trusted gets 403 and nothing reaches the callee."""
    lab.start("trusted = 192.0.2.1\n")
    caller = lab.caller("b2b_uac_forbidden.xml")
    passed(caller)
    assert "refused INVITE from untrusted 127.0.0.1" in lab.log()
    assert "call " not in lab.log().split("refused INVITE", 1)[1]
