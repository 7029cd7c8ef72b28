# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The WinRM client's streaming API: the requests it builds (checked as XML, as a WinRM service reads them), what it
makes of the responses, and how it names failures. pywinrm's Protocol is replaced by a recorder."""

from __future__ import annotations

import base64
import json
import types
import xml.etree.ElementTree as ET

import pytest
import winrm.exceptions

from ansible_collections.remote_support.windows.plugins.module_utils.errors import DeviceError
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_client import WinRMClient
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_settings import resolve_settings
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_streaming import (
    SAFE_ENVELOPE_BYTES,
    envelope_bytes,
    parse_receive_response,
    send_chunk_bytes,
    stream_command_arguments,
    stream_header,
)

NS = {"s": "http://www.w3.org/2003/05/soap-envelope", "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
      "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
      "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing"}
CMD = "11111111-2222-3333-4444-555555555555"


class Recorder:
    """Stands in for pywinrm's Protocol: recorded messages, scripted answers."""

    def __init__(self, answers=()):
        self.sent = []
        self.answers = list(answers)
        self.operation_timeout_sec = 20
        self.cleaned = []

    def open_shell(self, **_kw):
        return "SHELL-1"

    def close_shell(self, shell_id):
        pass

    def run_command(self, shell_id, command, arguments, skip_cmd_shell=False):
        self.command = (command, arguments, skip_cmd_shell)
        return CMD

    def cleanup_command(self, shell_id, command_id):
        self.cleaned.append(command_id)

    def send_message(self, message):
        self.sent.append(message if isinstance(message, bytes) else message.encode())
        if self.answers:
            answer = self.answers.pop(0)
            if isinstance(answer, BaseException):
                raise answer
            return answer
        return b"<s:Envelope xmlns:s='http://www.w3.org/2003/05/soap-envelope'/>"


def client_with(recorder):
    settings = resolve_settings({}, {"ansible_host": "10.0.0.5", "ansible_user": "u", "ansible_password": "p"}, "d")
    return WinRMClient(settings, protocol_factory=lambda **kw: recorder)


def receive_response(stdout=b"", stderr=b"", done=False, exit_code=0):
    parts = []
    for name, data in (("stdout", stdout), ("stderr", stderr)):
        if data:
            parts.append(f'<rsp:Stream Name="{name}" CommandId="{CMD}">{base64.b64encode(data).decode()}</rsp:Stream>')
    state = "Done" if done else "Running"
    code = f"<rsp:ExitCode>{exit_code}</rsp:ExitCode>" if done else ""
    parts.append(f'<rsp:CommandState CommandId="{CMD}" State="http://schemas.microsoft.com/wbem/wsman/1/windows/'
                 f'shell/CommandState/{state}">{code}</rsp:CommandState>')
    return (f'<s:Envelope xmlns:s="{NS["s"]}" xmlns:rsp="{NS["rsp"]}"><s:Body><rsp:ReceiveResponse>'
            f'{"".join(parts)}</rsp:ReceiveResponse></s:Body></s:Envelope>').encode()


SCRIPT = types.SimpleNamespace(name="file_transfer_send", text="# device-script: file_transfer_send\n$x = 1\n")


def test_chunks_follow_the_envelope():
    assert envelope_bytes(None) == SAFE_ENVELOPE_BYTES == 153600
    assert envelope_bytes(500) == 512000 and envelope_bytes(8192) == 4 * 1024 * 1024 and envelope_bytes(1) == 32768
    assert send_chunk_bytes(512000) == 377856


def test_the_header_is_a_length_then_json_and_the_script_runs_through_the_streaming_bootstrap():
    header = stream_header(SCRIPT, {"path": "C:\\Users\\ação.txt"})
    length, body = header.split(b"\n", 1)
    assert int(length) == len(body)
    assert json.loads(body) == {"script": SCRIPT.text, "input": {"path": "C:\\Users\\ação.txt"}}
    arguments = stream_command_arguments()
    decoded = base64.b64decode(arguments[-1]).decode("utf-16-le")
    assert arguments[-2] == "-EncodedCommand" and "OpenStandardInput()" in decoded and "ReadToEnd()" not in decoded


def test_start_sends_the_header_and_sends_carry_data_as_windows_reads_it():
    recorder = Recorder()
    with client_with(recorder).shell() as shell:
        command = shell.start_stream(SCRIPT, {"a": 1}, envelope=64 * 1024)
        data = bytes(range(256)) * 100
        command.send(data, end=True)
    assert recorder.command[0] == "powershell.exe" and recorder.command[2] is True
    header_send, data_send = (ET.fromstring(m) for m in recorder.sent)
    streams = [e.find("s:Body/rsp:Send/rsp:Stream", NS) for e in (header_send, data_send)]
    assert base64.b64decode(streams[0].text) == stream_header(SCRIPT, {"a": 1})
    assert streams[0].get("End") == "false" and streams[1].get("End") == "true"
    assert base64.b64decode(streams[1].text) == data and streams[1].get("CommandId") == CMD
    assert data_send.find("s:Header/w:MaxEnvelopeSize", NS).text == str(64 * 1024)
    assert data_send.find("s:Header/a:Action", NS).text.endswith("/shell/Send")
    assert all(len(m) <= 64 * 1024 for m in recorder.sent)


