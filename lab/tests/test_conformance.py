"""The lab against two independent WinRM clients, pywinrm and pypsrp: protocol, authentication, TLS and faults.

Every assertion is about what a client saw on the wire: output bytes, exit codes, WSManFault codes, HTTP statuses,
TLS verification errors. Fault codes are the ones Windows sends (see wsman.py for the sources).
"""

from __future__ import annotations

import threading
import typing as t
import xml.etree.ElementTree as ET

import pytest
import requests
import winrm
import winrm.exceptions
from pypsrp.exceptions import AuthenticationError, WinRMTransportError, WSManFaultError
from pypsrp.shell import Process, SignalCode, WinRS
from pypsrp.wsman import WSMan

from conftest import PASSWORD, USER, Lab

SHELL_NOT_FOUND = 2150858843  # ERROR_WSMAN_UNEXPECTED_SELECTORS: an unknown ShellId, or CommandId in a Signal
FILE_NOT_FOUND = 0x80070002  # 2147942402, HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND)
OPERATION_TIMED_OUT = 2150858793
ACTION_NOT_SUPPORTED = 2150858771
RESOURCE_URI_NOT_FOUND = 2150858811
MAX_SHELLS = 2150859173
INVALID_PARAMETER = 87
CMD_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"
STATUS_CONTROL_C_EXIT = 0xC000013A


# Clients ---------------------------------------------------------------------------------------------------------

def pywinrm(lab: Lab, transport: str = "ntlm", https: bool = False, password: str = PASSWORD,
            **kwargs: t.Any) -> winrm.Protocol:
    if https:
        kwargs.setdefault("server_cert_validation", "validate")
        kwargs.setdefault("ca_trust_path", str(lab.ca.ca_path))
    else:
        kwargs.setdefault("server_cert_validation", "ignore")
    return winrm.Protocol(lab.https_url() if https else lab.http_url(), transport=transport, username=USER,
                          password=password, **kwargs)


def pypsrp(lab: Lab, auth: str = "negotiate", https: bool = False, password: str = PASSWORD,
           **kwargs: t.Any) -> WSMan:
    device = lab.device
    if https:
        kwargs.setdefault("cert_validation", str(lab.ca.ca_path))
    return WSMan(device.address, port=device.https_port if https else device.http_port, ssl=https,
                 username=USER, password=password, auth=auth, **kwargs)


def run_pywinrm(protocol: winrm.Protocol, command: str, arguments: t.Sequence[str] = (), stdin: bytes | None = None,
                **shell: t.Any) -> tuple[bytes, bytes, int]:
    shell_id = protocol.open_shell(**shell)
    try:
        command_id = protocol.run_command(shell_id, command, list(arguments))
        if stdin is not None:
            protocol.send_command_input(shell_id, command_id, stdin, end=True)
        result = protocol.get_command_output(shell_id, command_id)
        protocol.cleanup_command(shell_id, command_id)
        return result
    finally:
        protocol.close_shell(shell_id)


def run_pypsrp(wsman: WSMan, command: str, arguments: t.Sequence[str] = (), stdin: bytes | None = None,
               **shell: t.Any) -> tuple[bytes, bytes, int]:
    with wsman, WinRS(wsman, **shell) as winrs:
        process = Process(winrs, command, list(arguments))
        process.begin_invoke()
        if stdin is not None:
            process.send(stdin, end=True)
        process.end_invoke()
        process.signal(SignalCode.TERMINATE)
        assert process.rc is not None
        return process.stdout, process.stderr, process.rc


def _pywinrm_client(lab: Lab, command: str, arguments: t.Sequence[str] = (), stdin: bytes | None = None,
                    env: dict[str, str] | None = None) -> tuple[bytes, bytes, int]:
    return run_pywinrm(pywinrm(lab), command, arguments, stdin, env_vars=env)


def _pypsrp_client(lab: Lab, command: str, arguments: t.Sequence[str] = (), stdin: bytes | None = None,
                   env: dict[str, str] | None = None) -> tuple[bytes, bytes, int]:
    return run_pypsrp(pypsrp(lab), command, arguments, stdin, environment=env)


CLIENTS = {"pywinrm": _pywinrm_client, "pypsrp": _pypsrp_client}


