"""Emulation of install_agent.ps1, version 1: writes the agent scripts, creates the scripts folder, registers and
starts the check-in task, writes the audit entry."""

from __future__ import annotations

import typing as t

from ...device import Device
from .. import support_agent
from . import DeviceScriptError

VERSION = 1


def run(device: Device, script_input: dict[str, t.Any]) -> dict[str, t.Any]:
    interval = script_input["heartbeat_interval_seconds"]
    if not 60 <= interval <= 3600:
        raise DeviceScriptError(f"heartbeat_interval_seconds must be 60 to 3600, not {interval}.")
    try:
        device.windows_path(support_agent.SCRIPTS_FOLDER).mkdir(parents=True, exist_ok=True)
    except ValueError:
        raise DeviceScriptError(f"Could not find a part of the path '{support_agent.SCRIPTS_FOLDER}'.") from None
    written = []
    for name, text in script_input["files"].items():
        support_agent.write_file(device, name, text)
        written.append(name)
    registered = False
    if script_input["heartbeat_task"]:
        support_agent.register_heartbeat(device, interval)
        registered = True
    audit = script_input["audit"]
    if audit is not None:
        device.write_event(support_agent.EVENT_SOURCE, audit["event_id"], audit["entry_type"], audit["message"])
    return {
        "script_version": VERSION,
        "device_time": support_agent.stamp(device.clock.now()),
        "written": written,
        "heartbeat_task_registered": registered,
        "last_checkin": support_agent.last_checkin(device),
    }
