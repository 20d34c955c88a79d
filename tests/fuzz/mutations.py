"""Byte-level mutations of valid messages, shared by the SIP and Diameter fuzzers."""

from __future__ import annotations

from hypothesis import strategies as st

#: Bytes that mean something to a SIP or URI grammar: worth inserting more than noise.
SIP_SPECIALS = [
    b"\r\n", b"\r", b"\n", b" ", b"\t", b":", b";", b",", b"<", b">", b'"', b"\\", b"%",
    b"%0", b"%zz", b"[", b"]", b"@", b"=", b"?", b"&", b"/", b"\x00", b"\xff", b"\xc3",
    b"sip:", b"sips:", b"tel:", b"[::1", b";tag=", b";branch=", b";rport=", b";received=",
    b"Content-Length: 99999\r\n", b"\r\n\r\n", b" \r\n ", b"SIP/2.0", b"9999999999999999999",
]  # fmt: skip


@st.composite
def mutated(
    draw: st.DrawFn, seeds: list[bytes], specials: list[bytes] | None = None, rounds: int = 6
) -> bytes:
    """One of ``seeds`` after 1..``rounds`` random flips, sets, cuts, inserts and splices."""
    data = bytearray(draw(st.sampled_from(seeds)))
    kinds = ["flip", "set", "truncate", "insert", "delete", "duplicate", "splice"]
    if specials:
        kinds.append("special")
    for _ in range(draw(st.integers(1, rounds))):
        kind = draw(st.sampled_from(kinds))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "special" and specials:
            data[pos:pos] = draw(st.sampled_from(specials))
        elif kind == "duplicate":
            size = draw(st.integers(1, 64))
            data[pos:pos] = data[pos : pos + size] * draw(st.integers(1, 4))
        elif kind == "splice":
            other = draw(st.sampled_from(seeds))
            start = draw(st.integers(0, max(len(other) - 1, 0)))
            data[pos:pos] = other[start : start + draw(st.integers(1, 80))]
        elif data:
            del data[pos : pos + draw(st.integers(1, 8))]
    return bytes(data)
