# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Streaming: one long-running device script fed through stdin and read through stdout, a Send or a Receive at a time
(the file transfers).

The sixth layer of the WinRM client: DeviceShell.start_stream starts the command, then StreamingCommand builds each
Send and Receive itself (winrm_envelopes), so that hundreds of KiB of base64 are spliced in as bytes rather than
rendered into the text, and asks for envelopes as large as the device allows. It sends through pywinrm's Protocol
(send_message); the same settings, shell and failure names as the client.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import os
import typing as t
import xml.parsers.expat

try:
    import winrm.exceptions

    HAS_WINRM = True
except ImportError:  # winrm_client reports the missing library with the install hint
    HAS_WINRM = False

from ansible_collections.remote_support.windows.plugins.module_utils.device_script import SCRIPTS_DIR, DeviceScript
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_envelopes import (
    RECEIVE_ACTION,
    SAFE_ENVELOPE_BYTES,
    SEND_ACTION,
    envelope,
    parse_receive_response,
    receive_body,
    send_body,
)
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_failures import classify
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_settings import WinRMSettings


# Larger envelopes save little once a round trip carries hundreds of KiB, and each one is held a few times over in
# controller memory while it is encoded and encrypted.
MAX_STREAM_ENVELOPE_BYTES = 4 * 1024 * 1024
# What a Send's SOAP envelope needs besides the base64 data: headers, ids and the stream element (about 2 KiB).
SEND_ENVELOPE_OVERHEAD = 8192

_DATA_PLACEHOLDER = "@@stream-data@@"


def envelope_bytes(max_envelope_size_kb: int | None) -> int:
    """The envelope size to use with a device whose MaxEnvelopeSizekb is given (None: unknown, the safe size)."""
    if not max_envelope_size_kb:
        return SAFE_ENVELOPE_BYTES
    return max(32 * 1024, min(int(max_envelope_size_kb) * 1024, MAX_STREAM_ENVELOPE_BYTES))


def send_chunk_bytes(envelope: int) -> int:
    """Bytes of data one Send carries within `envelope`: base64 grows data by 4/3, plus the envelope's own text."""
    return (envelope - SEND_ENVELOPE_OVERHEAD) // 4 * 3


@functools.lru_cache(maxsize=None)
def _encoded_stream_bootstrap() -> str:
    with open(os.path.join(SCRIPTS_DIR, "stream_bootstrap.ps1"), encoding="utf-8") as handle:
        return base64.b64encode(handle.read().encode("utf-16-le")).decode("ascii")


def stream_command_arguments() -> list[str]:
    """powershell.exe arguments that run stream_bootstrap.ps1, which reads the script and its input from stdin."""
    return ["-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-EncodedCommand",
            _encoded_stream_bootstrap()]


def stream_header(script: DeviceScript, script_input: t.Mapping[str, t.Any]) -> bytes:
    """What stream_bootstrap.ps1 reads first: the length of the JSON in ASCII digits, a line feed, then the JSON."""
    body = json.dumps({"script": script.text, "input": dict(script_input)}, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")
    return str(len(body)).encode("ascii") + b"\n" + body


@dataclasses.dataclass
class StreamOutput:
    """What one Receive brought: output so far (possibly none) and whether the command has ended."""

    stdout: bytes
    stderr: bytes
    done: bool
    exit_code: int | None


class StreamingCommand:
    """A device script running in an open shell, fed and read one WinRM round trip at a time.

    `send` is one Send (at most `chunk_bytes` of data); `receive` is one Receive, which the device holds until it has
    output or its OperationTimeout passes (then the output is empty). Every failure is a DeviceError.
    """

    def __init__(self, settings: WinRMSettings, protocol: t.Any, shell_id: str, command_id: str, envelope: int) -> None:
        self._settings = settings
        self._protocol = protocol
        self._shell_id = shell_id
        self.command_id = command_id
        self.envelope = envelope
        self.chunk_bytes = send_chunk_bytes(envelope)
        self.done = False
        self.exit_code: int | None = None

    def _envelope(self, action: str, body: str) -> str:
        # pywinrm always asks for 150 KiB responses; a device that allows more sends fewer, larger ones.
        return envelope(action, operation_timeout=self._protocol.operation_timeout_sec, shell_id=self._shell_id,
                        body=body, max_envelope=self.envelope)

    def send(self, data: bytes, end: bool = False) -> None:
        """One Send of `data` to the command's stdin; `end` closes stdin."""
        self.send_message(self.send_envelope(data, end))

    def send_envelope(self, data: bytes, end: bool = False) -> bytes:
        """The Send request for `data`, ready for send_message. Safe to call from another thread, so the next
        chunk can be read, hashed and encoded while the device takes the current one."""
        if len(data) > self.chunk_bytes:
            raise ValueError(f"{len(data)} bytes do not fit one Send of at most {self.chunk_bytes}")
        # The envelope is rendered around a placeholder and the base64 spliced in as bytes: hundreds of KiB of base64
        # are neither copied into the text nor escaped (base64 has nothing to escape).
        before, after = self._envelope(SEND_ACTION, send_body(self.command_id, _DATA_PLACEHOLDER, end)) \
            .split(_DATA_PLACEHOLDER)
        return b"".join((before.encode("utf-8"), base64.b64encode(data), after.encode("utf-8")))

    def send_message(self, message: bytes) -> None:
        """Sends a request send_envelope made (in the order they were made: each carries the next bytes)."""
        try:
            self._protocol.send_message(message)
        except Exception as exc:
            raise classify(exc, self._settings) from None

    def receive(self) -> StreamOutput:
        """One Receive: whatever stdout and stderr the command wrote since the last one, and whether it ended."""
        try:
            response = self._protocol.send_message(self._envelope(RECEIVE_ACTION, receive_body(self.command_id)))
        except Exception as exc:
            if HAS_WINRM and isinstance(exc, winrm.exceptions.WinRMOperationTimeoutError):
                return StreamOutput(b"", b"", False, None)  # nothing within the OperationTimeout; ask again
            raise classify(exc, self._settings) from None
        try:
            stdout, stderr, state, exit_code = parse_receive_response(response)
        except (xml.parsers.expat.ExpatError, ValueError) as exc:  # not XML, or not base64 (binascii.Error)
            raise classify(exc, self._settings) from None
        if state.endswith("/Done"):
            self.done = True
            self.exit_code = int(exit_code) if exit_code else 0
        return StreamOutput(stdout, stderr, self.done, self.exit_code)

    def terminate(self) -> None:
        """Ends the command (Signal terminate) if it still runs; a failure here is not worth reporting."""
        if self.done:
            return
        try:
            self._protocol.cleanup_command(self._shell_id, self.command_id)
        except Exception:
            pass
        self.done = True
