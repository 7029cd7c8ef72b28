"""powershell.exe as the lab emulates it: the collection's device scripts by their contracts, nothing else."""

from __future__ import annotations

import asyncio
import base64
import importlib
import json
import pathlib
import re

import jsonschema
import pytest

from winrm_lab.emulation import powershell
from winrm_lab.emulation.powershell import device_scripts_dir, powershell_program
from winrm_lab.process import Process, ProcessIO
from winrm_lab.scenarios import build_fleet

SCRIPTS = device_scripts_dir()
assert SCRIPTS is not None, "the collection's device scripts must be found from the lab's checkout"
BOOTSTRAP = (SCRIPTS / "bootstrap.ps1").read_text(encoding="utf-8")
FACTS_SCRIPT = (SCRIPTS / "get_device_facts.ps1").read_text(encoding="utf-8")
FACTS_CONTRACT = json.loads((SCRIPTS / "get_device_facts.contract.json").read_text(encoding="utf-8"))
STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def encoded(script: str) -> str:
    return base64.b64encode(script.encode("utf-16-le")).decode("ascii")


BOOTSTRAP_ARGUMENTS = ["-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-EncodedCommand",
                       encoded(BOOTSTRAP)]


def payload(script: str = FACTS_SCRIPT, script_input=None) -> bytes:
    return json.dumps({"script": script, "input": {} if script_input is None else script_input}).encode("utf-8")


def run(device, arguments, stdin: bytes = b"", codepage: int = 65001):
    """Runs powershell.exe on the device as WinRS would; returns (stdout, stderr, exit code)."""
    async def go():
        io = ProcessIO(device, "powershell.exe", arguments, {}, codepage, None)
        process = Process(powershell_program(arguments), io)
        process.start()
        await process.send_stdin(stdin, True)
        stdout, stderr = b"", b""
        while True:
            result = await process.receive(10, 1 << 20)
            assert result is not None, "powershell.exe did not finish"
            stdout, stderr = stdout + result.stdout, stderr + result.stderr
            if result.done:
                return stdout, stderr, result.exit_code
    return asyncio.run(go())


@pytest.fixture
def fleet(tmp_path):
    return build_fleet(20, "mixed", 1, work_dir=tmp_path)


def by_behaviour(fleet, name):
    return next(d for d in fleet.devices if d.behaviours[0] == name)


def facts(device):
    stdout, stderr, code = run(device, BOOTSTRAP_ARGUMENTS, payload())
    assert (code, stderr) == (0, b"")
    assert stdout.endswith(b"\r\n") and stdout.count(b"\n") == 1, "one JSON line"
    result = json.loads(stdout)
    jsonschema.validate(result, FACTS_CONTRACT["output"])
    return result


def test_every_contract_has_an_emulation_of_its_version():
    """A device script the lab cannot emulate would fail in every test above it: say which, and why."""
    problems = []
    for contract_path in sorted(SCRIPTS.glob("*.contract.json")):
        contract = json.loads(contract_path.read_text(encoding="utf-8"))
        name = contract_path.name[:-len(".contract.json")]
        script_path = SCRIPTS / f"{name}.ps1"
        if not script_path.exists():
            problems.append(f"{name}: contract without {script_path.name}")
            continue
        header = powershell.script_header(script_path.read_text(encoding="utf-8"))
        if header != {"device-script": name, "version": str(contract["version"])}:
            problems.append(f"{name}: header {header} does not match contract version {contract['version']}")
        try:
            emulation = importlib.import_module(f"winrm_lab.emulation.scripts.{name}")
        except ModuleNotFoundError:
            problems.append(f"{name}: no emulation in lab/src/winrm_lab/emulation/scripts/{name}.py")
            continue
        if emulation.VERSION != contract["version"]:
            problems.append(f"{name}: the emulation is of version {emulation.VERSION}, the contract of "
                            f"{contract['version']}")
    assert not problems, "\n".join(problems)


def test_facts_come_from_the_device_model(fleet):
    device = by_behaviour(fleet, "active")
    result = facts(device)
    assert result["computer_name"] == device.name
    assert result["serial_number"] == device.hardware.serial_number
    assert result["manufacturer"] == device.hardware.manufacturer
    assert result["model"] == device.hardware.model
    assert result["os_caption"] == device.hardware.os_caption
    assert result["os_version"] == device.hardware.os_version
    assert result["chassis_types"] == device.hardware.chassis_types
    assert STAMP.match(result["last_checkin"]) and STAMP.match(result["device_time"])
    assert result["last_checkin"] <= result["device_time"]


