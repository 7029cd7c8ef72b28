# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""support_agent's core against an in-memory device that keeps the agent's files and check-in task and answers the
agent scripts as their contracts say: install, leave alone, upgrade, repair, keep a newer one."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import jsonschema
import pytest

from ansible_collections.remote_support.windows.plugins.module_utils import device_script
from ansible_collections.remote_support.windows.plugins.module_utils import support_agent as sa
from ansible_collections.remote_support.windows.plugins.module_utils import support_session
from ansible_collections.remote_support.windows.plugins.module_utils.errors import DeviceError

NOW = "2026-11-24T10:00:00Z"
FOLDER = "C:\\ProgramData\\RemoteSupport\\scripts"
POWERSHELL = "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"


def _contract(name):
    with open(os.path.join(device_script.SCRIPTS_DIR, f"{name}.contract.json"), encoding="utf-8") as handle:
        return json.load(handle)


CONTRACTS = {name: _contract(name) for name in ("get_agent_state", "install_agent", "uninstall_agent")}


class FakeDevice:
    """The scripts folder (file name -> bytes), the heartbeat task and the check-in, by the contracts."""

    def __init__(self, fail=None):
        self.files = {}
        self.folder = False
        self.task = None
        self.fail = fail
        self.calls = []

    def shell(self):
        if self.fail:
            raise self.fail
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def run(self, script, script_input=None):
        contract = CONTRACTS[script.name]
        jsonschema.validate(script_input or {}, contract["input"])
        self.calls.append((script.name, script_input))
        answer = getattr(self, script.name)(script_input or {})
        jsonschema.validate(answer, contract["output"])
        return answer

    def file_state(self, name):
        data = self.files.get(name)
        if data is None:
            return {"present": False, "version": None, "sha256": None}
        text = data.decode("utf-8").lstrip("\ufeff")
        version = None
        if f"# device-script: {name}\n" in text:
            for line in text.splitlines():
                if line.startswith("# version: "):
                    version = int(line.split(":")[1])
                    break
        return {"present": True, "version": version, "sha256": hashlib.sha256(data).hexdigest()}

    def get_agent_state(self, request):
        return {"script_version": 1, "device_time": NOW, "system_root": "C:\\Windows",
                "folder": {"path": FOLDER, "exists": self.folder, "locked_down": self.folder},
                "files": {name: self.file_state(name) for name in request["components"]},
                "heartbeat_task": None if self.task is None else dict(self.task),
                "last_checkin": NOW if self.task and self.task["state"] != "Disabled" else None}

    def install_agent(self, request):
        self.folder = True
        for name, text in request["files"].items():
            assert f"# device-script: {name}" in text
            self.files[name] = b"\xef\xbb\xbf" + text.encode("utf-8")
        if request["heartbeat_task"]:
            assert "heartbeat" in self.files, "install_agent.ps1 refuses a heartbeat task without its script"
            self.task = heartbeat_task()
        return {"script_version": 1, "device_time": NOW, "written": list(request["files"]),
                "heartbeat_task_registered": request["heartbeat_task"], "last_checkin": NOW}

    # What uninstall_agent.ps1 finds beside the scripts and the task; `live` stands for what makes it refuse.
    registry_key = True
    event_source = True
    partial_files = ()
    live = None

    def uninstall_agent(self, request):
        found = {"tasks": ["RemoteSupport-Heartbeat"] if self.task else [],
                 "folder": "C:\\ProgramData\\RemoteSupport" if self.folder else None,
                 "registry_key": "HKLM:\\SOFTWARE\\RemoteSupport" if self.registry_key else None,
                 "event_source": "RemoteSupport.Windows" if self.event_source else None,
                 "partial_files": list(self.partial_files)}
        anything = any(found.values())
        if self.live is not None:
            return {"script_version": 1, "device_time": NOW, "found": found, "removed": False,
                    "refused": {"reason": self.live, "message": f"{self.live} on this device; end it first."}}
        removed = anything and not request["check_only"]
        if removed:
            self.task, self.folder, self.files = None, False, {}
            self.registry_key = self.event_source = False
            self.partial_files = ()
        return {"script_version": 1, "device_time": NOW, "found": found, "removed": removed, "refused": None}

    @property
    def installs(self):
        return [call[1] for call in self.calls if call[0] == "install_agent"]


