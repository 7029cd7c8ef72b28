"""Emulation of get_agent_state.ps1, version 1: the agent scripts on disk, the scripts folder, the check-in task."""

from __future__ import annotations

import typing as t

from ...device import Device
from .. import support_agent

VERSION = 1


def run(device: Device, script_input: dict[str, t.Any]) -> dict[str, t.Any]:
    files = {name: support_agent.read_file(device, name) for name in script_input["components"]}
    exists = support_agent.folder_exists(device)
    return {
        "script_version": VERSION,
        "device_time": support_agent.stamp(device.clock.now()),
        "system_root": support_agent.SYSTEM_ROOT,
        "folder": {"path": support_agent.SCRIPTS_FOLDER, "exists": exists, "locked_down": exists},
        "files": files,
        "heartbeat_task": support_agent.heartbeat_task_state(device),
        "last_checkin": support_agent.last_checkin(device),
    }
