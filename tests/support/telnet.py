"""A minimal blocking telnet client for the manhole: it ignores option negotiation.

It never answers the server's IAC negotiation (the console works with the defaults), and
strips the terminal's escape sequences from what it reads, so that tests see plain text.
"""

from __future__ import annotations

import re
import socket
import time

IAC, SB, SE = 255, 250, 240
_NEGOTIATION = {251, 252, 253, 254}  # WILL, WONT, DO, DONT
_ESCAPES = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\x1b[=>78DEHMc]")
PROMPT = ">>> "


def strip_telnet(data: bytes) -> bytes:
    """``data`` without telnet commands (IAC ...) and terminal escape sequences."""
    out = bytearray()
    index = 0
    while index < len(data):
        byte = data[index]
        if byte != IAC:
            out.append(byte)
            index += 1
            continue
        command = data[index + 1] if index + 1 < len(data) else None
        if command == IAC:
            out.append(IAC)
            index += 2
        elif command in _NEGOTIATION:
            index += 3
        elif command == SB:
            end = data.find(bytes((IAC, SE)), index)
            index = len(data) if end < 0 else end + 2
        else:
            index += 2
    return _ESCAPES.sub(b"", bytes(out))


class TelnetClient:
    """One connection to the manhole; ``read_until`` returns the plain text read."""

    def __init__(self, host: str, port: int, *, timeout: float = 10) -> None:
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self._raw = b""
        self._used = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> TelnetClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def text(self) -> str:
        """Everything read so far, as plain text."""
        return strip_telnet(self._raw).decode("utf-8", "replace").replace("\r", "")

    def read_until(self, needle: str, timeout: float | None = None) -> str:
        """Read until ``needle`` appears after what earlier calls returned; the text between."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            text = self.text()
            found = text.find(needle, self._used)
            if found >= 0:
                chunk = text[self._used : found + len(needle)]
                self._used = found + len(needle)
                return chunk
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{needle!r} not received; got:\n{text[self._used :]}")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                raise AssertionError(f"connection closed before {needle!r}; got:\n{text}")
            self._raw += data

    def send_line(self, line: str) -> None:
        self.sock.sendall(line.encode("utf-8") + b"\r\n")

    def login(self, user: str, password: str) -> str:
        """Answer the user name and password prompts; the text up to the next prompt."""
        self.read_until("Username: ")
        self.send_line(user)
        self.read_until("Password: ")
        self.send_line(password)
        return self.read_until(PROMPT if password else "Username: ")

    def run(self, statement: str, timeout: float | None = None) -> str:
        """Type ``statement`` at the Python prompt; its output (up to the next prompt)."""
        self.send_line(statement)
        text = self.read_until(PROMPT, timeout)
        # The console echoes what was typed: drop that first line, and the prompt.
        _, _, output = text.partition("\n")
        return output[: -len(PROMPT)].rstrip("\n")