def heartbeat_task(**changes):
    task = {"state": "Ready", "execute": POWERSHELL,
            "arguments": f'-NoProfile -NonInteractive -ExecutionPolicy Bypass -WindowStyle Hidden -File "{FOLDER}\\heartbeat.ps1"',
            "user_id": "SYSTEM", "interval_seconds": 60, "last_run_time": NOW, "last_task_result": 0}
    task.update(changes)
    return task


def run(device, check_mode=False, **options):
    return sa.run(device, {"state": "present", "allow_downgrade": False, **options}, check_mode=check_mode, diff=True)


def installed(device):
    run(device)
    device.calls.clear()
    return device


def with_version(script, version, text=None):
    body = (text or script.text).replace(f"# version: {script.version}", f"# version: {version}", 1)
    return dataclasses.replace(script, version=version, text=body)


def test_a_new_device_gets_every_piece():
    device = FakeDevice()
    result = run(device)
    assert result["changed"] is True
    assert {name: s["action"] for name, s in result["scripts"].items()} == dict.fromkeys(sa.COMPONENTS, "installed")
    assert result["heartbeat_task"]["action"] == "registered"
    request = device.installs[0]
    assert set(request["files"]) == set(sa.COMPONENTS)
    assert request["files"]["consent_prompt"] == device_script.load("consent_prompt").text  # one source
    assert request["heartbeat_task"] is True and request["heartbeat_interval_seconds"] == 60
    assert request["audit"]["event_id"] == sa.AGENT_CHANGED_EVENT_ID
    assert "scripts folder locked down" in result["changes"]


def test_an_unchanged_collection_changes_nothing():
    device = installed(FakeDevice())
    result = run(device)
    assert result["changed"] is False and device.installs == []
    assert {s["action"] for s in result["scripts"].values()} == {"current"}
    assert all(s["version"] == s["installed_version"] == device_script.load(n).version
               for n, s in result["scripts"].items())


def test_a_newer_collection_upgrades_only_what_it_changed(monkeypatch):
    device = installed(FakeDevice())
    scripts = sa.shipped()
    scripts["expire_session"] = with_version(scripts["expire_session"], scripts["expire_session"].version + 1)
    monkeypatch.setattr(sa, "shipped", lambda: scripts)
    result = run(device)
    assert result["changed"] is True
    assert result["scripts"]["expire_session"]["action"] == "upgraded"
    assert result["changes"] == [f"expire_session upgraded ({scripts['expire_session'].version - 1} -> "
                                 f"{scripts['expire_session'].version})"]
    assert list(device.installs[0]["files"]) == ["expire_session"]
    assert device.installs[0]["heartbeat_task"] is False
    assert result["diff"]["before"]["expire_session"] == scripts["expire_session"].version - 1
    assert result["diff"]["after"]["expire_session"] == scripts["expire_session"].version
    monkeypatch.setattr(sa, "shipped", lambda: scripts)
    assert run(device)["changed"] is False


def test_a_file_altered_on_the_device_is_repaired():
    device = installed(FakeDevice())
    device.files["heartbeat"] = device.files["heartbeat"] + b"\r\nRemove-Item C:\\ -Recurse\r\n"
    result = run(device)
    assert result["scripts"]["heartbeat"]["action"] == "repaired"
    assert device.files["heartbeat"] == sa.file_bytes(device_script.load("heartbeat").text)


def test_a_newer_version_on_the_device_is_kept_unless_downgrades_are_allowed(monkeypatch):
    device = installed(FakeDevice())
    scripts = sa.shipped()
    newer = with_version(scripts["heartbeat"], scripts["heartbeat"].version + 1)
    device.files["heartbeat"] = sa.file_bytes(newer.text)
    result = run(device)
    assert result["changed"] is False and result["scripts"]["heartbeat"]["action"] == "newer_kept"
    assert "newer than" in result["warnings"][0]
    result = run(device, allow_downgrade=True)
    assert result["changed"] is True and result["scripts"]["heartbeat"]["action"] == "downgraded"
    assert device.files["heartbeat"] == sa.file_bytes(scripts["heartbeat"].text)


