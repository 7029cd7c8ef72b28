"""The lab's names for what the collection leaves on a device come from the collection's device_layout.json, read as
the contracts are read, so a renamed key, task or event id reaches the emulations without a second edit."""

from __future__ import annotations

import json

import pytest

from winrm_lab import device
from winrm_lab.emulation import layout, powershell, remote_control, session, support_agent, support_policy, transfers
from winrm_lab.emulation.scripts import DeviceScriptError

SCRIPTS = powershell.device_scripts_dir()
assert SCRIPTS is not None
LAYOUT = json.loads((SCRIPTS / "device_layout.json").read_text(encoding="utf-8"))


def test_the_emulations_use_the_collections_layout():
    registry, tasks = LAYOUT["registry"], LAYOUT["tasks"]
    assert (session.SESSION_KEY, session.POLICY_KEY, session.CONSENT_REQUEST_KEY, session.CONSENT_KEY) == (
        registry["session"], registry["policy"], registry["consent_request"], registry["consent"])
    assert (remote_control.GRANT_KEY, remote_control.UNDO_KEY) == (registry["remote_control"],
                                                                   registry["remote_control_undo"])
    assert transfers.TRANSFERS_KEY == support_agent.TRANSFERS_KEY == registry["transfers"]
    assert device.AGENT_REGISTRY_KEY == registry["agent"] and device.COLLECTION_REGISTRY_KEY == registry["root"]
    assert (session.PROMPT_TASK, session.APPLY_CONSENT_TASK, session.EXPIRE_TASK, session.END_REMOTE_CONTROL_TASK,
            support_agent.HEARTBEAT_TASK) == (tasks["consent_prompt"], tasks["apply_consent"], tasks["expire_session"],
                                              tasks["end_remote_control"], tasks["heartbeat"])
    assert set(support_agent.TASK_NAMES) == set(tasks.values())
    assert session.EVENT_SOURCE == support_agent.EVENT_SOURCE == support_policy.EVENT_SOURCE == "RemoteSupport.Windows"
    assert session.SCRIPTS_FOLDER == support_agent.SCRIPTS_FOLDER == r"C:\ProgramData\RemoteSupport\scripts"
    assert support_agent.ROOT_FOLDER == r"C:\ProgramData\RemoteSupport"
    assert transfers.AUDIT_EVENTS == {"completed": 1030, "stopped": 1031, "failed": 1032}


def test_a_contract_names_its_events_by_the_layout():
    assert session.audit_events("stop_remote_control") == {"stopped": 1021, "ended_by_device": 1022}
    assert session.audit_events("apply_consent") == {"authorized": 1001, "denied": 1002, "timed_out": 1003,
                                                     "renewed": 1007}
    with pytest.raises(DeviceScriptError):
        layout.event_id("remote_control")


def test_the_layout_is_the_collections_also_when_the_scripts_come_from_elsewhere(monkeypatch, tmp_path):
    """$WINRM_LAB_DEVICE_SCRIPTS may point at other scripts (the benchmarks'); the layout stays the collection's."""
    monkeypatch.setenv(powershell.DEVICE_SCRIPTS_ENV, str(tmp_path))
    assert layout._layout_path() == powershell.collection_scripts_dir() / "device_layout.json"
