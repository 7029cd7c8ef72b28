"""winrm_lab.in_process: a lab device driven in the caller's process, through the same emulation and contract checks
as the lab's server, on a clock that moves only when told."""

from __future__ import annotations

import base64
import datetime
import json
import typing as t

import pytest

from winrm_lab import in_process
from winrm_lab.emulation.powershell import device_scripts_dir
from winrm_lab.tasks import ScheduledTask, TimeTrigger


class Script:
    """A device script as a client carries it: its text, its command line, its stdin, its reading of the output."""

    def __init__(self, name: str) -> None:
        directory = device_scripts_dir()
        assert directory is not None
        self.name = name
        self.text = (directory / f"{name}.ps1").read_text(encoding="utf-8")
        self._bootstrap = (directory / "bootstrap.ps1").read_text(encoding="utf-8")

    def command_arguments(self) -> list[str]:
        encoded = base64.b64encode(self._bootstrap.encode("utf-16-le")).decode("ascii")
        return ["-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-EncodedCommand", encoded]

    def stdin_payload(self, script_input: t.Mapping[str, t.Any]) -> bytes:
        return json.dumps({"script": self.text, "input": dict(script_input)}).encode("utf-8")

    def parse_result(self, stdout: bytes, stderr: bytes, exit_code: int) -> tuple[int, t.Any, str]:
        text = stdout.decode("utf-8").strip()
        return exit_code, json.loads(text) if exit_code == 0 else None, stderr.decode("utf-8")


@pytest.fixture
def client(tmp_path):
    with in_process.InProcessDevice(in_process.device(work_dir=tmp_path)) as device:
        yield device


def test_a_script_runs_through_its_emulation_on_the_device_clock(client):
    with client.shell() as shell:
        code, facts, _ = shell.run(Script("get_device_facts"))
    assert code == 0 and facts["computer_name"] == client.device.name
    assert facts["device_time"] == "2026-11-24T10:00:00Z"
    client.advance(90)
    _, later, _ = client.run_script(Script("get_device_facts"))
    assert later["device_time"] == "2026-11-24T10:01:30Z" and later["last_checkin"] == "2026-11-24T10:01:00Z"
    assert [name for name, _input in client.calls] == ["get_device_facts", "get_device_facts"]


def test_input_outside_the_contract_fails_as_the_bootstrap_reports_it(client):
    code, _, stderr = client.run(Script("get_agent_state"), {"components": "not a list"})
    assert code == 1 and "Cannot validate argument on parameter 'InputObject'" in stderr


def test_scheduled_tasks_run_when_the_clock_reaches_them(client):
    # The agent's check-in script as a one-shot task a minute from now, run as SYSTEM.
    script = r"C:\ProgramData\RemoteSupport\scripts\heartbeat.ps1"
    path = client.device.windows_path(script)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(Script("heartbeat").text, encoding="utf-8")
    task = ScheduledTask(name="Check", execute=r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe",
                         arguments=f'-NoProfile -File "{script}"',
                         user_id="SYSTEM", time_triggers=[TimeTrigger(client.now() + datetime.timedelta(seconds=60))])
    client.device.tasks.register(task)
    client.advance(59)
    assert task.runs == 0
    client.advance(1)
    assert task.runs == 1 and task.last_task_result == 0, task.last_error_output
    assert task.last_run_time == in_process.DEFAULT_START + datetime.timedelta(seconds=60)


def test_faults_fail_the_connection_as_a_client_sees_it(client):
    client.device.faults.refuse_connections = True
    with pytest.raises(ConnectionRefusedError):
        with client.shell():
            pass
    client.device.faults.refuse_connections = False
    client.device.faults.drop_after_bytes = 10
    with pytest.raises(in_process.ConnectionLost):
        client.run(Script("get_device_facts"))
    assert client.device.faults.drop_after_bytes is None  # once
    assert client.run(Script("get_device_facts"))[0] == 0
