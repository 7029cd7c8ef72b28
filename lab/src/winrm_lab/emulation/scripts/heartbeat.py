"""Emulation of heartbeat.ps1, version 2: the agent's check-in, LastCheckIn set to the device's clock, then the
cleanup of the temporary files interrupted transfers left (once a day, those untouched for a day)."""

from __future__ import annotations

import typing as t

from ...device import AGENT_REGISTRY_KEY, Device
from .. import support_agent

VERSION = 2


def run(device: Device, script_input: t.Any) -> dict[str, t.Any]:
    with device.lock:
        moment = device.clock.now().replace(microsecond=0)
        now = support_agent.stamp(moment)
        if not device.agent.running:
            # A check-in run by hand while the task is disabled: the value stays until the next one, as on Windows
            # (the lab derives a running agent's check-ins from the clock, and keeps a stopped one's last).
            device.agent.stopped_last_checkin = moment
        device.registry.set(AGENT_REGISTRY_KEY, "LastCheckIn", now)
        error = None
        try:
            cleaned, removed = support_agent.heartbeat_cleanup(device)
        except OSError as failure:
            cleaned, removed, error = False, [], str(failure)
    return {"script_version": VERSION, "last_checkin": now, "partial_files_cleaned": cleaned,
            "partial_files_removed": removed, "partial_files_error": error}