@pytest.mark.parametrize("chassis, product_type, expected", [
    ([3], 1, "desktop"), ([35], 1, "desktop"), ([10], 1, "laptop"), ([9, 3], 1, "laptop"), ([31], 1, "laptop"),
    ([23], 1, "server"), ([3], 3, "server"), ([1], 2, "server"), ([], 1, "desktop"),
])
def test_device_type_follows_the_scripts_rule(fleet, chassis, product_type, expected):
    device = by_behaviour(fleet, "active")
    device.hardware.chassis_types = chassis
    device.hardware.os_product_type = product_type
    assert facts(device)["device_type"] == expected


def test_moving_the_clock_moves_device_time_and_a_running_agents_check_in(fleet):
    device = by_behaviour(fleet, "active")
    before = facts(device)
    device.clock.advance(3 * 3600)
    after = facts(device)
    assert after["device_time"] > before["device_time"]
    assert after["device_time"][:13] != before["device_time"][:13]
    assert after["last_checkin"] > before["last_checkin"]  # the agent kept checking in


def test_a_stopped_agents_check_in_stays_behind(fleet):
    device = by_behaviour(fleet, "agent_idle")
    before = facts(device)
    device.clock.advance(3600)
    after = facts(device)
    assert after["last_checkin"] == before["last_checkin"]
    assert after["device_time"] > before["device_time"]
    assert facts(by_behaviour(fleet, "agent_never_checked_in"))["last_checkin"] is None


def test_broken_wmi_fails_the_script_as_the_bootstrap_reports_it(fleet):
    device = by_behaviour(fleet, "wmi_broken")
    stdout, stderr, code = run(device, BOOTSTRAP_ARGUMENTS, payload())
    assert code == 1 and stdout == b""
    assert stderr == device.wmi_error.encode() + b"\r\n"


def test_input_outside_the_contract_fails_like_the_script(fleet):
    stdout, stderr, code = run(fleet.devices[0], BOOTSTRAP_ARGUMENTS, payload(script_input={"unexpected": 1}))
    assert code == 1 and stdout == b""
    assert b"Cannot validate argument on parameter 'InputObject'" in stderr
    assert b"unexpected" in stderr


def test_a_script_version_without_emulation_is_not_recognized(fleet):
    newer = FACTS_SCRIPT.replace("# version: 1", "# version: 99", 1)
    stdout, stderr, code = run(fleet.devices[0], BOOTSTRAP_ARGUMENTS, payload(newer))
    assert code == 1 and stdout == b""
    assert stderr.decode().startswith("The term 'get_device_facts' is not recognized as the name of a cmdlet")


def test_an_unknown_script_fails_on_its_first_command(fleet):
    script = "param($InputObject)\n$ErrorActionPreference = 'Stop'\n$x = Get-LabUnknownThing -Name a\n"
    stdout, stderr, code = run(fleet.devices[0], BOOTSTRAP_ARGUMENTS, payload(script))
    assert code == 1 and stdout == b""
    assert stderr.decode() == (
        "The term 'Get-LabUnknownThing' is not recognized as the name of a cmdlet, function, script file, or "
        "operable program. Check the spelling of the name, or if a path was included, verify that the path is "
        "correct and try again.\r\n")


def test_an_empty_script_does_nothing_and_succeeds(fleet):
    assert run(fleet.devices[0], BOOTSTRAP_ARGUMENTS, payload("")) == (b"", b"", 0)


def test_stdin_that_is_not_json_fails_in_convertfrom_json(fleet):
    stdout, stderr, code = run(fleet.devices[0], BOOTSTRAP_ARGUMENTS, b"this is not json")
    assert code == 1 and stdout == b""
    assert stderr.startswith(b"#< CLIXML\r\n")
    assert b"ConvertFrom-Json : Invalid JSON primitive: this." in stderr


def test_other_powershell_fails_as_windows_powershell_does(fleet):
    stdout, stderr, code = run(fleet.devices[0], ["-NoProfile", "-EncodedCommand", encoded("Get-Process -Id 4")])
    assert code == 1 and stdout == b""
    # After -EncodedCommand with stderr redirected, Windows PowerShell writes error records as CLIXML.
    text = stderr.decode()
    assert text.startswith('#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">')
    assert ("<S S=\"Error\">Get-Process : The term 'Get-Process' is not recognized as the name of a cmdlet, "
            "function, script file, or operable program.") in text
    assert "CommandNotFoundException" in text


