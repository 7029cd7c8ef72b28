"""The WinRS shell resource (MS-WSMV 3.1.4.x): Create, Command, Send, Receive, Signal, Delete.

A `WinRSService` holds every shell of every device one LabServer serves. Shells belong to the user who created them;
another user's shell id is answered as if it did not exist. Commands are started through `emulation.start_command`
and driven through `process.Process`; a Receive waits up to the request's OperationTimeout for output and otherwise
answers w:TimedOut, so clients poll while the command keeps running.
"""

from __future__ import annotations

import binascii
import codecs
import dataclasses
import typing as t
import uuid
from xml.sax.saxutils import escape, quoteattr

import pybase64

from . import wsman
from .emulation import start_command
from .process import Identity, Process, codepage_encoding, windows_account_name
from .wsman import NS, WSManRequest

SHELL_CMD_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"
SHELL_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"  # the shell table (Get by ShellId)
CONFIG_URI = "http://schemas.microsoft.com/wbem/wsman/1/config"

TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer/"
SHELL_ACTIONS = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/"
ACTION_CREATE = TRANSFER + "Create"
ACTION_DELETE = TRANSFER + "Delete"
ACTION_GET = TRANSFER + "Get"
ACTION_COMMAND = SHELL_ACTIONS + "Command"
ACTION_SEND = SHELL_ACTIONS + "Send"
ACTION_RECEIVE = SHELL_ACTIONS + "Receive"
ACTION_SIGNAL = SHELL_ACTIONS + "Signal"

STATE_RUNNING = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Running"
STATE_DONE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done"

# The default client envelope (pywinrm and pypsrp both ask for 150 KiB) when a request names none.
DEFAULT_MAX_ENVELOPE = 153600
# What a ReceiveResponse needs besides the base64 stream text: envelope, headers, and three rsp:Stream elements
# plus rsp:CommandState. Measured at ~1,150 bytes; the rest is margin for long ids.
RECEIVE_ENVELOPE_OVERHEAD = 2048
DEFAULT_CODEPAGE = 437  # OEM codepage of an en-US Windows


def _rsp(name: str) -> str:
    return f"{{{NS['rsp']}}}{name}"


@dataclasses.dataclass
class Caller:
    """Who sent a request, as the shell layer needs to know."""

    user: str  # DOMAIN\user (HOST\user for local accounts)
    client_ip: str
    endpoint: str  # the URL the client used, echoed in ResourceCreated


@dataclasses.dataclass
class Command:
    id: str
    process: Process


@dataclasses.dataclass
class Shell:
    id: str
    owner: str
    client_ip: str
    codepage: int
    environment: dict[str, str]
    working_directory: str
    idle_timeout: float  # seconds
    input_streams: str
    output_streams: str
    no_profile: bool
    created_at: float  # device clock
    last_activity: float  # device clock
    # What the client set in Create, echoed in the Shell that Create and Get return (MS-WSMV 2.2.4.37; Windows
    # reports the environment variables the user set and the starting directory of each shell).
    requested_environment: dict[str, str] = dataclasses.field(default_factory=dict)
    requested_working_directory: str | None = None
    commands: dict[str, Command] = dataclasses.field(default_factory=dict)
    busy: int = 0  # requests in progress (a long Receive is activity too)

    def terminate(self) -> None:
        for command in self.commands.values():
            command.process.signal("terminate")
        self.commands.clear()

    def describe(self, now: float) -> str:
        # Elements in the order of the Shell type's xs:sequence (MS-WSMV 2.2.4.37).
        environment = "".join(f"<rsp:Variable Name={quoteattr(name)}>{escape(value)}</rsp:Variable>"
                              for name, value in self.requested_environment.items())
        return (f'<rsp:Shell xmlns:rsp="{NS["rsp"]}">'
                f"<rsp:ShellId>{self.id}</rsp:ShellId>"
                f"<rsp:ResourceUri>{SHELL_CMD_URI}</rsp:ResourceUri>"
                f"<rsp:Owner>{escape(self.owner)}</rsp:Owner>"
                f"<rsp:ClientIP>{escape(self.client_ip)}</rsp:ClientIP>"
                + (f"<rsp:Environment>{environment}</rsp:Environment>" if environment else "")
                + (f"<rsp:WorkingDirectory>{escape(self.requested_working_directory)}</rsp:WorkingDirectory>"
                   if self.requested_working_directory is not None else "") +
                f"<rsp:IdleTimeOut>{wsman.format_duration(self.idle_timeout)}</rsp:IdleTimeOut>"
                f"<rsp:InputStreams>{escape(self.input_streams)}</rsp:InputStreams>"
                f"<rsp:OutputStreams>{escape(self.output_streams)}</rsp:OutputStreams>"
                f"<rsp:ShellRunTime>{_day_duration(now - self.created_at)}</rsp:ShellRunTime>"
                f"<rsp:ShellInactivity>{_day_duration(now - self.last_activity)}</rsp:ShellInactivity>"
                "</rsp:Shell>")


