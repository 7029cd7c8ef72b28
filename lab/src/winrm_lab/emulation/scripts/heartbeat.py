"""Emulation of heartbeat.ps1, version 1: the agent's check-in, LastCheckIn set to the device's clock."""

from __future__ import annotations

import typing as t

from ...device import AGENT_REGISTRY_KEY, Device
from .. import support_agent

VERSION = 1


def run(device: Device, script_input: t.Any) -> dict[str, t.Any]:
    with device.lock:
        moment = device.clock.now().replace(microsecond=0)
        now = support_agent.stamp(moment)
        if not device.agent.running:
            # A check-in run by hand while the task is disabled: the value stays until the next one, as on Windows
            # (the lab derives a running agent's check-ins from the clock, and keeps a stopped one's last).
            device.agent.stopped_last_checkin = moment
        device.registry.set(AGENT_REGISTRY_KEY, "LastCheckIn", now)
    return {"script_version": VERSION, "last_checkin": now}
