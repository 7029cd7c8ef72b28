"""Emulation of uninstall_agent.ps1, version 1: everything the collection leaves on a device removed (tasks, the
C:\\ProgramData\\RemoteSupport folder, HKLM:\\SOFTWARE\\RemoteSupport, transfer temporary files, the event
source), refused while a session, a remote-control grant or a transfer is live."""

from __future__ import annotations

import shutil
import typing as t

from ...device import COLLECTION_REGISTRY_KEY, Device, event_source_key
from .. import remote_control, session, support_agent
from . import DeviceScriptError

VERSION = 1


def _blocker(device: Device) -> dict[str, str] | None:
    try:
        record = session.read_record(device)
    except DeviceScriptError:
        record = None  # a record that cannot be read holds no session to protect
    if record is not None and record["state"] in ("authorized", "pending_confirmation"):
        expires = session.parse_stamp(record.get("expires_at"))
        if record["state"] == "pending_confirmation" or expires is None or expires > device.clock.now():
            return {"reason": "session_active",
                    "message": f"Support session {record['id']} is {record['state']} on this device; end it first "
                               "(support_session state=deauthorized)."}
    if any(device.registry.key_exists(key) or device.registry.subkeys(key)
           for key in (remote_control.GRANT_KEY, remote_control.UNDO_KEY)):
        return {"reason": "remote_control_granted",
                "message": "A remote-control grant is in place on this device; stop it first (remote_control "
                           "state=stopped), which puts the listener permissions back."}
    if device.registry.subkeys(support_agent.TRANSFERS_KEY):
        return {"reason": "transfer_running",
                "message": "A file transfer is registered on this device; let it finish or end the session first "
                           "(support_session state=deauthorized)."}
    return None


def _tasks(device: Device) -> list[str]:
    found = []
    for name in support_agent.TASK_NAMES:
        if name == support_agent.HEARTBEAT_TASK:
            if device.agent.heartbeat_task is not None:
                found.append(name)
        elif device.tasks.get(name) is not None:
            found.append(name)
    return found


def run(device: Device, script_input: dict[str, t.Any]) -> dict[str, t.Any]:
    with device.lock:
        registry = device.registry
        source_key = event_source_key(support_agent.EVENT_SOURCE)
        try:
            root = device.windows_path(support_agent.ROOT_FOLDER)
        except ValueError:
            root = None
        folders = support_agent.read_transfer_folders(device)
        found: dict[str, t.Any] = {
            "tasks": _tasks(device),
            "folder": support_agent.ROOT_FOLDER if root is not None and root.is_dir() else None,
            # A key that only has subkeys exists too (the lab's registry keeps parents implicit).
            "registry_key": COLLECTION_REGISTRY_KEY if registry.key_exists(COLLECTION_REGISTRY_KEY)
            or registry.subkeys(COLLECTION_REGISTRY_KEY) else None,
            "event_source": support_agent.EVENT_SOURCE if registry.key_exists(source_key) else None,
            "partial_files": support_agent.partial_files(device, folders),
        }
        refused = _blocker(device)
        anything = bool(found["tasks"] or found["folder"] or found["registry_key"] or found["event_source"]
                        or found["partial_files"])
        removed = False
        if anything and refused is None and not script_input["check_only"]:
            audit = script_input["audit"]
            if audit is not None:
                device.write_event(support_agent.EVENT_SOURCE, audit["event_id"], audit["entry_type"],
                                   audit["message"])
            for name in found["tasks"]:
                if name != support_agent.HEARTBEAT_TASK:
                    device.tasks.stop(name)
                    device.tasks.unregister(name)
            # No heartbeat task, no check-ins: the device's last activity goes with the Agent key below. (A device
            # the scenario gave an agent before support_agent installed one checks in through the same task.)
            device.agent.heartbeat_task = None
            device.agent.running = False
            device.agent.stopped_last_checkin = None
            found["partial_files"] = support_agent.remove_partial_files(device, folders, 0)
            if found["folder"] is not None and root is not None:
                if root.is_symlink():
                    root.unlink()  # a link is removed as a link, its target untouched
                else:
                    shutil.rmtree(root)  # does not follow symbolic links inside the tree
            registry.delete_key(COLLECTION_REGISTRY_KEY)
            if registry.key_exists(source_key):  # registered now for the audit entry, if not before
                registry.delete_key(source_key)
                found["event_source"] = support_agent.EVENT_SOURCE
            removed = True
    return {
        "script_version": VERSION,
        "device_time": support_agent.stamp(device.clock.now()),
        "found": found,
        "removed": removed,
        "refused": refused,
    }