def _day_duration(seconds: float) -> str:
    """P0DT0H0M12S, the form Windows uses for ShellRunTime and ShellInactivity."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"P{days}DT{hours}H{minutes}M{secs}S"


def _new_id() -> str:
    return str(uuid.uuid4()).upper()


def default_environment(device: t.Any, owner: str) -> dict[str, str]:
    """The environment a WinRS shell starts with on Windows: the system variables plus the user's profile ones."""
    domain, _, user = owner.rpartition("\\")
    profile = rf"C:\Users\{user}"
    return {
        "ALLUSERSPROFILE": r"C:\ProgramData",
        "APPDATA": profile + r"\AppData\Roaming",
        "CommonProgramFiles": r"C:\Program Files\Common Files",
        "COMPUTERNAME": device.name,
        "ComSpec": r"C:\Windows\system32\cmd.exe",
        "HOMEDRIVE": "C:",
        "HOMEPATH": rf"\Users\{user}",
        "LOCALAPPDATA": profile + r"\AppData\Local",
        "NUMBER_OF_PROCESSORS": "2",
        "OS": "Windows_NT",
        "Path": r"C:\Windows\system32;C:\Windows;C:\Windows\System32\Wbem;"
                r"C:\Windows\System32\WindowsPowerShell\v1.0\;" + profile + r"\AppData\Local\Microsoft\WindowsApps",
        "PATHEXT": ".COM;.EXE;.BAT;.CMD;.VBS;.VBE;.JS;.JSE;.WSF;.WSH;.MSC",
        "PROCESSOR_ARCHITECTURE": "AMD64",
        "ProgramData": r"C:\ProgramData",
        "ProgramFiles": r"C:\Program Files",
        "ProgramFiles(x86)": r"C:\Program Files (x86)",
        "PROMPT": "$P$G",
        "PSModulePath": r"C:\Windows\system32\WindowsPowerShell\v1.0\Modules\\",
        "PUBLIC": r"C:\Users\Public",
        "SystemDrive": "C:",
        "SystemRoot": r"C:\Windows",
        "TEMP": profile + r"\AppData\Local\Temp",
        "TMP": profile + r"\AppData\Local\Temp",
        "USERDOMAIN": domain or device.name,
        "USERNAME": user,
        "USERPROFILE": profile,
        "windir": r"C:\Windows",
    }


