# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The WS-Management messages of a WinRS shell as text, and pywinrm's Protocol sending them.

pywinrm builds every message as a dictionary and renders it with xmltodict, which checks and escapes each element
name by name: about 0.3 ms of controller CPU per message, a tenth of what a fleet spends per device. The messages a
device script needs (Create, Command, Send, Receive, Signal, Delete) have a fixed shape, so they are rendered here
from text with the same elements, namespaces and order as pywinrm's (a unit test compares both, element by element),
and every value escaped. pywinrm's Protocol.send_message sends them through its transport (winrm_http's, or
pywinrm's own for Kerberos, CredSSP and proxies) and reads the faults.

The fourth layer of the WinRM client, below winrm_client (which builds WinRSProtocol) and winrm_streaming.
"""

from __future__ import annotations

import base64
import typing as t
import uuid
import xml.etree.ElementTree as ET
import xml.parsers.expat
from xml.sax.saxutils import escape, quoteattr

try:
    import winrm.protocol

    _ProtocolBase: t.Any = winrm.protocol.Protocol
except ImportError:  # winrm_client reports the missing library with the install hint
    _ProtocolBase = object

# The envelope every Windows accepts: WinRM's MaxEnvelopeSizekb before Windows 8 / Server 2012 (150), and what pywinrm
# asks for. Newer Windows default to 500 KiB; a device may allow more.
SAFE_ENVELOPE_BYTES = 153600

SHELL_CMD_RESOURCE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"
SHELL_NS = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
CREATE_ACTION = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create"
DELETE_ACTION = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete"
COMMAND_ACTION = f"{SHELL_NS}/Command"
SEND_ACTION = f"{SHELL_NS}/Send"
RECEIVE_ACTION = f"{SHELL_NS}/Receive"
SIGNAL_ACTION = f"{SHELL_NS}/Signal"
TERMINATE_SIGNAL = f"{SHELL_NS}/signal/terminate"

_NAMESPACES = (
    'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    'xmlns:env="http://www.w3.org/2003/05/soap-envelope" '
    'xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
    'xmlns:b="http://schemas.dmtf.org/wbem/wsman/1/cimbinding.xsd" '
    'xmlns:n="http://schemas.xmlsoap.org/ws/2004/09/enumeration" '
    'xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer" '
    'xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" '
    'xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd" '
    f'xmlns:rsp="{SHELL_NS}" '
    'xmlns:cfg="http://schemas.microsoft.com/wbem/wsman/1/config"'
)


def envelope(action: str, *, operation_timeout: int, shell_id: str | None = None,
             options: t.Sequence[tuple[str, str]] = (), body: str = "", max_envelope: int = SAFE_ENVELOPE_BYTES,
             message_id: uuid.UUID | None = None) -> str:
    """One WS-Management request to the cmd shell resource. `body` is the body's inner XML, already escaped."""
    selector = (f'<w:SelectorSet><w:Selector Name="ShellId">{escape(shell_id)}</w:Selector></w:SelectorSet>'
                if shell_id else "")
    option_set = ("<w:OptionSet>" + "".join(f"<w:Option Name={quoteattr(name)}>{escape(value)}</w:Option>"
                                            for name, value in options) + "</w:OptionSet>") if options else ""
    return (
        f'<?xml version="1.0" encoding="utf-8"?>\n<env:Envelope {_NAMESPACES}><env:Header>'
        # pywinrm's address; WinRM routes by the URL the request is posted to.
        "<a:To>http://windows-host:5985/wsman</a:To>"
        '<a:ReplyTo><a:Address mustUnderstand="true">'
        "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address></a:ReplyTo>"
        f'<w:MaxEnvelopeSize mustUnderstand="true">{int(max_envelope)}</w:MaxEnvelopeSize>'
        f"<a:MessageID>uuid:{message_id or uuid.uuid4()}</a:MessageID>"
        '<w:Locale mustUnderstand="false" xml:lang="en-US"></w:Locale>'
        '<p:DataLocale mustUnderstand="false" xml:lang="en-US"></p:DataLocale>'
        f"<w:OperationTimeout>PT{int(operation_timeout)}S</w:OperationTimeout>"
        f'<w:ResourceURI mustUnderstand="true">{SHELL_CMD_RESOURCE}</w:ResourceURI>'
        f'<a:Action mustUnderstand="true">{escape(action)}</a:Action>'
        f"{selector}{option_set}</env:Header><env:Body>{body}</env:Body></env:Envelope>"
    )


