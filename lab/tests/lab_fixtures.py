"""Helpers for tests that need a running lab: start `winrm-lab` as a subprocess, probe devices with pywinrm.

The lab runs as its own process, exactly as users and the integration targets start it, so these tests also prove
the command and its files. Each test module takes its own loopback block (derived from the process id) so parallel
runs and a developer's running lab do not collide.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import typing as t

import jsonschema
import pytest
import requests.exceptions
import winrm
import winrm.exceptions
import winrm.protocol

from winrm_lab.control import ControlClient
from winrm_lab.emulation.powershell import device_scripts_dir

SCRIPTS = device_scripts_dir()
assert SCRIPTS is not None
BOOTSTRAP = (SCRIPTS / "bootstrap.ps1").read_text(encoding="utf-8")
FACTS_SCRIPT = (SCRIPTS / "get_device_facts.ps1").read_text(encoding="utf-8")
FACTS_CONTRACT = json.loads((SCRIPTS / "get_device_facts.contract.json").read_text(encoding="utf-8"))

# WSManFault codes of the per-user shell quota, as Windows sends them.
QUOTA_FAULT_CODES = {2150859173, 2150859174}


def base_address(slot: int) -> str:
    """A loopback block of this test process: 127.<from pid>.<slot>.1."""
    return f"127.{100 + os.getpid() % 120}.{slot}.1"


@dataclasses.dataclass
class LabProcess:
    process: subprocess.Popen[str]
    manifest_path: pathlib.Path
    inventory_path: pathlib.Path
    manifest: dict[str, t.Any]
    control: ControlClient

    @property
    def devices(self) -> list[dict[str, t.Any]]:
        return self.manifest["devices"]

    @property
    def directory(self) -> pathlib.Path:
        """Where the lab keeps its files (the manifest, and the devices' drives under work/)."""
        return self.manifest_path.parent

    def device(self, behaviour: str) -> dict[str, t.Any]:
        """The first device whose first behaviour is `behaviour`."""
        return next(d for d in self.devices if d["behaviours"][0] == behaviour)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30) -> tuple[int, str, str]:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            stdout, stderr = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            stdout, stderr = self.process.communicate()
        return self.process.returncode, stdout, stderr


def lab_command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "winrm_lab.cli", *arguments]


def start_lab(directory: pathlib.Path, devices: int = 20, scenario: str = "mixed", seed: int = 1,
              base: str | None = None, extra: t.Sequence[str] = (), timeout: float = 90,
              command: t.Sequence[str] | None = None) -> LabProcess:
    """Starts the lab and returns once its manifest exists (which it does only when every device listens)."""
    directory.mkdir(parents=True, exist_ok=True)
    manifest_path, inventory_path = directory / "manifest.json", directory / "inventory.yml"
    arguments = ["--devices", str(devices), "--scenario", scenario, "--seed", str(seed),
                 "--base-address", base or base_address(1), "--work-dir", str(directory / "work"),
                 "--inventory", str(inventory_path), "--manifest", str(manifest_path), *extra]
    process = subprocess.Popen([*(command or lab_command()), *arguments], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while not manifest_path.exists():
        if process.poll() is not None:
            stdout, stderr = process.communicate()
            raise RuntimeError(f"winrm-lab exited with {process.returncode} before it was ready:\n{stdout}\n{stderr}")
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"winrm-lab did not write its manifest within {timeout} s")
        time.sleep(0.05)
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    return LabProcess(process, manifest_path, inventory_path, manifest,
                      ControlClient(manifest["control"]["url"], manifest["control"]["token"]))


