# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""support_agent's core against a lab device in process: the agent's files are files of the device's drive C:, the
check-in task is the device's, and the agent scripts' emulations answer install, leave alone, upgrade, repair, keep
a newer one."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from winrm_lab.emulation import remote_control as lab_remote_control
from winrm_lab.emulation import session as lab_session
from winrm_lab.emulation import support_agent as lab_agent

from ansible_collections.remote_support.windows.plugins.module_utils import device_script
from ansible_collections.remote_support.windows.plugins.module_utils import session_state as sm
from ansible_collections.remote_support.windows.plugins.module_utils import support_agent as sa
from ansible_collections.remote_support.windows.plugins.module_utils import support_session

FOLDER = "C:\\ProgramData\\RemoteSupport\\scripts"
POWERSHELL = "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"
ARGUMENTS = f'-NoProfile -NonInteractive -ExecutionPolicy Bypass -WindowStyle Hidden -File "{FOLDER}\\heartbeat.ps1"'


def agent_file(device, name):
    """The bytes of the agent script NAME on the device, or None."""
    path = device.device.windows_path(lab_agent.script_path(name))
    return path.read_bytes() if path.is_file() else None


def put_agent_file(device, name, data):
    device.device.windows_path(lab_agent.script_path(name)).write_bytes(data)


def agent_files(device):
    folder = device.device.windows_path(FOLDER)
    return sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []


def heartbeat_task(device):
    """The check-in task as Get-ScheduledTask reports it (without its run times), or None."""
    task = lab_agent.heartbeat_task_state(device.device)
    return None if task is None else {key: task[key] for key in ("state", "execute", "arguments", "user_id",
                                                                 "interval_seconds")}


REGISTERED = {"state": "Ready", "execute": POWERSHELL, "arguments": ARGUMENTS, "user_id": "SYSTEM",
              "interval_seconds": 60}


def change_task(device, state=None, **changes):
    """Someone disabled or altered the check-in task on the device."""
    agent = device.device.agent
    agent.heartbeat_task = dataclasses.replace(agent.heartbeat_task, **changes)
    if state == "Disabled":
        agent.running = False
        agent.stopped_last_checkin = device.now()


def installs(device):
    return [script_input for name, script_input in device.calls if name == "install_agent"]


def make_live(device, live):
    """What makes uninstall_agent.ps1 refuse: a live session, a remote-control grant, a registered transfer."""
    registry = device.device.registry
    if live == "session_active":
        record = sm.request(None, device.now(), requested_by="jdoe", reason="INC-4711", confirmation_required=False)
        lab_session.write_record(device.device, record.to_dict())
    elif live == "remote_control_granted":
        registry.set(lab_remote_control.GRANT_KEY, "Account", "CONTOSO\\jdoe")
    else:
        registry.set(f"{lab_agent.TRANSFERS_KEY}\\t1", "Path", "C:\\Users\\Public\\x.bin")


def run(device, check_mode=False, **options):
    return sa.run(device, {"state": "present", "allow_downgrade": False, **options}, check_mode=check_mode, diff=True)


def installed(device):
    assert "failed" not in run(device)
    device.calls.clear()
    return device


def with_version(script, version, text=None):
    body = (text or script.text).replace(f"# version: {script.version}", f"# version: {version}", 1)
    return dataclasses.replace(script, version=version, text=body)


def test_a_new_device_gets_every_piece(lab):
    device = lab()
    result = run(device)
    assert result["changed"] is True
    assert {name: s["action"] for name, s in result["scripts"].items()} == dict.fromkeys(sa.COMPONENTS, "installed")
    assert result["heartbeat_task"]["action"] == "registered"
    request = installs(device)[0]
    assert set(request["files"]) == set(sa.COMPONENTS)
    assert request["files"]["consent_prompt"] == device_script.load("consent_prompt").text  # one source
    assert request["heartbeat_task"] is True and request["heartbeat_interval_seconds"] == 60
    assert request["audit"]["event_id"] == sa.AGENT_CHANGED_EVENT_ID
    assert "scripts folder locked down" in result["changes"]


def test_an_unchanged_collection_changes_nothing(lab):
    device = installed(lab())
    result = run(device)
    assert result["changed"] is False and installs(device) == []
    assert {s["action"] for s in result["scripts"].values()} == {"current"}
    assert all(s["version"] == s["installed_version"] == device_script.load(n).version
               for n, s in result["scripts"].items())


def test_a_newer_collection_upgrades_only_what_it_changed(lab, monkeypatch):
    device = installed(lab())
    scripts = sa.shipped()
    scripts["expire_session"] = with_version(scripts["expire_session"], scripts["expire_session"].version + 1)
    monkeypatch.setattr(sa, "shipped", lambda: scripts)
    result = run(device)
    assert result["changed"] is True
    assert result["scripts"]["expire_session"]["action"] == "upgraded"
    assert result["changes"] == [f"expire_session upgraded ({scripts['expire_session'].version - 1} -> "
                                 f"{scripts['expire_session'].version})"]
    assert list(installs(device)[0]["files"]) == ["expire_session"]
    assert installs(device)[0]["heartbeat_task"] is False
    assert result["diff"]["before"]["expire_session"] == scripts["expire_session"].version - 1
    assert result["diff"]["after"]["expire_session"] == scripts["expire_session"].version
    monkeypatch.setattr(sa, "shipped", lambda: scripts)
    assert run(device)["changed"] is False