@pytest.fixture(params=sorted(CLIENTS))
def run(request: pytest.FixtureRequest, lab: Lab) -> t.Callable[..., tuple[bytes, bytes, int]]:
    """run(command, arguments, stdin=None, env=None) through one client, over NTLM-encrypted HTTP."""
    client = CLIENTS[request.param]
    return lambda *args, **kwargs: client(lab, *args, **kwargs)


def raw_post(url: str, body: bytes = b"", timeout: float = 10.0, **kwargs: t.Any) -> requests.Response:
    headers = {"Content-Type": "application/soap+xml;charset=UTF-8"}
    return requests.post(url, data=body, timeout=timeout, headers=headers, **kwargs)


# Shells and commands ---------------------------------------------------------------------------------------------

def test_pywinrm_opens_and_closes_a_shell_and_the_closed_shell_is_gone(lab: Lab) -> None:
    protocol = pywinrm(lab)
    shell_id = protocol.open_shell()
    assert [s.id for s in lab.server.winrs.shells(lab.device)] == [shell_id]
    assert lab.server.winrs.shells(lab.device)[0].owner == f"{lab.device.name}\\{USER}"
    protocol.close_shell(shell_id, close_session=False)
    assert lab.server.winrs.shells(lab.device) == []
    with pytest.raises(winrm.exceptions.WSManFaultError) as error:
        protocol.run_command(shell_id, "hostname")
    assert error.value.wsman_fault_code == SHELL_NOT_FOUND
    assert error.value.fault_subcode == "w:InvalidSelectors"
    assert f"ShellId {shell_id} failed because the shell was not found" in error.value.response


def test_pypsrp_opens_a_shell_and_reads_its_description(lab: Lab) -> None:
    with pypsrp(lab) as wsman:
        shell = WinRS(wsman, idle_time_out=600)
        shell.open()
        assert shell.id and shell.owner == f"{lab.device.name}\\{USER}"
        assert shell.idle_time_out == "PT600.000S"
        assert shell.client_ip == "127.0.0.1"
        shell.close()
        with pytest.raises(WSManFaultError) as error:
            Process(WinRS(wsman, id=shell.id), "hostname").begin_invoke()
    assert error.value.code == SHELL_NOT_FOUND


def test_unknown_shell_id_is_the_windows_fault_for_both_clients(lab: Lab) -> None:
    bogus = "0F0F0F0F-1111-2222-3333-444444444444"
    with pytest.raises(winrm.exceptions.WSManFaultError) as error:
        pywinrm(lab).get_command_output_raw(bogus, "AAAAAAAA-0000-0000-0000-000000000000")
    assert (error.value.code, error.value.wsman_fault_code) == (500, SHELL_NOT_FOUND)
    assert error.value.fault_code == "s:Sender"

    from pypsrp.wsman import SelectorSet
    selectors = SelectorSet()
    selectors.add_option("ShellId", bogus)
    with pypsrp(lab) as wsman, pytest.raises(WSManFaultError) as fault:
        wsman.delete(CMD_URI, selector_set=selectors)
    assert fault.value.code == SHELL_NOT_FOUND
    assert bogus in fault.value.reason


def test_shells_belong_to_the_user_who_opened_them(start_lab: t.Callable[..., Lab],
                                                   make_devices: t.Callable[..., t.Any]) -> None:
    lab = start_lab(devices=make_devices(1, accounts={USER: PASSWORD, "helpdesk": "Other-Passw0rd!"}))
    owner = pywinrm(lab)
    shell_id = owner.open_shell()
    other = winrm.Protocol(lab.http_url(), transport="ntlm", username="helpdesk", password="Other-Passw0rd!",
                           server_cert_validation="ignore")
    with pytest.raises(winrm.exceptions.WSManFaultError) as error:
        other.run_command(shell_id, "hostname")
    assert error.value.wsman_fault_code == SHELL_NOT_FOUND  # another user's shell looks like no shell at all
    other.close_shell(other.open_shell())
    owner.close_shell(shell_id)


def test_command_arguments_and_shell_environment(run: t.Callable[..., t.Any]) -> None:
    stdout, stderr, code = run("echo", ["%LAB_COLOUR%", "and", "%COMPUTERNAME%"], env={"LAB_COLOUR": "teal"})
    assert (stdout, stderr, code) == (b"teal and LAB-PC0000\r\n", b"", 0)


