"""The support-policy and support-agent device scripts through real WinRM (pywinrm, the bootstrap, the script on
stdin), checked against their written contracts, with the device state read back through the control surface."""

from __future__ import annotations

import datetime
import hashlib
import itertools
import typing as t

import pytest

from lab_fixtures import ScriptDevice, contract_of, module_lab, run_device_script, text_of
from winrm_lab.control import ControlError
from winrm_lab.emulation.powershell import device_scripts_dir

SCRIPTS = device_scripts_dir()
assert SCRIPTS is not None
POLICY_KEY = r"HKLM:\SOFTWARE\RemoteSupport\Policy"
SHADOW_KEY = r"HKLM:\SOFTWARE\Policies\Microsoft\Windows NT\Terminal Services"
AGENT_KEY = r"HKLM:\SOFTWARE\RemoteSupport\Agent"
FOLDER = r"C:\ProgramData\RemoteSupport\scripts"
AGENT_SCRIPTS = ("heartbeat", "consent_prompt", "apply_consent", "expire_session")
STAMP = "%Y-%m-%dT%H:%M:%SZ"


lab = module_lab("policy", devices=16, seed=3, slot=73)


_next_device = itertools.count()


class Device(ScriptDevice):
    """One lab device of its own per test."""

    def __init__(self, lab: t.Any) -> None:
        super().__init__(lab, lab.devices[next(_next_device)])

    def fails(self, name: str, script_input: dict[str, t.Any]) -> str:
        outcome = run_device_script(self.protocol, text_of(name), script_input)
        assert outcome.exit_code == 1 and outcome.stdout == b""
        return outcome.stderr.decode("utf-8", "replace")

    def registry(self, path: str) -> dict[str, t.Any]:
        try:
            return self.lab.control.request("GET", f"/devices/{self.name}/registry", query={"path": path})["values"]
        except ControlError as error:
            if error.status != 404:
                raise
            return {}

    def state(self) -> dict[str, t.Any]:
        return self.lab.control.request("GET", f"/devices/{self.name}")


@pytest.fixture
def device(lab):
    return Device(lab)


AUDIT = {"event_id": 1040, "entry_type": "Information", "message": "Support policy changed by tester: test"}


def test_a_device_without_a_policy_reads_empty(device):
    answer = device.run("get_support_policy")
    assert answer["policy_key_exists"] is False
    assert answer["values"] == {} and answer["shadow"] is None


def test_set_writes_only_what_it_is_given_with_its_kind_and_stamps_who(device):
    values = [
        {"name": "ConfirmationRequired", "kind": "DWord", "data": 0},
        {"name": "SessionTtlSeconds", "kind": "DWord", "data": 1800},
        {"name": "RemoteControlMode", "kind": "String", "data": "view"},
        {"name": "FileTransferAllowedRoots", "kind": "MultiString", "data": ["C:\\Users\\Public", "D:\\Support"]},
        {"name": "FileTransferMaxSizeBytes", "kind": "QWord", "data": 8 * 1024 ** 3},
    ]
    answer = device.run("set_support_policy", {"values": values, "shadow": {"kind": "DWord", "data": 4},
                                               "changed_by": "tester", "audit": AUDIT})
    assert answer["written"] == 6 and answer["policy_key_exists"] is True
    stored = answer["values"]
    assert stored["ConfirmationRequired"] == {"kind": "DWord", "data": 0}
    assert stored["RemoteControlMode"] == {"kind": "String", "data": "view"}
    assert stored["FileTransferAllowedRoots"] == {"kind": "MultiString", "data": ["C:\\Users\\Public", "D:\\Support"]}
    assert stored["FileTransferMaxSizeBytes"] == {"kind": "QWord", "data": 8 * 1024 ** 3}
    assert stored["ChangedBy"] == {"kind": "String", "data": "tester"}
    assert "ConfirmationTimeoutSeconds" not in stored  # not given, not written
    assert answer["shadow"] == {"kind": "DWord", "data": 4}
    assert device.registry(SHADOW_KEY)["Shadow"] == 4
    assert device.registry(POLICY_KEY)["SessionTtlSeconds"] == 1800
    events = device.lab.control.request("GET", f"/devices/{device.name}/events", query={"log": "Application"})
    assert [e["event_id"] for e in events if e["source"] == "RemoteSupport.Windows"] == [1040]
    # What the reader sees is what was written.
    assert device.run("get_support_policy")["values"] == stored


def test_set_with_nothing_to_write_changes_nothing(device):
    answer = device.run("set_support_policy", {"values": [], "shadow": None, "changed_by": "tester", "audit": AUDIT})
    assert answer["written"] == 0 and answer["policy_key_exists"] is False
    assert device.registry(POLICY_KEY) == {}


def test_set_refuses_values_that_are_not_the_policys(device):
    message = device.fails("set_support_policy", {"values": [{"name": "Shadow", "kind": "DWord", "data": 2}],
                                                  "shadow": None, "changed_by": "tester", "audit": AUDIT})
    assert "Cannot validate argument on parameter 'InputObject'" in message
    message = device.fails("set_support_policy", {"values": [], "shadow": {"kind": "DWord", "data": 7},
                                                  "changed_by": "tester", "audit": AUDIT})
    assert "Cannot validate argument" in message
    assert device.registry(POLICY_KEY) == {} and device.registry(SHADOW_KEY) == {}


def test_values_written_by_hand_are_reported_with_their_kind(device):
    device.lab.control.request("PUT", f"/devices/{device.name}/registry",
                               {"path": POLICY_KEY, "name": "SessionTtlSeconds", "value": "3600"})
    answer = device.run("get_support_policy")
    assert answer["values"]["SessionTtlSeconds"] == {"kind": "String", "data": "3600"}