def send_body(command_id: str, data_placeholder: str, end: bool) -> str:
    """A Send's body around `data_placeholder`, where the caller splices the base64 in as bytes."""
    return (f'<rsp:Send><rsp:Stream Name="stdin" CommandId={quoteattr(command_id)} End="{"true" if end else "false"}">'
            f"{data_placeholder}</rsp:Stream></rsp:Send>")


def receive_body(command_id: str) -> str:
    return f'<rsp:Receive><rsp:DesiredStream CommandId={quoteattr(command_id)}>stdout stderr</rsp:DesiredStream>' \
           "</rsp:Receive>"


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
        if namespace != SHELL_NS:
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


def _selector_text(response: bytes, local_name: str) -> str:
    """The text of the first element named `local_name` (any namespace), or of the Selector whose Name it is."""
    for node in ET.fromstring(response).iter():
        if node.tag.rpartition("}")[2] == local_name or node.get("Name") == local_name:
            return node.text or ""
    raise ValueError(f"the device's answer has no {local_name}")


class WinRSProtocol(_ProtocolBase):
    """pywinrm's Protocol whose shell messages are rendered by `envelope`; everything else is pywinrm's own.

    Only the forms the collection uses are rendered here; any other (a working directory, environment variables)
    goes to pywinrm's own method."""

    def open_shell(self, i_stream: str = "stdin", o_stream: str = "stdout stderr", working_directory: t.Any = None,
                   env_vars: t.Any = None, noprofile: bool = False, codepage: int = 437, lifetime: t.Any = None,
                   idle_timeout: t.Any = None) -> str:
        if working_directory or env_vars or lifetime or idle_timeout:
            return str(super().open_shell(i_stream, o_stream, working_directory, env_vars, noprofile, codepage,
                                          lifetime, idle_timeout))
        body = (f"<rsp:Shell><rsp:InputStreams>{escape(i_stream)}</rsp:InputStreams>"
                f"<rsp:OutputStreams>{escape(o_stream)}</rsp:OutputStreams></rsp:Shell>")
        options = (("WINRS_NOPROFILE", str(noprofile).upper()), ("WINRS_CODEPAGE", str(codepage)))
        return _selector_text(self.send_message(self._envelope(CREATE_ACTION, None, body, options)), "ShellId")

    def run_command(self, shell_id: str, command: str, arguments: t.Iterable[str | bytes] = (),
                    console_mode_stdin: bool = True, skip_cmd_shell: bool = False) -> str:
        joined = " ".join(a if isinstance(a, str) else a.decode("utf-8") for a in arguments)
        body = (f"<rsp:CommandLine><rsp:Command>{escape(command)}</rsp:Command>"
                + (f"<rsp:Arguments>{escape(joined)}</rsp:Arguments>" if joined else "") + "</rsp:CommandLine>")
        options = (("WINRS_CONSOLEMODE_STDIN", str(console_mode_stdin).upper()),
                   ("WINRS_SKIP_CMD_SHELL", str(skip_cmd_shell).upper()))
        return _selector_text(self.send_message(self._envelope(COMMAND_ACTION, shell_id, body, options)), "CommandId")

    def send_command_input(self, shell_id: str, command_id: str, stdin_input: str | bytes, end: bool = False) -> None:
        data = stdin_input.encode("437") if isinstance(stdin_input, str) else stdin_input
        body = send_body(command_id, base64.b64encode(data).decode("ascii"), end)
        self.send_message(self._envelope(SEND_ACTION, shell_id, body))

    def get_command_output_raw(self, shell_id: str, command_id: str) -> tuple[bytes, bytes, int, bool]:
        response = self.send_message(self._envelope(RECEIVE_ACTION, shell_id, receive_body(command_id)))
        stdout, stderr, state, exit_code = parse_receive_response(response)
        done = state.endswith("CommandState/Done")
        return stdout, stderr, int(exit_code) if done and exit_code else -1, done

    def cleanup_command(self, shell_id: str, command_id: str) -> None:
        body = (f"<rsp:Signal CommandId={quoteattr(command_id)}><rsp:Code>{TERMINATE_SIGNAL}</rsp:Code>"
                "</rsp:Signal>")
        self.send_message(self._envelope(SIGNAL_ACTION, shell_id, body))

    def close_shell(self, shell_id: str, close_session: bool = True) -> None:
        try:
            self.send_message(self._envelope(DELETE_ACTION, shell_id, ""))
        finally:
            if close_session:  # as pywinrm: no connection of this shell goes back to a pool
                self.transport.close_session()

    def _envelope(self, action: str, shell_id: str | None, body: str,
                  options: t.Sequence[tuple[str, str]] = ()) -> str:
        return envelope(action, operation_timeout=self.operation_timeout_sec, shell_id=shell_id, options=options,
                        body=body, max_envelope=self.max_env_sz)