def test_stdin_reaches_the_command(run: t.Callable[..., t.Any]) -> None:
    stdout, stderr, code = run("findstr", ["apple"], stdin=b"pear\r\napple pie\r\nplum\r\n")
    assert (stdout, stderr, code) == (b"apple pie\r\n", b"", 0)


def test_exit_code_and_stderr_of_an_unknown_command(run: t.Callable[..., t.Any]) -> None:
    stdout, stderr, code = run("frobnicate", ["--now"])
    assert stdout == b""
    assert stderr == (b"'frobnicate' is not recognized as an internal or external command,\r\n"
                      b"operable program or batch file.\r\n")
    assert code == 1


@pytest.mark.parametrize(("command", "expected_stdout", "expected_code"), [
    ("exit /b 7", b"", 7),
    ("set LAB_X=1 & echo %LAB_X%", b"%LAB_X%\r\n", 0),  # expanded once per line, as cmd does
    ("cmd /c \"set LAB_X=2 & set LAB_X\"", b"LAB_X=2\r\n", 0),
    ("echo one && echo two || echo three", b"one \r\ntwo \r\n", 0),
    ("hostname", b"LAB-PC0000\r\n", 0),
    ("whoami", b"lab-pc0000\\administrator\r\n", 0),
    ("ver", b"\r\nMicrosoft Windows [Version 10.0.19045]\r\n", 0),
    ("echo piped | more", b"piped \r\n", 0),
    ("echo quiet > nul", b"", 0),
])
def test_cmd_builtins_and_tools(lab: Lab, command: str, expected_stdout: bytes, expected_code: int) -> None:
    stdout, stderr, code = run_pywinrm(pywinrm(lab), command)
    assert (stdout, code) == (expected_stdout, expected_code), stderr


def test_type_reads_a_device_file_and_timeout_refuses_redirected_input(lab: Lab) -> None:
    target = lab.device.windows_path(r"C:\Users\Administrator\notes.txt")
    target.write_bytes(b"first line\r\nsecond line\r\n")
    assert run_pywinrm(pywinrm(lab), "type", ["notes.txt"]) == (b"first line\r\nsecond line\r\n", b"", 0)
    _, stderr, code = run_pywinrm(pywinrm(lab), "type", [r"C:\missing.txt"])
    assert (stderr, code) == (b"The system cannot find the file specified.\r\n", 1)
    _, stderr, code = run_pywinrm(pywinrm(lab), "timeout", ["/t", "5"])
    assert (stderr, code) == (b"ERROR: Input redirection is not supported, exiting the process immediately.\r\n", 1)


def test_skip_cmd_shell_runs_the_executable_or_fails_the_command(lab: Lab) -> None:
    protocol = pywinrm(lab)
    shell_id = protocol.open_shell()
    try:
        command_id = protocol.run_command(shell_id, r"C:\Windows\System32\hostname.exe", skip_cmd_shell=True)
        assert protocol.get_command_output(shell_id, command_id) == (b"LAB-PC0000\r\n", b"", 0)
        with pytest.raises(winrm.exceptions.WSManFaultError) as error:
            protocol.run_command(shell_id, "echo", ["hi"], skip_cmd_shell=True)  # a cmd built-in, no echo.exe
        assert (error.value.fault_code, error.value.fault_subcode) == ("s:Receiver", "w:InternalError")
        assert error.value.wsman_fault_code == FILE_NOT_FOUND
        assert "The system cannot find the file specified" in error.value.reason
        assert lab.server.winrs.shells(lab.device)[0].commands.keys() == {command_id}  # nothing was started
    finally:
        protocol.close_shell(shell_id)

    with pypsrp(lab) as wsman, WinRS(wsman) as shell:
        with pytest.raises(WSManFaultError) as psrp_error:
            Process(shell, r"C:\Tools\no-such-program.exe", no_shell=True).begin_invoke()
        assert psrp_error.value.code == FILE_NOT_FOUND
        assert "The system cannot find the file specified" in psrp_error.value.reason
        process = Process(shell, "hostname.exe", no_shell=True)  # the shell is still usable
        process.invoke()
        assert (process.stdout, process.rc) == (b"LAB-PC0000\r\n", 0)


