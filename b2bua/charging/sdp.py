"""Just enough SDP to tell a video call from a voice call, sans-IO.

Implements the parts of RFC 4566 that charging needs:

* §5: one ``<type>=<value>`` field per line; CRLF or a bare LF ends a line (§5 lets a
  parser accept LF); lines that are not fields are ignored, not fatal;
* §5.14: a media description starts at ``m=<media> <port>[/<number>] <proto> <fmt> ...``
  and runs to the next ``m=``; a port of 0 means the stream is not used (RFC 3264 §6:
  a rejected or removed stream keeps its line with port 0);
* §6: the direction attributes ``a=sendrecv``, ``a=sendonly``, ``a=recvonly`` and
  ``a=inactive``; a session-level one applies to every media description that does not
  give its own (RFC 3264 §5.1), and the default is sendrecv.

Charging asks one question (:func:`has_active_video`): is there a video stream that
will carry media? Anything unreadable is skipped, so the answer for garbage is False and
nothing here ever raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Direction", "MediaSection", "has_active_video", "media_sections"]


class Direction(StrEnum):
    """Media direction attributes (RFC 4566 §6)."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"


_DIRECTIONS = {d.value: d for d in Direction}


@dataclass(frozen=True, slots=True)
class MediaSection:
    """One ``m=`` description: media type, port, protocol and effective direction."""

    media: str  # lower-cased: audio, video, text, application, message, image...
    port: int
    proto: str
    direction: Direction

    @property
    def active(self) -> bool:
        """True when the stream is offered and carries media in some direction."""
        return self.port != 0 and self.direction is not Direction.INACTIVE


def _lines(body: object) -> list[str]:
    if isinstance(body, bytes | bytearray | memoryview):
        text = bytes(body).decode("utf-8", "replace")
    elif isinstance(body, str):
        text = body
    else:
        return []
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _parse_media(value: str) -> tuple[str, int, str] | None:
    """``<media> <port>[/<number of ports>] <proto> ...`` -> (media, port, proto)."""
    parts = value.split()
    if len(parts) < 3:
        return None
    port_text = parts[1].partition("/")[0]
    if not port_text.isascii() or not port_text.isdigit():
        return None
    port = int(port_text)
    if port > 65535:
        return None
    return parts[0].lower(), port, parts[2]


def media_sections(body: bytes | str | None) -> list[MediaSection]:
    """The media descriptions of an SDP body, in order; garbage yields what it can."""
    lines = _lines(body) if body else []
    session_direction = Direction.SENDRECV
    found: list[tuple[str, int, str, Direction | None]] = []
    in_media = False  # past the first m= line: attributes belong to a media section
    readable = False  # the current media section's m= line could be read
    for raw in lines:
        line = raw.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        kind, value = line[0], line[2:].strip()
        if kind == "m":
            parsed = _parse_media(value)
            in_media = True
            readable = parsed is not None
            if parsed is not None:
                found.append((*parsed, None))
        elif kind == "a":
            direction = _DIRECTIONS.get(value.lower())
            if direction is None:
                continue
            if not in_media:
                session_direction = direction
            elif readable:
                media, port, proto, _ = found[-1]
                found[-1] = (media, port, proto, direction)
    return [
        MediaSection(media, port, proto, direction or session_direction)
        for media, port, proto, direction in found
    ]


def has_active_video(body: bytes | str | None) -> bool:
    """True if the SDP offers a video stream with a non-zero port that is not inactive."""
    return any(m.media == "video" and m.active for m in media_sections(body))