def test_a_changed_bootstrap_is_not_the_bootstrap(fleet):
    changed = BOOTSTRAP.replace("exit 1", "exit 2")
    arguments = BOOTSTRAP_ARGUMENTS[:-1] + [encoded(changed)]
    stdout, stderr, code = run(fleet.devices[0], arguments, payload())
    assert code == 1 and stdout == b"" and b"is not recognized" in stderr


def test_plain_command_text_errors_are_text(fleet):
    stdout, stderr, code = run(fleet.devices[0], ["-NoProfile", "-Command", "Restart-Computer", "-Force"])
    assert code == 1
    lines = stderr.decode().split("\r\n")
    assert lines[0].startswith("Restart-Computer : The term 'Restart-Computer' is not recognized")
    assert lines[1:4] == ["At line:1 char:1", "+ Restart-Computer -Force", "+ ~~~~~~~~~~~~~~~~"]


def test_a_bad_encoded_command_is_a_command_line_error(fleet):
    stdout, stderr, code = run(fleet.devices[0], ["-EncodedCommand", "not base64!"])
    assert code == 64
    assert b"not properly encoded" in stderr


def test_an_emulation_that_breaks_its_contract_fails_loudly(fleet, monkeypatch):
    from winrm_lab.emulation.scripts import get_device_facts

    original = get_device_facts.run
    monkeypatch.setattr(get_device_facts, "run", lambda device, script_input: {**original(device, script_input),
                                                                               "device_type": "tablet"})
    stdout, stderr, code = run(fleet.devices[0], BOOTSTRAP_ARGUMENTS, payload())
    assert code == 1 and stdout == b""
    assert b"winrm-lab bug" in stderr and b"device_type" in stderr


def test_the_device_scripts_directory_can_be_configured(monkeypatch, tmp_path):
    monkeypatch.setenv("WINRM_LAB_DEVICE_SCRIPTS", str(tmp_path))
    assert device_scripts_dir() == pathlib.Path(tmp_path)
    assert not powershell.is_bootstrap(BOOTSTRAP)  # no bootstrap.ps1 there


def test_powershell_switches_are_matched_as_windows_matches_them():
    parse = powershell.parse_command_line
    assert parse(["-nop", "-noni", "-ep", "bypass", "-enc", encoded("x")]).command == "x"
    assert parse(["-ExecutionPolicy", "Bypass", "-e", encoded("y")]).command == "y"
    assert parse(["-Command", "Get-Date", "-Format", "o"]).command == "Get-Date -Format o"
    assert parse(["Get-Date"]).command == "Get-Date"
    assert parse(["-Bogus"]).command == "-Bogus"  # 5.1: the first unknown switch starts the command text
    assert parse([]).read_commands_from_stdin
    assert parse(["-ExecutionPolicy"]).error


# Over WinRM, as a client sees it ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def winrm_session(tmp_path_factory):
    import winrm

    from lab_fixtures import base_address, start_lab

    lab = start_lab(tmp_path_factory.mktemp("scripts"), devices=1, scenario="healthy", base=base_address(31))
    entry = lab.devices[0]
    session = winrm.Session(entry["endpoint"]["url"], auth=(entry["credentials"]["username"],
                                                            entry["credentials"]["password"]),
                            transport="ntlm", server_cert_validation="validate", ca_trust_path=lab.manifest["ca_file"],
                            message_encryption=entry["message_encryption"])
    yield session
    lab.stop()


def test_an_unknown_command_fails_as_cmd_exe_does(winrm_session):
    result = winrm_session.run_cmd("frobnicate", ["--now"])
    assert result.status_code == 1 and result.std_out == b""
    assert result.std_err == (b"'frobnicate' is not recognized as an internal or external command,\r\n"
                              b"operable program or batch file.\r\n")


def test_unknown_powershell_fails_and_a_real_client_decodes_the_error(winrm_session):
    # pywinrm's run_ps sends `powershell -encodedcommand ...` through cmd.exe and decodes the CLIXML on stderr.
    result = winrm_session.run_ps("Get-Frobnicator -All")
    assert result.status_code == 1 and result.std_out == b""
    text = result.std_err.decode()
    assert "Get-Frobnicator : The term 'Get-Frobnicator' is not recognized as the name of a cmdlet" in text
    assert "CommandNotFoundException" in text and "#< CLIXML" not in text