def test_create_echoes_the_environment_and_working_directory_it_was_given(lab: Lab) -> None:
    rsp = "{http://schemas.microsoft.com/wbem/wsman/1/windows/shell}"

    def echoed(shell: ET.Element) -> tuple[dict[str, str | None], str | None]:
        variables = {v.get("Name", ""): v.text for v in shell.iter(rsp + "Variable")}
        return variables, shell.findtext(rsp + "WorkingDirectory")

    # pywinrm reads only the ShellId; the whole response passes through its public send_message.
    protocol = pywinrm(lab)
    responses: list[bytes] = []
    send = protocol.send_message

    def recording(message: str) -> bytes:
        responses.append(send(message))
        return responses[-1]

    protocol.send_message = recording  # type: ignore[method-assign]
    shell_id = protocol.open_shell(env_vars={"LAB_COLOUR": "teal & <green>"}, working_directory="C:\\Windows")
    try:
        shell = ET.fromstring(responses[-1]).find(f".//{rsp}Shell")
        assert shell is not None and shell.findtext(rsp + "ShellId") == shell_id
        assert echoed(shell) == ({"LAB_COLOUR": "teal & <green>"}, "C:\\Windows")
        # The order of the Shell type's sequence: ClientIP, Environment, WorkingDirectory, IdleTimeOut.
        names = [child.tag.replace(rsp, "") for child in shell]
        assert names[names.index("ClientIP"):names.index("IdleTimeOut") + 1] == [
            "ClientIP", "Environment", "WorkingDirectory", "IdleTimeOut"]
    finally:
        protocol.close_shell(shell_id)

    # pypsrp: the CreateResponse body its WinRS.open parses, and the same shell read back with a Get.
    with pypsrp(lab) as wsman:
        created: list[ET.Element] = []
        create = wsman.create

        def recording_create(*args: t.Any, **kwargs: t.Any) -> ET.Element:
            created.append(create(*args, **kwargs))
            return created[-1]

        wsman.create = recording_create  # type: ignore[method-assign]
        with WinRS(wsman, environment={"A": "1", "B": "two"}, working_directory="C:\\Users") as winrs:
            shell = created[-1].find(f"{rsp}Shell")
            assert shell is not None and echoed(shell) == ({"A": "1", "B": "two"}, "C:\\Users")
            process = Process(winrs, "cd")
            process.invoke()
            assert process.stdout == b"C:\\Users\r\n"  # and the shell runs there

        # A shell created without them echoes neither.
        with WinRS(wsman) as plain:
            shell = created[-1].find(f"{rsp}Shell")
            assert shell is not None and echoed(shell) == ({}, None)
            assert plain.id


def test_unicode_with_codepage_65001_and_437(lab: Lab) -> None:
    text = "héllo wörld ✓ 日本"
    assert run_pywinrm(pywinrm(lab), "echo", [text], codepage=65001) == ((text + "\r\n").encode("utf-8"), b"", 0)
    stdout, _, _ = run_pywinrm(pywinrm(lab), "echo", [text], codepage=437)
    assert stdout == "héllo wörld ? ??\r\n".encode("cp437")  # what 437 cannot encode becomes ?
    assert run_pypsrp(pypsrp(lab), "echo", [text], codepage=65001)[0].decode("utf-8") == text + "\r\n"


def test_a_command_longer_than_the_operation_timeout_is_polled_through_timed_out(lab: Lab) -> None:
    # pywinrm: one raw Receive times out with the Windows fault, the command keeps running, polling finishes it.
    protocol = pywinrm(lab, operation_timeout_sec=1, read_timeout_sec=5)
    shell_id = protocol.open_shell()
    try:
        command_id = protocol.run_command(shell_id, "ping", ["-n", "3", "127.0.0.1", ">", "nul"])
        with pytest.raises(winrm.exceptions.WinRMOperationTimeoutError):
            protocol.get_command_output_raw(shell_id, command_id)
        assert protocol.get_command_output(shell_id, command_id) == (b"", b"", 0)
    finally:
        protocol.close_shell(shell_id)

    # pypsrp: the same fault, seen as the WSManFault code it carries.
    with pypsrp(lab, operation_timeout=1, read_timeout=5) as wsman, WinRS(wsman) as shell:
        process = Process(shell, "ping -n 3 127.0.0.1 >nul")
        process.begin_invoke()
        with pytest.raises(WSManFaultError) as error:
            shell.receive("stdout stderr", process.id)
        assert error.value.code == OPERATION_TIMED_OUT
        process.end_invoke()
        assert process.rc == 0