def install_request(names=AGENT_SCRIPTS, heartbeat_task=True) -> dict[str, t.Any]:
    return {"files": {name: text_of(name) for name in names}, "heartbeat_task": heartbeat_task,
            "heartbeat_interval_seconds": 60,
            "audit": {"event_id": 1041, "entry_type": "Information", "message": "Support agent: installed"}}


def test_a_device_without_the_agent_reads_so(device):
    answer = device.run("get_agent_state", {"components": list(AGENT_SCRIPTS)})
    assert answer["folder"] == {"path": FOLDER, "exists": False, "locked_down": False}
    assert answer["files"] == {name: {"present": False, "version": None, "sha256": None} for name in AGENT_SCRIPTS}
    assert answer["heartbeat_task"] is None
    assert answer["system_root"] == "C:\\Windows"


def test_install_writes_the_scripts_with_a_bom_and_registers_the_heartbeat(device):
    answer = device.run("install_agent", install_request())
    assert sorted(answer["written"]) == sorted(AGENT_SCRIPTS) and answer["heartbeat_task_registered"] is True
    for name in AGENT_SCRIPTS:
        stored = device.lab.control.request("GET", f"/devices/{device.name}/files",
                                            query={"path": f"{FOLDER}\\{name}.ps1"})
        expected = b"\xef\xbb\xbf" + text_of(name).encode("utf-8")
        assert stored["sha256"] == hashlib.sha256(expected).hexdigest()
    state = device.run("get_agent_state", {"components": list(AGENT_SCRIPTS)})
    assert state["folder"]["exists"] and state["folder"]["locked_down"]
    assert {name: found["version"] for name, found in state["files"].items()} == {
        name: contract_of(name)["version"] for name in AGENT_SCRIPTS}
    task = state["heartbeat_task"]
    assert task["state"] == "Ready" and task["user_id"] == "SYSTEM" and task["interval_seconds"] == 60
    assert task["arguments"].endswith(f'-File "{FOLDER}\\heartbeat.ps1"')
    assert device.state()["agent"]["heartbeat_task"]["state"] == "Ready"


def test_a_disabled_heartbeat_stops_checking_in_until_installed_again(device):
    device.run("install_agent", install_request())
    device.lab.control.request("PUT", f"/devices/{device.name}/agent", {"running": False})
    device.lab.control.request("POST", f"/devices/{device.name}/clock/advance", {"seconds": 3 * 3600})
    state = device.run("get_agent_state", {"components": ["heartbeat"]})
    assert state["heartbeat_task"]["state"] == "Disabled"
    age = (datetime.datetime.strptime(state["device_time"], STAMP)
           - datetime.datetime.strptime(state["last_checkin"], STAMP)).total_seconds()
    assert age >= 3 * 3600
    answer = device.run("install_agent", install_request(names=(), heartbeat_task=True))
    assert answer["written"] == [] and answer["heartbeat_task_registered"] is True
    state = device.run("get_agent_state", {"components": ["heartbeat"]})
    age = (datetime.datetime.strptime(state["device_time"], STAMP)
           - datetime.datetime.strptime(state["last_checkin"], STAMP)).total_seconds()
    assert state["heartbeat_task"]["state"] == "Ready" and age < 60


def test_the_heartbeat_task_needs_its_script(device):
    message = device.fails("install_agent", install_request(names=(), heartbeat_task=True))
    assert "The heartbeat script is not installed" in message
    assert device.state()["agent"]["heartbeat_task"] is None


def test_a_script_under_another_name_is_refused(device):
    request = install_request(names=())
    request["files"] = {"heartbeat": text_of("expire_session")}
    message = device.fails("install_agent", request)
    assert "is not the heartbeat device script" in message


def test_an_altered_file_reads_with_its_own_hash_and_version(device):
    device.run("install_agent", install_request())
    older = text_of("heartbeat").replace(f"# version: {contract_of('heartbeat')['version']}\n", "# version: 0\n")
    assert older != text_of("heartbeat")
    device.lab.control.request("PUT", f"/devices/{device.name}/files", query={"path": f"{FOLDER}\\heartbeat.ps1"},
                               raw=b"\xef\xbb\xbf" + older.encode("utf-8"))
    found = device.run("get_agent_state", {"components": ["heartbeat"]})["files"]["heartbeat"]
    assert found["version"] == 0
    assert found["sha256"] == hashlib.sha256(b"\xef\xbb\xbf" + older.encode("utf-8")).hexdigest()


def test_the_heartbeat_checks_in_by_the_devices_clock(device):
    # A stopped agent's last check-in only ages; running the heartbeat by hand checks in, and that value stays.
    device.lab.control.request("PUT", f"/devices/{device.name}/agent", {"running": False})
    device.lab.control.request("POST", f"/devices/{device.name}/clock/advance", {"seconds": 7200})
    answer = device.run("heartbeat")
    assert device.registry(AGENT_KEY)["LastCheckIn"] == answer["last_checkin"]
    assert device.state()["agent"]["last_checkin"] == answer["last_checkin"]
    # A running agent checks in every interval: the lab shows the latest interval's check-in.
    device.lab.control.request("PUT", f"/devices/{device.name}/agent", {"running": True})
    answer = device.run("heartbeat")
    shown = datetime.datetime.strptime(device.registry(AGENT_KEY)["LastCheckIn"], STAMP)
    assert 0 <= (datetime.datetime.strptime(answer["last_checkin"], STAMP) - shown).total_seconds() < 60
