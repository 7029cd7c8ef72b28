"""The agent's removal (uninstall_agent.ps1) and the heartbeat's cleanup of what interrupted transfers leave
(~rs-*.partial), through real WinRM against lab devices, checked against their contracts; the device state is read
back through the control surface and the lab's file tree."""

from __future__ import annotations

import datetime
import itertools
import os
import typing as t

import pytest

from lab_fixtures import ScriptDevice, module_lab, text_of
from winrm_lab.control import ControlError
from winrm_lab.emulation.powershell import device_scripts_dir

SCRIPTS = device_scripts_dir()
assert SCRIPTS is not None
AGENT_SCRIPTS = ("heartbeat", "consent_prompt", "apply_consent", "expire_session")
ROOT_KEY = r"HKLM:\SOFTWARE\RemoteSupport"
AGENT_KEY = ROOT_KEY + r"\Agent"
TRANSFERS_KEY = ROOT_KEY + r"\Transfers"
SESSION_KEY = ROOT_KEY + r"\Session"
SOURCE_KEY = r"HKLM:\SYSTEM\CurrentControlSet\Services\EventLog\Application\RemoteSupport.Windows"
INBOX = r"C:\Users\Public\Inbox"
STAMP = "%Y-%m-%dT%H:%M:%SZ"
DAY = 86400
AUDIT = {"event_id": 1042, "entry_type": "Information", "message": "Support agent removed by tester"}


lab = module_lab("removal", devices=12, seed=5, slot=79)


_next_device = itertools.count()


class Device(ScriptDevice):
    def __init__(self, lab: t.Any) -> None:
        super().__init__(lab, lab.devices[next(_next_device)])

    def install(self) -> None:
        self.run("install_agent", {"files": {name: text_of(name) for name in AGENT_SCRIPTS}, "heartbeat_task": True,
                                   "heartbeat_interval_seconds": 60, "audit": {
                                       "event_id": 1041, "entry_type": "Information", "message": "installed"}})

    def has_key(self, path: str) -> bool:
        try:
            self.lab.control.registry(self.name, path)
            return True
        except ControlError as error:
            assert error.status == 404
            return False

    def set(self, path: str, name: str, value: t.Any) -> None:
        self.lab.control.set_registry_value(self.name, path, name, value)

    def file(self, path: str) -> t.Any:
        try:
            return self.lab.control.request("GET", f"/devices/{self.name}/files", query={"path": path})
        except ControlError as error:
            assert error.status == 404
            return None

    def put_file(self, path: str, data: bytes = b"part") -> None:
        self.lab.control.request("PUT", f"/devices/{self.name}/files", query={"path": path}, raw=data)

    def local(self, windows_path: str):
        """Where the lab keeps a device path, to set a file's modification time (the device's LastWriteTimeUtc)."""
        parts = [p for p in windows_path[3:].split("\\") if p]
        return self.lab.directory.joinpath("work", "devices", self.name, windows_path[0].upper(), *parts)

    def age(self, windows_path: str, seconds: float, device_time: str) -> None:
        now = datetime.datetime.strptime(device_time, STAMP).replace(tzinfo=datetime.timezone.utc).timestamp()
        os.utime(self.local(windows_path), (now - seconds, now - seconds))

    def events(self) -> list[dict[str, t.Any]]:
        return self.lab.control.events(self.name)


@pytest.fixture
def device(lab):
    return Device(lab)


def transfer(device: Device, transfer_id: str, path: str) -> None:
    key = f"{TRANSFERS_KEY}\\{transfer_id}"
    device.set(key, "Direction", "to_device")
    device.set(key, "Path", path)


# The heartbeat's cleanup --------------------------------------------------------------------------------------------
def test_the_heartbeat_removes_only_day_old_temporary_files_where_transfers_wrote(device):
    old, young, other = (f"{INBOX}\\~rs-old1.partial", f"{INBOX}\\~rs-young1.partial",
                         r"C:\Users\Public\Elsewhere\~rs-old2.partial")
    for path in (old, young, other):
        device.put_file(path)
    keep = f"{INBOX}\\notes~rs-x.partial.txt"
    device.put_file(keep)
    transfer(device, "t1", f"{INBOX}\\report.pdf")
    first = device.run("heartbeat")
    # The first run notes the folder and cleans at once: nothing is a day old yet.
    assert first["partial_files_cleaned"] is True and first["partial_files_removed"] == []
    assert device.lab.control.registry(device.name, AGENT_KEY)["values"]["TransferFolders"] == [INBOX]
    # The session ends: deauthorizing removes the transfer's entry, the noted folder stays.
    device.lab.control.delete_registry(device.name, TRANSFERS_KEY)
    for path in (old, other, keep):
        device.age(path, 2 * DAY, first["last_checkin"])
    device.age(young, 3600, first["last_checkin"])
    # Within the day nothing runs again.
    again = device.run("heartbeat")
    assert again["partial_files_cleaned"] is False and device.file(old) is not None
    later = device.lab.control.advance_clock(device.name, DAY + 60)["device_time"][:19] + "Z"
    for path in (old, other, keep):
        device.age(path, 2 * DAY, later)
    device.age(young, 3600, later)
    answer = device.run("heartbeat")
    assert answer["partial_files_cleaned"] is True and answer["partial_files_error"] is None
    # Only in the folder a transfer wrote into, only the temporary files, only those a day old.
    assert answer["partial_files_removed"] == [old]
    assert device.file(old) is None
    assert device.file(young) is not None and device.file(other) is not None and device.file(keep) is not None
    # The folder stays noted while a temporary file is left in it.
    assert device.lab.control.registry(device.name, AGENT_KEY)["values"]["TransferFolders"] == [INBOX]


