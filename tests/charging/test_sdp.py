"""The minimal SDP reader: media sections, ports, directions, and garbage."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from b2bua.charging.sdp import Direction, MediaSection, has_active_video, media_sections

SESSION = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
AUDIO = "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
VIDEO = "m=video 4002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"


@pytest.mark.parametrize(
    ("body", "video"),
    [
        (SESSION + AUDIO, False),
        (SESSION + AUDIO + VIDEO, True),
        (SESSION + VIDEO.replace("4002", "0"), False),
        (SESSION + AUDIO + VIDEO + "a=inactive\r\n", False),
        (SESSION + AUDIO + VIDEO + "a=sendonly\r\n", True),
        (SESSION + AUDIO + VIDEO + "a=recvonly\r\n", True),
        (SESSION + "a=inactive\r\n" + AUDIO + VIDEO, False),
        (SESSION + "a=inactive\r\n" + AUDIO + VIDEO + "a=sendrecv\r\n", True),
        (SESSION + VIDEO + "a=inactive\r\n" + AUDIO, False),
        (SESSION + "m=video 4002/2 RTP/AVP 96\r\n", True),
        (SESSION + "m=VIDEO 4002 RTP/AVP 96\r\n", True),
        ((SESSION + AUDIO + VIDEO).replace("\r\n", "\n"), True),
        ((SESSION + AUDIO + VIDEO).encode(), True),
    ],
)
def test_active_video(body: str | bytes, video: bool) -> None:
    """A video stream counts when its port is not 0 and it is not inactive."""
    assert has_active_video(body) is video


def test_media_sections_are_listed_with_effective_direction() -> None:
    """Each m= line is one section; session-level direction applies where none is given."""
    body = SESSION + "a=sendonly\r\n" + AUDIO + VIDEO + "a=inactive\r\n"
    assert media_sections(body) == [
        MediaSection("audio", 4000, "RTP/AVP", Direction.SENDONLY),
        MediaSection("video", 4002, "RTP/AVP", Direction.INACTIVE),
    ]
    assert [m.active for m in media_sections(body)] == [True, False]


def test_unreadable_media_line_ends_the_previous_section() -> None:
    """Attributes after an unreadable m= line do not change the section before it."""
    body = SESSION + AUDIO + "m=video x RTP/AVP\r\na=inactive\r\n"
    assert media_sections(body) == [MediaSection("audio", 4000, "RTP/AVP", Direction.SENDRECV)]


@pytest.mark.parametrize(
    "body",
    [
        None,
        "",
        b"",
        "m=video",
        "m=video 99999 RTP/AVP 96",
        "m=video -1 RTP/AVP 96",
        "m=video ٣ RTP/AVP 96",
        b"\xff\xfe\x00m=video\x00",
        "just some text",
        12,
    ],
)
def test_garbage_has_no_video(body: object) -> None:
    """Empty bodies, bad ports and non-SDP input give no video and no error."""
    assert has_active_video(body) is False  # type: ignore[arg-type]


@given(st.binary(max_size=300))
def test_never_raises_on_bytes(body: bytes) -> None:
    """Any bytes at all are read without an exception."""
    assert isinstance(has_active_video(body), bool)


@given(st.text(alphabet="mav=ido 0123456789\r\n/RTP", max_size=200))
def test_never_raises_on_sdp_like_text(body: str) -> None:
    """Text made of SDP's own characters is read without an exception."""
    assert isinstance(has_active_video(body), bool)