def test_output_larger_than_one_envelope_arrives_whole_in_envelopes_that_fit(lab: Lab) -> None:
    payload = bytes(range(32, 127)) * 4000 + b"\r\n"  # 380 kB
    lab.device.windows_path(r"C:\Users\Administrator\big.txt").write_bytes(payload)
    wsman = pypsrp(lab, max_envelope_size=32768)
    sizes: list[int] = []
    original = wsman.transport._send_request

    def recording(*args: t.Any, **kwargs: t.Any) -> bytes:
        content = original(*args, **kwargs)
        sizes.append(len(content))
        return content

    wsman.transport._send_request = recording  # type: ignore[method-assign]
    stdout, stderr, code = run_pypsrp(wsman, "type", ["big.txt"])
    assert (stdout, stderr, code) == (payload, b"", 0)
    assert max(sizes) <= 32768 and len(sizes) > len(payload) // 32768


def test_signals_ctrl_c_and_terminate(lab: Lab) -> None:
    with pypsrp(lab) as wsman, WinRS(wsman) as shell:
        process = Process(shell, "ping", ["-n", "60", "127.0.0.1"])
        process.begin_invoke()
        process.signal(SignalCode.CTRL_C)
        process.end_invoke()
        assert process.rc == STATUS_CONTROL_C_EXIT
        process.signal(SignalCode.TERMINATE)
        with pytest.raises(WSManFaultError) as error:  # a terminated command is gone
            shell.receive("stdout stderr", process.id)
        assert error.value.code == INVALID_PARAMETER

    protocol = pywinrm(lab)
    shell_id = protocol.open_shell()
    try:
        command_id = protocol.run_command(shell_id, "ping", ["-n", "60", "127.0.0.1"])
        protocol.cleanup_command(shell_id, command_id)  # Signal terminate, long before ping would end
        with pytest.raises(winrm.exceptions.WSManFaultError) as pywinrm_error:
            protocol.get_command_output_raw(shell_id, command_id)
        assert pywinrm_error.value.wsman_fault_code == INVALID_PARAMETER
        assert pywinrm_error.value.fault_subcode == "w:InvalidParameter"
    finally:
        protocol.close_shell(shell_id)


def test_a_signal_for_an_unknown_command_id_is_an_invalid_selector(lab: Lab) -> None:
    bogus = "AAAAAAAA-0000-0000-0000-000000000000"
    protocol = pywinrm(lab)
    shell_id = protocol.open_shell()
    try:
        command_id = protocol.run_command(shell_id, "ping", ["-n", "60", "127.0.0.1"])
        with pytest.raises(winrm.exceptions.WSManFaultError) as error:
            protocol.cleanup_command(shell_id, bogus)
        assert (error.value.fault_code, error.value.fault_subcode) == ("s:Sender", "w:InvalidSelectors")
        assert error.value.wsman_fault_code == SHELL_NOT_FOUND
        assert bogus in error.value.response
        protocol.cleanup_command(shell_id, command_id)  # the shell and its real command are untouched
        with pytest.raises(winrm.exceptions.WSManFaultError) as again:  # a terminated command is unknown too
            protocol.cleanup_command(shell_id, command_id)
        assert again.value.fault_subcode == "w:InvalidSelectors"
    finally:
        protocol.close_shell(shell_id)

    with pypsrp(lab) as wsman, WinRS(wsman) as shell:
        with pytest.raises(WSManFaultError) as psrp_error:
            shell.signal(SignalCode.TERMINATE, bogus)
        assert psrp_error.value.code == SHELL_NOT_FOUND
        assert bogus in psrp_error.value.reason


# Faults of the WS-Management layer -------------------------------------------------------------------------------