def test_the_heartbeat_does_not_follow_a_folder_swapped_for_a_link(device):
    target = r"C:\Users\Public\Target"
    victim = f"{target}\\~rs-victim1.partial"
    device.put_file(victim)
    device.put_file(f"{INBOX}\\seed.txt")
    transfer(device, "t2", f"{INBOX}\\report.pdf")
    first = device.run("heartbeat")
    # A user replaces the noted folder by a link to another folder holding a temporary file.
    inbox = device.local(INBOX)
    for child in inbox.iterdir():
        child.unlink()
    inbox.rmdir()
    inbox.symlink_to(device.local(target), target_is_directory=True)
    later = device.lab.control.advance_clock(device.name, DAY + 60)["device_time"][:19] + "Z"
    device.age(victim, 2 * DAY, later)
    answer = device.run("heartbeat")
    assert answer["partial_files_cleaned"] is True and answer["partial_files_removed"] == []
    assert device.file(victim) is not None


# The removal --------------------------------------------------------------------------------------------------------
def test_removal_takes_everything_the_collection_left_and_says_what(device):
    device.install()
    device.set(ROOT_KEY + r"\Policy", "ClientConfirmationRequired", 1)
    partial = f"{INBOX}\\~rs-left1.partial"
    device.put_file(partial)
    transfer(device, "t3", f"{INBOX}\\big.iso")
    device.run("heartbeat")
    device.lab.control.delete_registry(device.name, TRANSFERS_KEY)
    assert device.has_key(SOURCE_KEY)

    looked = device.run("uninstall_agent", {"check_only": True, "audit": AUDIT})
    assert looked["removed"] is False and looked["refused"] is None
    assert looked["found"] == {"tasks": ["RemoteSupport-Heartbeat"], "folder": r"C:\ProgramData\RemoteSupport",
                               "registry_key": ROOT_KEY, "event_source": "RemoteSupport.Windows",
                               "partial_files": [partial]}
    assert device.has_key(ROOT_KEY) and device.file(partial) is not None  # a look changes nothing

    done = device.run("uninstall_agent", {"check_only": False, "audit": AUDIT})
    assert done["removed"] is True and done["found"] == looked["found"]
    assert not device.has_key(ROOT_KEY) and not device.has_key(SOURCE_KEY)
    assert device.file(r"C:\ProgramData\RemoteSupport") is None and device.file(partial) is None
    state = device.lab.control.request("GET", f"/devices/{device.name}")
    assert state["agent"]["heartbeat_task"] is None and state["agent"]["last_checkin"] is None
    # The last entry tells who removed it; it stays in the log with the others.
    assert [(e["event_id"], e["message"]) for e in device.events()][-1] == (1042, AUDIT["message"])

    again = device.run("uninstall_agent", {"check_only": False, "audit": AUDIT})
    assert again["removed"] is False and again["found"] == {
        "tasks": [], "folder": None, "registry_key": None, "event_source": None, "partial_files": []}
    assert not device.has_key(SOURCE_KEY)  # nothing to remove: no entry, no source registered for it


def _session(device: Device, state: str, expires_in: int | None) -> None:
    now = device.run("get_agent_state", {"components": []})["device_time"]
    moment = datetime.datetime.strptime(now, STAMP)
    values = {"Id": "s-1", "State": state, "RequestedBy": "tester", "Reason": "test", "RequestedAt": now,
              "ConfirmationRequired": 0, "Version": 1, "TtlSeconds": 3600, "ConfirmationTimeoutSeconds": 120,
              "ChangedBy": "tester", "ChangedAt": now}
    if expires_in is not None:
        values["ExpiresAt"] = (moment + datetime.timedelta(seconds=expires_in)).strftime(STAMP)
    for name, value in values.items():
        device.set(SESSION_KEY, name, value)


@pytest.mark.parametrize("setup, reason", [
    (lambda d: _session(d, "authorized", 1800), "session_active"),
    (lambda d: _session(d, "pending_confirmation", None), "session_active"),
    (lambda d: d.set(ROOT_KEY + r"\RemoteControl", "SessionId", "s-1"), "remote_control_granted"),
    (lambda d: d.set(ROOT_KEY + r"\RemoteControlUndo", "Shadow", 0), "remote_control_granted"),
    (lambda d: transfer(d, "t4", f"{INBOX}\\a.txt"), "transfer_running"),
])
def test_removal_refuses_while_something_is_live_and_changes_nothing(device, setup, reason):
    device.install()
    setup(device)
    events = len(device.events())
    done = device.run("uninstall_agent", {"check_only": False, "audit": AUDIT})
    assert done["removed"] is False and done["refused"]["reason"] == reason
    assert device.has_key(ROOT_KEY) and device.has_key(SOURCE_KEY)
    assert device.file(r"C:\ProgramData\RemoteSupport\scripts\heartbeat.ps1") is not None
    assert device.lab.control.request("GET", f"/devices/{device.name}")["agent"]["heartbeat_task"] is not None
    assert len(device.events()) == events


def test_an_expired_session_does_not_hold_the_agent(device):
    device.install()
    _session(device, "authorized", -60)
    done = device.run("uninstall_agent", {"check_only": False, "audit": AUDIT})
    assert done["refused"] is None and done["removed"] is True