def module_lab(name: str, devices: int, seed: int, slot: int) -> t.Any:
    """A module-scoped `lab` fixture: `devices` healthy devices in loopback block `slot`, stopped after the module.
    Test modules share nothing but this machine: each takes its own block and seed."""

    @pytest.fixture(scope="module")
    def lab(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[LabProcess]:
        running = start_lab(tmp_path_factory.mktemp(name), devices=devices, scenario="healthy", seed=seed,
                            base=base_address(slot))
        yield running
        running.stop()

    return lab


def text_of(name: str) -> str:
    """A device script's text, as the collection ships it."""
    return (SCRIPTS / f"{name}.ps1").read_text(encoding="utf-8")


def contract_of(name: str) -> dict[str, t.Any]:
    """A device script's written contract."""
    return json.loads((SCRIPTS / f"{name}.contract.json").read_text(encoding="utf-8"))


def run_checked(protocol: winrm.protocol.Protocol, name: str, script_input: t.Any = None) -> dict[str, t.Any]:
    """Runs device script `name` with its input checked against its contract, and returns its answer, checked against
    the contract too. The script must succeed."""
    contract = contract_of(name)
    script_input = {} if script_input is None else script_input  # what run_device_script sends
    jsonschema.validate(script_input, contract["input"])
    outcome = run_device_script(protocol, text_of(name), script_input)
    assert outcome.exit_code == 0, outcome.stderr.decode("utf-8", "replace")
    answer = outcome.json()
    jsonschema.validate(answer, contract["output"])
    return answer


class ScriptDevice:
    """One lab device, driven by device scripts over WinRM."""

    def __init__(self, lab: LabProcess, entry: dict[str, t.Any]) -> None:
        self.lab, self.entry, self.name = lab, entry, entry["name"]
        self.protocol = protocol_for(entry, lab.manifest["ca_file"])

    def run(self, name: str, script_input: t.Any = None) -> dict[str, t.Any]:
        return run_checked(self.protocol, name, script_input)


def tcp_connects(address: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


# Probing a device with pywinrm -------------------------------------------------------------------------------------
@dataclasses.dataclass
class ScriptRun:
    stdout: bytes
    stderr: bytes
    exit_code: int

    def json(self) -> dict[str, t.Any]:
        return json.loads(self.stdout.decode("utf-8").strip().splitlines()[-1])


def protocol_for(entry: dict[str, t.Any], ca_file: str, *, password: str | None = None, operation_timeout: int = 5,
                 read_timeout: int = 10, url: str | None = None) -> winrm.protocol.Protocol:
    """A pywinrm Protocol configured as the inventory configures Ansible: NTLM, validation on, the lab CA."""
    return winrm.protocol.Protocol(
        endpoint=url or entry["endpoint"]["url"], transport="ntlm", username=entry["credentials"]["username"],
        password=entry["credentials"]["password"] if password is None else password,
        server_cert_validation="validate", ca_trust_path=ca_file, message_encryption=entry["message_encryption"],
        operation_timeout_sec=operation_timeout, read_timeout_sec=read_timeout,
    )


def bootstrap_arguments() -> list[str]:
    encoded = base64.b64encode(BOOTSTRAP.encode("utf-16-le")).decode("ascii")
    return ["-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-EncodedCommand", encoded]


def run_device_script(protocol: winrm.protocol.Protocol, script: str = FACTS_SCRIPT,
                      script_input: dict[str, t.Any] | None = None) -> ScriptRun:
    """Runs a device script through powershell.exe and the bootstrap, the script and input on stdin."""
    payload = json.dumps({"script": script, "input": script_input or {}}).encode("utf-8")
    shell = protocol.open_shell(codepage=65001)
    try:
        command = protocol.run_command(shell, "powershell.exe", bootstrap_arguments(), skip_cmd_shell=True)
        protocol.send_command_input(shell, command, payload, end=True)
        stdout, stderr, code = protocol.get_command_output(shell, command)
        protocol.cleanup_command(shell, command)
        return ScriptRun(stdout, stderr, code)
    finally:
        try:
            protocol.close_shell(shell)
        except Exception:
            pass


def probe(entry: dict[str, t.Any], ca_file: str, **options: t.Any) -> ScriptRun | BaseException:
    """Runs get_device_facts on a device; the exception when WinRM itself failed."""
    try:
        return run_device_script(protocol_for(entry, ca_file, **options))
    except Exception as error:  # the failure is the result being checked
        return error


def _chain(error: BaseException) -> list[BaseException]:
    seen, stack, found = set(), [error], []
    while stack:
        current = stack.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        found.append(current)
        stack.extend((current.__cause__, current.__context__, getattr(current, "reason", None), *current.args))
    return found


def failure_reason(outcome: ScriptRun | BaseException) -> str | None:
    """The reason (as the collection names them) a probe failed for, from what pywinrm raised; None if it ran."""
    if isinstance(outcome, ScriptRun):
        return None if outcome.exit_code == 0 else "script"
    chain = _chain(outcome)
    names = {type(e).__name__ for e in chain}
    if isinstance(outcome, winrm.exceptions.InvalidCredentialsError):
        return "auth"
    if isinstance(outcome, winrm.exceptions.WSManFaultError):
        return "quota" if outcome.wsman_fault_code in QUOTA_FAULT_CODES else "protocol"
    if isinstance(outcome, requests.exceptions.SSLError):
        return "tls"
    if any(isinstance(e, socket.gaierror) for e in chain) or "NameResolutionError" in names:
        return "dns"
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "refused"
    if isinstance(outcome, requests.exceptions.Timeout):
        return "timeout"
    if isinstance(outcome, winrm.exceptions.WinRMTransportError) and outcome.code == 500:
        return "protocol"
    if isinstance(outcome, requests.exceptions.ConnectionError):
        return "protocol"  # the connection was lost mid-exchange
    return f"unexpected {type(outcome).__name__}: {outcome}"


def check_facts(run: ScriptRun) -> dict[str, t.Any]:
    """The facts a successful run printed, checked against the script's contract."""
    assert run.exit_code == 0, run.stderr
    facts = run.json()
    jsonschema.validate(facts, FACTS_CONTRACT["output"])
    return facts


def checkin_age_seconds(facts: dict[str, t.Any]) -> float | None:
    """How old the agent's check-in is by the device's own clock (None: never checked in)."""
    import datetime

    def parse(text: str) -> datetime.datetime:
        return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")

    if facts["last_checkin"] is None:
        return None
    return (parse(facts["device_time"]) - parse(facts["last_checkin"])).total_seconds()