def test_request_larger_than_max_envelope_size_is_http_413(start_lab: t.Callable[..., Lab]) -> None:
    lab = start_lab(max_envelope_size_kb=8)
    long_argument = "x" * 20000
    with pytest.raises(winrm.exceptions.WinRMTransportError) as error:
        run_pywinrm(pywinrm(lab), "echo", [long_argument])
    assert error.value.code == 413
    with pytest.raises(WinRMTransportError) as psrp_error:
        run_pypsrp(pypsrp(lab), "echo", [long_argument])
    assert psrp_error.value.code == 413
    assert run_pywinrm(pywinrm(lab), "echo", ["short"])[0] == b"short\r\n"  # the connection lives on


def test_unsupported_action_and_resource_uri(lab: Lab) -> None:
    with pypsrp(lab) as wsman:
        with pytest.raises(WSManFaultError) as action:
            wsman.invoke("http://schemas.xmlsoap.org/ws/2004/09/enumeration/Enumerate", CMD_URI, None)
        assert action.value.code == ACTION_NOT_SUPPORTED
        with pytest.raises(WSManFaultError) as resource:
            wsman.get("http://schemas.microsoft.com/wbem/wsman/1/wmi/root/cimv2/Win32_Service", None)
        assert resource.value.code == RESOURCE_URI_NOT_FOUND
        assert "was not found in the WS-Management catalog" in resource.value.reason
        wsman.update_max_payload_size()  # reads winrm/config like on Windows
        assert wsman.max_envelope_size == 500 * 1024


def test_too_many_shells_for_one_user(start_lab: t.Callable[..., Lab]) -> None:
    lab = start_lab(max_shells_per_user=2)
    protocol = pywinrm(lab)
    first, second = protocol.open_shell(), protocol.open_shell()
    with pytest.raises(winrm.exceptions.WSManFaultError) as error:
        protocol.open_shell()
    assert error.value.wsman_fault_code == MAX_SHELLS
    assert "maximum number of 2 concurrent shells" in error.value.reason
    protocol.close_shell(first, close_session=False)
    third = protocol.open_shell()  # room again
    with pypsrp(lab) as wsman, pytest.raises(WSManFaultError) as psrp_error:
        WinRS(wsman).open()
    assert psrp_error.value.code == MAX_SHELLS
    for shell_id in (second, third):
        protocol.close_shell(shell_id, close_session=False)


def test_idle_shells_are_dropped_after_their_idle_timeout(start_lab: t.Callable[..., Lab]) -> None:
    lab = start_lab(idle_timeout_ms=60000)
    protocol = pywinrm(lab)
    shell_id = protocol.open_shell()
    lab.device.clock.advance(61)
    assert lab.handle.call(_expire(lab)) == 1
    with pytest.raises(winrm.exceptions.WSManFaultError) as error:
        protocol.run_command(shell_id, "hostname")
    assert error.value.wsman_fault_code == SHELL_NOT_FOUND


async def _expire(lab: Lab) -> int:
    return lab.server.winrs.expire_idle(lab.device)


# Authentication and transport security ---------------------------------------------------------------------------

def test_ntlm_message_encryption_is_required_over_http(start_lab: t.Callable[..., Lab]) -> None:
    lab = start_lab()
    # Both clients seal every message with the NTLM session (multipart/encrypted) and the lab answers in kind.
    assert run_pywinrm(pywinrm(lab, message_encryption="always"), "hostname")[0] == b"LAB-PC0000\r\n"
    assert run_pypsrp(pypsrp(lab, encryption="always"), "hostname")[0] == b"LAB-PC0000\r\n"
    # Clear-text SOAP after NTLM is refused while AllowUnencrypted is false...
    with pytest.raises(winrm.exceptions.InvalidCredentialsError):
        run_pywinrm(pywinrm(lab, message_encryption="never"), "hostname")
    with pytest.raises(AuthenticationError):
        run_pypsrp(pypsrp(lab, encryption="never"), "hostname")
    # ...and accepted once it is true.
    lab.device.service.allow_unencrypted = True
    assert run_pywinrm(pywinrm(lab, message_encryption="never"), "hostname")[0] == b"LAB-PC0000\r\n"


def test_the_401_challenge_offers_what_the_service_allows(lab: Lab) -> None:
    response = raw_post(lab.http_url(), b"<s:Envelope/>")
    assert response.status_code == 401
    assert response.headers["Server"] == "Microsoft-HTTPAPI/2.0"
    assert response.headers["WWW-Authenticate"] == "Negotiate"
    lab.device.service.allow_basic = True
    assert raw_post(lab.http_url()).headers["WWW-Authenticate"] == 'Negotiate, Basic realm="WSMAN"'


