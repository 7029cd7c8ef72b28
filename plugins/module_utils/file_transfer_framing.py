# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The file_transfer scripts' output as the controller reads it: JSON lines from file_transfer_send, and JSON lines
around length-prefixed frames of the file from file_transfer_receive (file_transfer_*.contract.json); and how many
bytes of the file fit in one Send. Plain Python, no I/O: bytes in, messages out."""

from __future__ import annotations

import json
import typing as t

from ansible_collections.remote_support.windows.plugins.module_utils.errors import DeviceError
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_streaming import send_chunk_bytes


# Room in each Send for the start line (before the first chunk) and the SHA-256 line (after the last), so that every
# Send carries exactly one chunk of the file.
LINE_ROOM = 96


def chunk_for(envelope: int) -> int:
    """Bytes of the file in each Send (and between two session checks on the device)."""
    return send_chunk_bytes(envelope) - LINE_ROOM


class LineReader:
    """file_transfer_send's stdout: JSON lines, which may arrive split across Receives."""

    def __init__(self) -> None:
        self._pending = bytearray()

    def feed(self, data: bytes) -> list[dict[str, t.Any]]:
        self._pending.extend(data)
        messages: list[dict[str, t.Any]] = []
        while True:
            end = self._pending.find(b"\n")
            if end < 0:
                return messages
            line = bytes(self._pending[:end]).strip()
            del self._pending[:end + 1]
            if line:
                messages.append(read_message(line))


class FrameReader:
    """file_transfer_receive's stdout: a JSON line (ready, or the result alone), then frames (a 4-byte big-endian
    length and that many bytes of the file; length 0 ends them), then the result line. File bytes go to `on_data` as
    they arrive, never gathered."""

    def __init__(self, on_data: t.Callable[[memoryview], None]) -> None:
        self._on_data = on_data
        self._state = "line"  # line -> frames -> result -> done
        self._pending = bytearray()
        self._frame_left = 0

    @property
    def done(self) -> bool:
        return self._state == "done"

    def feed(self, data: bytes) -> list[dict[str, t.Any]]:
        messages: list[dict[str, t.Any]] = []
        view = memoryview(data)
        while len(view) and self._state != "done":
            if self._state in ("line", "result"):
                # Lines come alone or after the last frame, so this part of the output is short.
                end = bytes(view).find(b"\n")
                if end < 0:
                    self._pending.extend(view)
                    return messages
                self._pending.extend(view[:end])
                view = view[end + 1:]
                line = bytes(self._pending).strip()
                self._pending.clear()
                if not line:
                    continue
                message = read_message(line)
                messages.append(message)
                self._state = "frames" if message.get("kind") == "ready" else "done"
            elif self._frame_left:
                take = min(self._frame_left, len(view))
                self._on_data(view[:take])
                self._frame_left -= take
                view = view[take:]
            else:
                need = 4 - len(self._pending)
                self._pending.extend(view[:need])
                view = view[need:]
                if len(self._pending) == 4:
                    self._frame_left = int.from_bytes(self._pending, "big")
                    self._pending.clear()
                    if self._frame_left == 0:
                        self._state = "result"
        return messages


def read_message(line: bytes) -> dict[str, t.Any]:
    try:
        message = json.loads(line.decode("utf-8"))
    except ValueError:
        raise DeviceError("script", f"The device's transfer script wrote a line that is not JSON: {line[:200]!r}. "
                                    "The device may run another version of the collection's scripts.") from None
    if not isinstance(message, dict) or "kind" not in message:
        raise DeviceError("script", f"The device's transfer script wrote an unexpected line: {line[:200]!r}.")
    return message