def test_a_header_larger_than_a_send_goes_in_pieces():
    recorder = Recorder()
    big = types.SimpleNamespace(name="x", text="# " + "y" * 100_000)
    with client_with(recorder).shell() as shell:
        shell.start_stream(big, {}, envelope=32 * 1024)
    sent = b"".join(base64.b64decode(ET.fromstring(m).find("s:Body/rsp:Send/rsp:Stream", NS).text)
                    for m in recorder.sent)
    assert len(recorder.sent) > 3 and sent == stream_header(big, {})


def test_a_send_never_exceeds_the_envelope():
    recorder = Recorder()
    with client_with(recorder).shell() as shell:
        command = shell.start_stream(SCRIPT, {}, envelope=32 * 1024)
        with pytest.raises(ValueError):
            command.send(b"x" * (command.chunk_bytes + 1))


def test_receive_reads_output_and_the_end():
    recorder = Recorder([b"", receive_response(stdout=b'{"kind":"ready"}\n'),
                         winrm.exceptions.WinRMOperationTimeoutError(),
                         receive_response(stdout=b"\x00\x01binary", stderr=b"oops", done=True, exit_code=1)])
    with client_with(recorder).shell() as shell:
        command = shell.start_stream(SCRIPT, {}, envelope=SAFE_ENVELOPE_BYTES)
        first = command.receive()
        assert (first.stdout, first.done) == (b'{"kind":"ready"}\n', False)
        quiet = command.receive()  # nothing within the OperationTimeout
        assert (quiet.stdout, quiet.stderr, quiet.done) == (b"", b"", False)
        last = command.receive()
        assert (last.stdout, last.stderr, last.done, last.exit_code) == (b"\x00\x01binary", b"oops", True, 1)
        assert command.done
        command.terminate()  # already ended: no Signal
    receive = ET.fromstring(recorder.sent[1])
    assert receive.find("s:Body/rsp:Receive/rsp:DesiredStream", NS).get("CommandId") == CMD
    assert receive.find("s:Header/w:MaxEnvelopeSize", NS).text == str(SAFE_ENVELOPE_BYTES)
    assert recorder.cleaned == []


def test_failures_are_named():
    lost = winrm.exceptions.WinRMTransportError("http", 500, "")
    recorder = Recorder([b"", lost])
    with client_with(recorder).shell() as shell:
        command = shell.start_stream(SCRIPT, {})
        with pytest.raises(DeviceError) as caught:
            command.send(b"data")
        assert caught.value.reason == "protocol"
        command.terminate()
    assert recorder.cleaned == [CMD]


def test_a_receive_response_in_several_stream_elements_and_with_the_windows_prefixes():
    # Windows may answer with more than one rsp:Stream per stream, each padded base64 of its own; only elements in the
    # shell namespace count, whatever their prefix.
    pieces = [b"a", b"bc", b"\xff" * 1000]
    streams = "".join(f'<w:Stream Name="stdout" CommandId="{CMD}">{base64.b64encode(p).decode()}</w:Stream>'
                      for p in pieces)
    response = (f'<s:Envelope xmlns:s="{NS["s"]}" xmlns:w="{NS["rsp"]}" xmlns:o="urn:other"><s:Body>'
                f'<w:ReceiveResponse>{streams}<o:Stream Name="stdout">{base64.b64encode(b"not mine").decode()}'
                f'</o:Stream><w:Stream Name="stderr" CommandId="{CMD}">{base64.b64encode(b"err").decode()}</w:Stream>'
                f'<w:Stream Name="stdout" CommandId="{CMD}" End="true"></w:Stream>'
                f'<w:CommandState CommandId="{CMD}" State="http://schemas.microsoft.com/wbem/wsman/1/windows/shell/'
                'CommandState/Done"><w:ExitCode> 3 </w:ExitCode></w:CommandState></w:ReceiveResponse></s:Body>'
                '</s:Envelope>').encode()
    stdout, stderr, state, exit_code = parse_receive_response(response)
    assert stdout == b"".join(pieces)
    assert stderr == b"err"
    assert state.endswith("/CommandState/Done") and exit_code == "3"


@pytest.mark.parametrize("response", [b"<s:Envelope", receive_response(stdout=b"x").replace(b"eA==", b"eA")],
                         ids=["not-xml", "not-base64"])
def test_a_receive_response_that_cannot_be_read_is_a_named_failure(response):
    recorder = Recorder([b"", response])
    with client_with(recorder).shell() as shell:
        command = shell.start_stream(SCRIPT, {})
        with pytest.raises(DeviceError) as caught:
            command.receive()
        assert caught.value.reason == "protocol"
        command.terminate()