def test_basic_over_http_is_refused_unless_unencrypted_is_allowed(start_lab: t.Callable[..., Lab]) -> None:
    lab = start_lab(allow_basic=True)
    with pytest.raises(winrm.exceptions.InvalidCredentialsError):
        run_pywinrm(pywinrm(lab, transport="basic"), "hostname")
    with pytest.raises(AuthenticationError):
        run_pypsrp(pypsrp(lab, auth="basic", encryption="never"), "hostname")
    lab.device.service.allow_unencrypted = True
    assert run_pywinrm(pywinrm(lab, transport="basic"), "hostname")[0] == b"LAB-PC0000\r\n"


def test_basic_over_https_when_enabled(start_lab: t.Callable[..., Lab]) -> None:
    lab = start_lab()
    with pytest.raises(winrm.exceptions.InvalidCredentialsError):  # Basic is off by default
        run_pywinrm(pywinrm(lab, transport="basic", https=True), "hostname")
    lab.device.service.allow_basic = True
    assert run_pywinrm(pywinrm(lab, transport="basic", https=True), "hostname") == (b"LAB-PC0000\r\n", b"", 0)
    assert run_pypsrp(pypsrp(lab, auth="basic", https=True), "whoami")[0] == b"lab-pc0000\\administrator\r\n"


def test_ntlm_over_https_with_ca_validation(lab: Lab) -> None:
    assert run_pywinrm(pywinrm(lab, https=True), "hostname")[0] == b"LAB-PC0000\r\n"
    assert run_pypsrp(pypsrp(lab, https=True), "hostname")[0] == b"LAB-PC0000\r\n"


@pytest.mark.parametrize(("kind", "reason"), [
    ("mismatch", "IP address mismatch"),
    ("untrusted", "self-signed certificate"),
    ("expired", "certificate has expired"),
])
def test_bad_certificates_fail_validation(lab: Lab, kind: str, reason: str) -> None:
    lab.device.faults.certificate = kind  # takes effect on the next TLS handshake
    with pytest.raises(requests.exceptions.SSLError, match=reason):
        run_pywinrm(pywinrm(lab, https=True), "hostname")
    with pytest.raises(requests.exceptions.SSLError, match=reason):
        run_pypsrp(pypsrp(lab, https=True, reconnection_retries=0), "hostname")
    # Without validation the connection works: the certificate was the only problem.
    assert run_pywinrm(pywinrm(lab, https=True, server_cert_validation="ignore"), "hostname")[2] == 0
    lab.device.faults.certificate = "valid"
    assert run_pywinrm(pywinrm(lab, https=True), "hostname")[2] == 0


def test_wrong_password_is_401(start_lab: t.Callable[..., Lab]) -> None:
    lab = start_lab(allow_basic=True)
    with pytest.raises(winrm.exceptions.InvalidCredentialsError):
        run_pywinrm(pywinrm(lab, password="wrong"), "hostname")
    with pytest.raises(AuthenticationError):
        run_pypsrp(pypsrp(lab, password="wrong"), "hostname")
    with pytest.raises(winrm.exceptions.InvalidCredentialsError):
        run_pywinrm(pywinrm(lab, transport="basic", https=True, password="wrong"), "hostname")


def test_each_device_checks_its_own_accounts(start_lab: t.Callable[..., Lab],
                                             make_devices: t.Callable[..., t.Any]) -> None:
    first, second = make_devices(1) + make_devices(1, accounts={USER: "another password"})
    lab = start_lab(devices=[first, second])
    assert run_pywinrm(pywinrm(lab), "hostname")[2] == 0
    second_lab = Lab([second], lab.ca, lab.handle)
    with pytest.raises(winrm.exceptions.InvalidCredentialsError):
        run_pywinrm(pywinrm(second_lab), "hostname")
    assert run_pywinrm(pywinrm(second_lab, password="another password"), "hostname")[0] == b"LAB-PC0001\r\n"


# Network faults --------------------------------------------------------------------------------------------------