@pytest.mark.parametrize("change,action", [
    ({"state": "Disabled"}, "enabled"),
    ({"interval_seconds": 3600}, "repaired"),
    ({"user_id": "CONTOSO\\someone"}, "repaired"),
    ({"arguments": '-File "C:\\Temp\\heartbeat.ps1"'}, "repaired"),
    ({"execute": "C:\\Temp\\powershell.exe"}, "repaired"),
])
def test_a_heartbeat_task_that_is_disabled_or_altered_is_registered_again(change, action):
    device = installed(FakeDevice())
    device.task = heartbeat_task(**change)
    result = run(device)
    assert result["changed"] is True and result["heartbeat_task"]["action"] == action
    assert device.installs[0]["files"] == {} and device.installs[0]["heartbeat_task"] is True
    assert device.task == heartbeat_task()


def test_the_task_definition_is_compared_as_windows_does():
    device = installed(FakeDevice())
    device.task = heartbeat_task(execute=f'"{POWERSHELL.upper()}"', user_id="NT AUTHORITY\\SYSTEM",
                                 arguments=heartbeat_task()["arguments"].replace(" -File", "  -File"))
    assert run(device)["changed"] is False


def test_check_mode_reports_and_writes_nothing():
    device = FakeDevice()
    result = run(device, check_mode=True)
    assert result["changed"] is True and result["msg"].startswith("Would change")
    assert device.installs == [] and device.files == {}


def test_query_reports_what_differs_and_writes_nothing():
    device = FakeDevice()
    result = run(device, state="query")
    assert result["changed"] is False and device.installs == []
    assert "Differs" in result["msg"] and result["heartbeat_task"]["registered"] is False


def test_an_unreachable_device_fails_with_the_reason():
    result = run(FakeDevice(fail=DeviceError("timeout", "127.0.0.1:5986 did not answer")))
    assert result["failed"] is True and result["connection"]["reason"] == "timeout"
    assert result["msg"] == "Unable to connect to the device: 127.0.0.1:5986 did not answer"


def test_the_agent_ships_the_scripts_the_session_route_runs():
    assert sa.SESSION_TASK_SCRIPTS == support_session.TASK_SCRIPTS


def test_files_are_hashed_as_the_device_writes_them():
    assert sa.file_sha256("# x\n") == hashlib.sha256(b"\xef\xbb\xbf# x\n").hexdigest()


def test_absent_removes_every_piece_once_and_audits_it():
    device = installed(FakeDevice())
    device.partial_files = ("C:\\Users\\Public\\~rs-t1.partial",)
    result = run(device, state="absent")
    assert result["changed"] is True and "failed" not in result
    assert result["removed"] == ["scheduled task RemoteSupport-Heartbeat", "folder C:\\ProgramData\\RemoteSupport",
                                 "registry key HKLM:\\SOFTWARE\\RemoteSupport", "event source RemoteSupport.Windows",
                                 "transfer temporary file C:\\Users\\Public\\~rs-t1.partial"]
    assert result["diff"]["after"] == {"agent": []}
    (name, request), = device.calls
    assert name == "uninstall_agent" and request["check_only"] is False
    assert request["audit"]["event_id"] == sa.AGENT_REMOVED_EVENT_ID
    again = run(device, state="absent")
    assert again["changed"] is False and again["removed"] == [] and again["msg"] == "Nothing of the agent is on the device"


def test_absent_in_check_mode_reports_and_removes_nothing():
    device = installed(FakeDevice())
    result = run(device, check_mode=True, state="absent")
    assert result["changed"] is True and result["removed"] == [] and result["msg"].startswith("Would remove: ")
    assert device.calls[0][1]["check_only"] is True and device.task is not None and device.files


@pytest.mark.parametrize("live", ["session_active", "remote_control_granted", "transfer_running"])
def test_absent_fails_and_changes_nothing_while_something_is_live(live):
    device = installed(FakeDevice())
    device.live = live
    result = run(device, state="absent")
    assert result["failed"] is True and result["changed"] is False and result["refused"] == live
    assert result["msg"].startswith("The agent was not removed, nothing changed: ")
    assert device.task is not None and device.files


def test_absent_on_an_unreachable_device_fails_with_the_reason():
    result = run(FakeDevice(fail=DeviceError("timeout", "no answer")), state="absent")
    assert result["failed"] is True and result["device_status"] == "unreachable"