def test_a_file_altered_on_the_device_is_repaired(lab):
    device = installed(lab())
    put_agent_file(device, "heartbeat", agent_file(device, "heartbeat") + b"\r\nRemove-Item C:\\ -Recurse\r\n")
    result = run(device)
    assert result["scripts"]["heartbeat"]["action"] == "repaired"
    assert agent_file(device, "heartbeat") == sa.file_bytes(device_script.load("heartbeat").text)


def test_a_newer_version_on_the_device_is_kept_unless_downgrades_are_allowed(lab, monkeypatch):
    device = installed(lab())
    scripts = sa.shipped()
    newer = with_version(scripts["heartbeat"], scripts["heartbeat"].version + 1)
    put_agent_file(device, "heartbeat", sa.file_bytes(newer.text))
    result = run(device)
    assert result["changed"] is False and result["scripts"]["heartbeat"]["action"] == "newer_kept"
    assert "newer than" in result["warnings"][0]
    result = run(device, allow_downgrade=True)
    assert result["changed"] is True and result["scripts"]["heartbeat"]["action"] == "downgraded"
    assert agent_file(device, "heartbeat") == sa.file_bytes(scripts["heartbeat"].text)


@pytest.mark.parametrize("change,action", [
    ({"state": "Disabled"}, "enabled"),
    ({"interval_seconds": 3600}, "repaired"),
    ({"user_id": "CONTOSO\\someone"}, "repaired"),
    ({"arguments": '-File "C:\\Temp\\heartbeat.ps1"'}, "repaired"),
    ({"execute": "C:\\Temp\\powershell.exe"}, "repaired"),
])
def test_a_heartbeat_task_that_is_disabled_or_altered_is_registered_again(lab, change, action):
    device = installed(lab())
    change_task(device, **change)
    result = run(device)
    assert result["changed"] is True and result["heartbeat_task"]["action"] == action
    assert installs(device)[0]["files"] == {} and installs(device)[0]["heartbeat_task"] is True
    assert heartbeat_task(device) == REGISTERED


def test_the_task_definition_is_compared_as_windows_does(lab):
    device = installed(lab())
    change_task(device, execute=f'"{POWERSHELL.upper()}"', user_id="NT AUTHORITY\\SYSTEM",
                arguments=ARGUMENTS.replace(" -File", "  -File"))
    assert run(device)["changed"] is False


def test_check_mode_reports_and_writes_nothing(lab):
    device = lab()
    result = run(device, check_mode=True)
    assert result["changed"] is True and result["msg"].startswith("Would change")
    assert installs(device) == [] and agent_files(device) == []


def test_query_reports_what_differs_and_writes_nothing(lab):
    device = lab()
    result = run(device, state="query")
    assert result["changed"] is False and installs(device) == []
    assert "Differs" in result["msg"] and result["heartbeat_task"]["registered"] is False


def test_an_unreachable_device_fails_with_the_reason(lab):
    result = run(lab("blackhole"))
    assert result["failed"] is True and result["connection"]["reason"] == "timeout"
    assert result["msg"].startswith("Unable to connect to the device: ")
    assert ":5986 did not answer within 10 s to connect" in result["msg"]


def test_the_agent_ships_the_scripts_the_session_route_runs():
    assert sa.SESSION_TASK_SCRIPTS == support_session.TASK_SCRIPTS


def test_files_are_hashed_as_the_device_writes_them():
    assert sa.file_sha256("# x\n") == hashlib.sha256(b"\xef\xbb\xbf# x\n").hexdigest()


def test_absent_removes_every_piece_once_and_audits_it(lab):
    device = installed(lab())
    # A transfer temporary file an interrupted transfer left, in a folder the device noted transfers in.
    device.device.windows_path("C:\\Users\\Public\\~rs-t1.partial").write_bytes(b"part")
    device.device.registry.set(lab_agent.AGENT_REGISTRY_KEY, lab_agent.TRANSFER_FOLDERS_VALUE, ["C:\\Users\\Public"])
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


def test_absent_in_check_mode_reports_and_removes_nothing(lab):
    device = installed(lab())
    result = run(device, check_mode=True, state="absent")
    assert result["changed"] is True and result["removed"] == [] and result["msg"].startswith("Would remove: ")
    assert device.calls[0][1]["check_only"] is True and heartbeat_task(device) is not None and agent_files(device)


@pytest.mark.parametrize("live", ["session_active", "remote_control_granted", "transfer_running"])
def test_absent_fails_and_changes_nothing_while_something_is_live(lab, live):
    device = installed(lab())
    make_live(device, live)
    result = run(device, state="absent")
    assert result["failed"] is True and result["changed"] is False and result["refused"] == live
    assert result["msg"].startswith("The agent was not removed, nothing changed: ")
    assert heartbeat_task(device) is not None and agent_files(device)


def test_absent_on_an_unreachable_device_fails_with_the_reason(lab):
    result = run(lab("blackhole"), state="absent")
    assert result["failed"] is True and result["device_status"] == "unreachable"