def test_refused_connections(lab: Lab) -> None:
    lab.device.faults.refuse_connections = True
    lab.refresh_listeners()
    with pytest.raises(requests.exceptions.ConnectionError, match="Connection refused"):
        raw_post(lab.http_url())
    with pytest.raises(requests.exceptions.ConnectionError, match="Connection refused"):
        run_pywinrm(pywinrm(lab), "hostname")
    lab.device.faults.refuse_connections = False
    lab.refresh_listeners()
    assert run_pywinrm(pywinrm(lab), "hostname")[2] == 0


def test_latency_delays_every_answer(lab: Lab) -> None:
    lab.device.faults.latency_seconds = 2.0
    with pytest.raises(requests.exceptions.ReadTimeout):
        raw_post(lab.http_url(), timeout=0.5)
    assert raw_post(lab.http_url(), timeout=10).status_code == 401  # the answer comes, later
    lab.device.faults.latency_seconds = 0.2
    assert run_pywinrm(pywinrm(lab), "hostname")[0] == b"LAB-PC0000\r\n"


def test_blackhole_reads_and_never_answers(start_lab: t.Callable[..., Lab]) -> None:
    lab = start_lab(2)
    lab.device.faults.blackhole = True
    with pytest.raises(requests.exceptions.ReadTimeout):
        raw_post(lab.http_url(), b"<s:Envelope/>", timeout=1)
    with pytest.raises(requests.exceptions.ReadTimeout):
        run_pywinrm(pywinrm(lab, operation_timeout_sec=1, read_timeout_sec=2), "hostname")
    other = Lab([lab.devices[1]], lab.ca, lab.handle)
    assert run_pywinrm(pywinrm(other), "hostname")[0] == b"LAB-PC0001\r\n"  # the rest of the fleet is fine
    lab.device.faults.blackhole = False
    assert run_pywinrm(pywinrm(lab), "hostname")[2] == 0


def test_http_500(lab: Lab) -> None:
    lab.device.faults.http_500 = True
    response = raw_post(lab.http_url())
    assert (response.status_code, response.content) == (500, b"")
    with pytest.raises(winrm.exceptions.WinRMTransportError) as error:
        run_pywinrm(pywinrm(lab, message_encryption="never"), "hostname")
    assert error.value.code == 500
    with pytest.raises(WinRMTransportError) as psrp_error:
        run_pypsrp(pypsrp(lab, https=True), "hostname")
    assert psrp_error.value.code == 500


def test_connection_dropped_mid_transfer(lab: Lab) -> None:
    protocol = pywinrm(lab)
    shell_id = protocol.open_shell()
    command_id = protocol.run_command(shell_id, "more")
    lab.device.faults.drop_after_bytes = 50_000
    chunk = b"x" * 20_000  # about 27 kB on the wire once base64-encoded in the envelope
    protocol.send_command_input(shell_id, command_id, chunk)  # below the threshold
    with pytest.raises(requests.exceptions.ConnectionError):
        protocol.send_command_input(shell_id, command_id, chunk)  # crosses it: connection reset, no answer
    assert lab.device.faults.drop_after_bytes is None  # fired once
    # A new connection (and, NTLM being per connection, a new authentication) reaches the same shell.
    fresh = pywinrm(lab)
    fresh.send_command_input(shell_id, command_id, b"done\r\n", end=True)
    stdout, _, code = fresh.get_command_output(shell_id, command_id)
    assert code == 0 and stdout.endswith(b"done\r\n")
    fresh.close_shell(shell_id)


# Scale -----------------------------------------------------------------------------------------------------------

def test_a_thousand_devices_in_one_process(start_lab: t.Callable[..., Lab]) -> None:
    lab = start_lab(1000)
    last = Lab([lab.devices[-1]], lab.ca, lab.handle)
    assert run_pywinrm(pywinrm(last), "hostname")[0] == b"LAB-PC0999\r\n"
    assert run_pywinrm(pywinrm(last, https=True), "hostname")[0] == b"LAB-PC0999\r\n"
    results: list[bytes] = []

    def probe(device_lab: Lab) -> None:
        results.append(run_pywinrm(pywinrm(device_lab), "hostname")[0])

    threads = [threading.Thread(target=probe, args=(Lab([d], lab.ca, lab.handle),)) for d in lab.devices[::100]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [f"LAB-PC{n:04d}\r\n".encode() for n in range(0, 1000, 100)]