class WinRSService:
    """Every WinRS shell of the devices one LabServer serves."""

    def __init__(self) -> None:
        self._shells: dict[str, dict[str, Shell]] = {}  # device name -> shell id -> shell

    def shells(self, device: t.Any) -> list[Shell]:
        return list(self._shells.get(device.name, {}).values())

    # Dispatch -------------------------------------------------------------------------------------------------
    async def handle(self, device: t.Any, caller: Caller, request: WSManRequest) -> bytes:
        """The response envelope for one request; raises WSManFault for the faults Windows answers."""
        resource = request.resource_uri.rstrip("/").lower()
        action = request.action
        if resource == SHELL_CMD_URI.lower():
            handler = {
                ACTION_CREATE: self._create, ACTION_DELETE: self._delete, ACTION_COMMAND: self._command,
                ACTION_SEND: self._send, ACTION_RECEIVE: self._receive, ACTION_SIGNAL: self._signal,
            }.get(action)
            if handler is None:
                raise wsman.action_not_supported(action)
            return await handler(device, caller, request)
        if resource == SHELL_URI.lower():
            if action != ACTION_GET:
                raise wsman.action_not_supported(action)
            shell = self._shell(device, caller, request)
            return wsman.render_response(request, shell.describe(device.clock.timestamp()))
        if resource == CONFIG_URI.lower():
            if action != ACTION_GET:
                raise wsman.action_not_supported(action)
            return wsman.render_response(request, _config(device))
        raise wsman.resource_uri_not_found(request.resource_uri)

    def _shell(self, device: t.Any, caller: Caller, request: WSManRequest) -> Shell:
        shell_id = request.selector("ShellId") or ""
        shell = self._shells.get(device.name, {}).get(shell_id.upper())
        if shell is None or shell.owner.lower() != caller.user.lower():
            raise wsman.shell_not_found(shell_id)
        shell.last_activity = device.clock.timestamp()
        return shell

    # Create / Delete ------------------------------------------------------------------------------------------
    async def _create(self, device: t.Any, caller: Caller, request: WSManRequest) -> bytes:
        shells = self._shells.setdefault(device.name, {})
        self.expire_idle(device)
        owned = sum(1 for s in shells.values() if s.owner.lower() == caller.user.lower())
        if owned >= device.service.max_shells_per_user:
            raise wsman.max_shells_exceeded(device.service.max_shells_per_user)

        body = request.body
        if body is None or body.tag != _rsp("Shell"):
            raise wsman.schema_validation_error("The Create request for a Windows Remote Shell has no rsp:Shell.")
        codepage = _codepage(request.options.get("WINRS_CODEPAGE"))
        environment = default_environment(device, caller.user)
        requested: dict[str, str] = {}
        env_element = body.find(_rsp("Environment"))
        if env_element is not None:
            for variable in env_element.findall(_rsp("Variable")):
                _set_variable(environment, variable.get("Name", ""), variable.text or "")
                _set_variable(requested, variable.get("Name", ""), variable.text or "")
        configured_idle = device.service.idle_timeout_ms / 1000
        idle = configured_idle
        idle_element = body.find(_rsp("IdleTimeOut"))
        if idle_element is not None and idle_element.text:
            try:
                # The client may ask for less than winrs/IdleTimeout, not for more.
                idle = min(wsman.parse_duration(idle_element.text), configured_idle)
            except ValueError:
                raise wsman.invalid_parameter() from None
        requested_directory = _text(body, "WorkingDirectory")
        working_directory = requested_directory or environment["USERPROFILE"]
        shell_id = (body.get("ShellId") or _new_id()).upper()
        if shell_id in shells:
            raise wsman.invalid_parameter()
        now = device.clock.timestamp()
        shell = Shell(
            id=shell_id, owner=caller.user, client_ip=caller.client_ip, codepage=codepage,
            environment=environment, working_directory=working_directory, idle_timeout=idle,
            input_streams=_text(body, "InputStreams") or "stdin",
            output_streams=_text(body, "OutputStreams") or "stdout stderr",
            no_profile=request.option_flag("WINRS_NOPROFILE"), created_at=now, last_activity=now,
            requested_environment=requested, requested_working_directory=requested_directory,
        )
        shells[shell_id] = shell
        created = (
            "<x:ResourceCreated>"
            f"<a:Address>{escape(caller.endpoint)}</a:Address>"
            "<a:ReferenceParameters>"
            f"<w:ResourceURI>{SHELL_CMD_URI}</w:ResourceURI>"
            f'<w:SelectorSet><w:Selector Name="ShellId">{shell_id}</w:Selector></w:SelectorSet>'
            "</a:ReferenceParameters>"
            "</x:ResourceCreated>"
        )
        return wsman.render_response(request, created + shell.describe(now))

    async def _delete(self, device: t.Any, caller: Caller, request: WSManRequest) -> bytes:
        shell = self._shell(device, caller, request)
        self._shells[device.name].pop(shell.id, None)
        shell.terminate()
        return wsman.render_response(request, "")

    # Command / Send / Receive / Signal ------------------------------------------------------------------------
    async def _command(self, device: t.Any, caller: Caller, request: WSManRequest) -> bytes:
        shell = self._shell(device, caller, request)
        body = request.body
        if body is None or body.tag != _rsp("CommandLine"):
            raise wsman.schema_validation_error("The Command request has no rsp:CommandLine.")
        command_text = (_text(body, "Command") or "").strip()
        if not command_text:
            raise wsman.invalid_parameter()  # as Windows answers an empty rsp:Command
        arguments = [element.text or "" for element in body.findall(_rsp("Arguments"))]
        command_id = (body.get("CommandId") or _new_id()).upper()
        if command_id in shell.commands:
            raise wsman.invalid_parameter()
        try:
            process = start_command(
                device, command_text, arguments,
                skip_cmd_shell=request.option_flag("WINRS_SKIP_CMD_SHELL"),
                codepage=shell.codepage, environment=dict(shell.environment),
                working_directory=shell.working_directory,
                # As Windows runs it: as the account that authenticated, in session 0.
                identity=Identity(windows_account_name(shell.owner)),
            )
        except FileNotFoundError:
            raise wsman.executable_not_found() from None
        shell.commands[command_id] = Command(command_id, process)
        return wsman.render_response(
            request, f"<rsp:CommandResponse><rsp:CommandId>{command_id}</rsp:CommandId></rsp:CommandResponse>")

    def _command_for(self, shell: Shell, command_id: str | None) -> Command:
        """The command a Send or Receive names. A missing CommandId is the cmd plugin's recorded w:InvalidParameter
        (87); no Windows answer to an unknown one in a Send or Receive is recorded, and the lab answers it the same."""
        if not command_id:
            raise wsman.invalid_parameter()
        command = shell.commands.get(command_id.upper())
        if command is None:
            raise wsman.invalid_parameter()
        return command

    async def _send(self, device: t.Any, caller: Caller, request: WSManRequest) -> bytes:
        shell = self._shell(device, caller, request)
        body = request.body
        if body is None or body.tag != _rsp("Send"):
            raise wsman.schema_validation_error("The Send request has no rsp:Send.")
        for stream in body.findall(_rsp("Stream")):
            command = self._command_for(shell, stream.get("CommandId"))
            try:
                # pybase64 (SIMD) rather than the stdlib: decoding is per byte, and Windows does it natively.
                data = pybase64.b64decode((stream.text or "").strip(), validate=True)
            except (binascii.Error, ValueError):
                raise wsman.invalid_parameter() from None
            end = (stream.get("End") or "").strip().lower() in ("true", "1")
            await command.process.send_stdin(data, end)
        return wsman.render_response(request, "<rsp:SendResponse/>")

    async def _receive(self, device: t.Any, caller: Caller, request: WSManRequest) -> bytes:
        shell = self._shell(device, caller, request)
        body = request.body
        desired = body.find(_rsp("DesiredStream")) if body is not None and body.tag == _rsp("Receive") else None
        if desired is None:
            raise wsman.schema_validation_error("The Receive request has no rsp:DesiredStream.")
        command = self._command_for(shell, desired.get("CommandId"))
        timeout = request.operation_timeout if request.operation_timeout is not None else 60.0
        timeout = min(timeout, device.service.max_timeout_ms / 1000)
        envelope = min(request.max_envelope_size or DEFAULT_MAX_ENVELOPE, device.service.max_envelope_size_kb * 1024)
        # base64 grows 4/3; keep whole 3-byte groups so each stream element decodes on its own.
        max_bytes = max(3, (envelope - RECEIVE_ENVELOPE_OVERHEAD) * 3 // 4 // 3 * 3)
        shell.busy += 1
        try:
            result = await command.process.receive(timeout, max_bytes)
        finally:
            shell.busy -= 1
            shell.last_activity = device.clock.timestamp()
        if result is None:
            raise wsman.operation_timed_out()
        cid = command.id
        parts = []
        for name, data in (("stdout", result.stdout), ("stderr", result.stderr)):
            if data:
                encoded = pybase64.b64encode(data).decode()
                parts.append(f'<rsp:Stream Name="{name}" CommandId="{cid}">{encoded}</rsp:Stream>')
        if result.done:
            parts.append(f'<rsp:Stream Name="stdout" CommandId="{cid}" End="true"></rsp:Stream>')
            parts.append(f'<rsp:Stream Name="stderr" CommandId="{cid}" End="true"></rsp:Stream>')
            exit_code = result.exit_code if result.exit_code is not None else 0
            parts.append(f'<rsp:CommandState CommandId="{cid}" State="{STATE_DONE}">'
                         f"<rsp:ExitCode>{exit_code}</rsp:ExitCode></rsp:CommandState>")
        else:
            parts.append(f'<rsp:CommandState CommandId="{cid}" State="{STATE_RUNNING}"></rsp:CommandState>')
        return wsman.render_response(request, "<rsp:ReceiveResponse>" + "".join(parts) + "</rsp:ReceiveResponse>")

    async def _signal(self, device: t.Any, caller: Caller, request: WSManRequest) -> bytes:
        shell = self._shell(device, caller, request)
        body = request.body
        if body is None or body.tag != _rsp("Signal"):
            raise wsman.schema_validation_error("The Signal request has no rsp:Signal.")
        command_id = body.get("CommandId")
        if command_id and command_id.upper() not in shell.commands:
            # A Signal addresses the command as a resource: an unknown CommandId is an invalid selector there.
            raise wsman.command_not_found(shell.id, command_id)
        command = self._command_for(shell, command_id)
        code = (_text(body, "Code") or "").rsplit("/", 1)[-1].lower()
        if code not in ("terminate", "ctrl_c", "ctrl_break"):
            raise wsman.invalid_parameter()
        command.process.signal(code)
        if code == "terminate":
            # terminate ends the command for good; after ctrl_c the client still receives its exit code.
            shell.commands.pop(command.id, None)
        return wsman.render_response(request, "<rsp:SignalResponse/>")

    # Housekeeping ---------------------------------------------------------------------------------------------
    def expire_idle(self, device: t.Any | None = None, devices: t.Iterable[t.Any] = ()) -> int:
        """Drops shells idle for longer than their IdleTimeOut (by the device's clock). Returns how many."""
        dropped = 0
        for dev in ([device] if device is not None else list(devices)):
            shells = self._shells.get(dev.name)
            if not shells:
                continue
            now = dev.clock.timestamp()
            for shell in list(shells.values()):
                if shell.busy == 0 and now - shell.last_activity > shell.idle_timeout:
                    shells.pop(shell.id, None)
                    shell.terminate()
                    dropped += 1
        return dropped

    def close_all(self) -> None:
        for shells in self._shells.values():
            for shell in shells.values():
                shell.terminate()
        self._shells.clear()


def _text(parent: t.Any, name: str) -> str | None:
    element = parent.find(_rsp(name))
    return element.text if element is not None else None


def _set_variable(environment: dict[str, str], name: str, value: str) -> None:
    """Windows environment names are case-insensitive: replace an existing variable whatever its case."""
    if not name:
        return
    for existing in list(environment):
        if existing.lower() == name.lower():
            del environment[existing]
    environment[name] = value


def _codepage(value: str | None) -> int:
    if value is None or not value.strip():
        return DEFAULT_CODEPAGE
    try:
        codepage = int(value)
        codecs.lookup(codepage_encoding(codepage))
    except (ValueError, LookupError):
        raise wsman.invalid_parameter() from None
    return codepage


def _config(device: t.Any) -> str:
    """`winrm get winrm/config`, the part clients read (pypsrp's update_max_payload_size reads MaxEnvelopeSizekb)."""
    service = device.service
    return (f'<cfg:Config xmlns:cfg="{NS["cfg"]}">'
            f"<cfg:MaxEnvelopeSizekb>{service.max_envelope_size_kb}</cfg:MaxEnvelopeSizekb>"
            f"<cfg:MaxTimeoutms>{service.max_timeout_ms}</cfg:MaxTimeoutms>"
            "<cfg:MaxBatchItems>32000</cfg:MaxBatchItems>"
            "<cfg:Service>"
            f"<cfg:AllowUnencrypted>{str(service.allow_unencrypted).lower()}</cfg:AllowUnencrypted>"
            f"<cfg:Auth><cfg:Basic>{str(service.allow_basic).lower()}</cfg:Basic>"
            "<cfg:Kerberos>true</cfg:Kerberos><cfg:Negotiate>true</cfg:Negotiate>"
            "<cfg:Certificate>false</cfg:Certificate><cfg:CredSSP>false</cfg:CredSSP>"
            "<cfg:CbtHardeningLevel>Relaxed</cfg:CbtHardeningLevel></cfg:Auth>"
            "</cfg:Service>"
            "<cfg:Winrs>"
            f"<cfg:IdleTimeout>{service.idle_timeout_ms}</cfg:IdleTimeout>"
            f"<cfg:MaxShellsPerUser>{service.max_shells_per_user}</cfg:MaxShellsPerUser>"
            "</cfg:Winrs>"
            "</cfg:Config>")
