# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Streaming: one long-running device script fed through stdin and read through stdout, a Send or a Receive at a time
(the file transfers).

The fourth layer of the WinRM client: DeviceShell.start_stream starts the command, then StreamingCommand builds each
Send and Receive itself, so that hundreds of KiB of base64 are spliced in as bytes rather than rendered through
xmltodict, and a Receive is parsed with expat events. It uses pywinrm's Protocol for the envelope header
(build_wsman_header) and for sending (send_message); the same settings, shell and failure names as the client.
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
    import xmltodict

    HAS_WINRM = True
except ImportError:  # winrm_client reports the missing library with the install hint
    HAS_WINRM = False

from ansible_collections.remote_support.windows.plugins.module_utils.device_script import SCRIPTS_DIR, DeviceScript
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_failures import classify
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_settings import WinRMSettings


# The envelope every Windows accepts: WinRM's MaxEnvelopeSizekb before Windows 8 / Server 2012 (150), and what pywinrm
# asks for. Newer Windows default to 500 KiB; a device may allow more.
SAFE_ENVELOPE_BYTES = 153600
# Larger envelopes save little once a round trip carries hundreds of KiB, and each one is held a few times over in
# controller memory while it is encoded and encrypted.
MAX_STREAM_ENVELOPE_BYTES = 4 * 1024 * 1024
# What a Send's SOAP envelope needs besides the base64 data: headers, ids and the stream element (about 2 KiB).
SEND_ENVELOPE_OVERHEAD = 8192

SHELL_CMD_RESOURCE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"
SEND_ACTION = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Send"
RECEIVE_ACTION = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Receive"
_SHELL_NS = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
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


def parse_receive_response(response: bytes) -> tuple[bytes, bytes, str, str]:
    """A ReceiveResponse's decoded stdout and stderr, its CommandState's State ("" if none) and ExitCode text.

    Read with expat's events rather than into an ElementTree: a response carries up to MaxEnvelopeSize of base64,
    which the tree builder collects in pieces and copies, and that cost as much as decoding it. With buffered text
    each element's base64 arrives in one piece."""
    elements: dict[str, list[list[str]]] = {"stdout": [], "stderr": []}  # the text of each rsp:Stream, per stream
    exit_code: list[str] = []
    state = ""
    collecting: list[str] | None = None

    def start(name: str, attributes: dict[str, str]) -> None:
        nonlocal collecting, state
        namespace, _sep, local = name.rpartition(" ")
        if namespace != _SHELL_NS:
            return
        if local == "Stream":
            collecting = []
            elements["stdout" if attributes.get("Name") == "stdout" else "stderr"].append(collecting)
        elif local == "CommandState":
            state = attributes.get("State", "")
        elif local == "ExitCode":
            collecting = exit_code

    def end(name: str) -> None:
        nonlocal collecting
        collecting = None

    def text(data: str) -> None:
        if collecting is not None:
            collecting.append(data)

    parser = xml.parsers.expat.ParserCreate(namespace_separator=" ")
    parser.buffer_text = True
    parser.buffer_size = max(len(response), 8192)
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    parser.Parse(response, True)
    # Each rsp:Stream is base64 on its own (padding and all), so each one is decoded by itself.
    stdout, stderr = (b"".join(base64.b64decode("".join(parts)) for parts in elements[name])
                      for name in ("stdout", "stderr"))
    return stdout, stderr, state, "".join(exit_code).strip()


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

    def _envelope(self, action: str, body: dict[str, t.Any]) -> str:
        header = self._protocol.build_wsman_header(action=action, resource_uri=SHELL_CMD_RESOURCE,
                                                   shell_id=self._shell_id)
        # pywinrm always asks for 150 KiB responses; a device that allows more sends fewer, larger ones.
        header["env:Header"]["w:MaxEnvelopeSize"]["#text"] = str(self.envelope)
        header["env:Body"] = body
        return xmltodict.unparse({"env:Envelope": header})

    def send(self, data: bytes, end: bool = False) -> None:
        """One Send of `data` to the command's stdin; `end` closes stdin."""
        self.send_message(self.send_envelope(data, end))

    def send_envelope(self, data: bytes, end: bool = False) -> bytes:
        """The Send request for `data`, ready for send_message. Safe to call from another thread, so the next
        chunk can be read, hashed and encoded while the device takes the current one."""
        if len(data) > self.chunk_bytes:
            raise ValueError(f"{len(data)} bytes do not fit one Send of at most {self.chunk_bytes}")
        body = {"rsp:Send": {"rsp:Stream": {"@Name": "stdin", "@CommandId": self.command_id,
                                            "@End": "true" if end else "false", "#text": _DATA_PLACEHOLDER}}}
        # The envelope is rendered around a placeholder and the base64 spliced in as bytes: rendering (and escaping)
        # hundreds of KiB of base64 through xmltodict would cost more than the rest of the Send.
        before, after = self._envelope(SEND_ACTION, body).split(_DATA_PLACEHOLDER)
        return b"".join((before.encode("utf-8"), base64.b64encode(data), after.encode("utf-8")))

    def send_message(self, message: bytes) -> None:
        """Sends a request send_envelope made (in the order they were made: each carries the next bytes)."""
        try:
            self._protocol.send_message(message)
        except Exception as exc:
            raise classify(exc, self._settings) from None

    def receive(self) -> StreamOutput:
        """One Receive: whatever stdout and stderr the command wrote since the last one, and whether it ended."""
        body = {"rsp:Receive": {"rsp:DesiredStream": {"@CommandId": self.command_id, "#text": "stdout stderr"}}}
        try:
            response = self._protocol.send_message(self._envelope(RECEIVE_ACTION, body))
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
