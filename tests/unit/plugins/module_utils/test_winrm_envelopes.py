"""The shell messages the client renders as text are pywinrm's messages, element by element, with every value
escaped; and the answers are read as pywinrm reads them."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET

import pytest
import winrm.protocol

from ansible_collections.remote_support.windows.plugins.module_utils.winrm_envelopes import WinRSProtocol

SHELL = "0B1C2D3E-AAAA-BBBB-CCCC-000000000001"
COMMAND = "0B1C2D3E-AAAA-BBBB-CCCC-000000000002"
HOSTILE = "\"<x y='1'>&amp;</x>\" ]]> \u00e9"


def answer(message: str) -> bytes:
    """What a device answers to `message`: enough for either implementation to read what it needs."""
    message_id = re.search(r"<a:MessageID>(uuid:[^<]+)</a:MessageID>", message).group(1)
    ok = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done"
    stdout = base64.b64encode(b"out").decode()
    return (
        '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
        'xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
        'xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" '
        'xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell">'
        f"<s:Header><a:RelatesTo>{message_id}</a:RelatesTo></s:Header><s:Body>"
        f'<w:Selector Name="ShellId">{SHELL}</w:Selector><rsp:CommandId>{COMMAND}</rsp:CommandId>'
        f'<rsp:ReceiveResponse><rsp:Stream Name="stdout" CommandId="{COMMAND}">{stdout}</rsp:Stream>'
        f'<rsp:CommandState CommandId="{COMMAND}" State="{ok}"><rsp:ExitCode>3</rsp:ExitCode></rsp:CommandState>'
        "</rsp:ReceiveResponse></s:Body></s:Envelope>"
    ).encode()


def recording(base):
    class Recording(base):
        def __init__(self):
            super().__init__("https://device:5986/wsman", transport="ntlm", username="u", password="p",
                             operation_timeout_sec=17, read_timeout_sec=27)
            self.sent = []

        def send_message(self, message):
            self.sent.append(message if isinstance(message, str) else message.decode())
            return answer(self.sent[-1])

    return Recording()


def tree(message: str):
    """(tag, attributes, text, children) of the whole envelope; the message id differs by design."""
    def walk(node):
        text = (node.text or "").strip()
        if node.tag.endswith("}MessageID"):
            text = "uuid:*"
        return node.tag, dict(node.attrib), text, [walk(child) for child in node]
    return walk(ET.fromstring(message.encode()))


CALLS = [
    ("open_shell", lambda p: p.open_shell(codepage=65001, noprofile=True)),
    ("run_command", lambda p: p.run_command(SHELL, "powershell.exe", ["-NoProfile", HOSTILE], skip_cmd_shell=True)),
    ("run_command without arguments", lambda p: p.run_command(SHELL, HOSTILE)),
    ("send_command_input", lambda p: p.send_command_input(SHELL, COMMAND, b"\x00\xff" + HOSTILE.encode(), end=True)),
    ("send_command_input, more to come", lambda p: p.send_command_input(SHELL, COMMAND, b"abc")),
    ("get_command_output_raw", lambda p: p.get_command_output_raw(SHELL, COMMAND)),
    ("cleanup_command", lambda p: p.cleanup_command(SHELL, COMMAND)),
    ("close_shell", lambda p: p.close_shell(SHELL)),
]


@pytest.mark.parametrize("name, call", CALLS, ids=[name for name, _call in CALLS])
def test_each_message_is_pywinrm_s_and_is_read_as_pywinrm_reads_the_answer(name, call):
    theirs, ours = recording(winrm.protocol.Protocol), recording(WinRSProtocol)
    assert call(ours) == call(theirs)
    assert len(ours.sent) == len(theirs.sent) == 1
    assert tree(ours.sent[0]) == tree(theirs.sent[0])


def test_a_receive_before_the_command_ends_has_no_exit_code():
    protocol = recording(WinRSProtocol)
    protocol.send_message = lambda message: answer(message).replace(b"CommandState/Done", b"CommandState/Running")
    assert protocol.get_command_output_raw(SHELL, COMMAND) == (b"out", b"", -1, False)


def test_forms_the_client_does_not_use_are_pywinrm_s_own():
    theirs, ours = recording(winrm.protocol.Protocol), recording(WinRSProtocol)
    for protocol in (theirs, ours):
        protocol.open_shell(working_directory="C:\\Temp", env_vars={"A": HOSTILE})
    assert tree(ours.sent[0]) == tree(theirs.sent[0])
