"""Emulation of get_support_policy.ps1, version 1: the support policy's values and the RDP shadow rule, as stored."""

from __future__ import annotations

import typing as t

from ...device import Device
from .. import support_policy

VERSION = 1


def run(device: Device, script_input: dict[str, t.Any]) -> dict[str, t.Any]:
    with device.lock:
        stored = support_policy.read(device)
        now = device.clock.now()
    return {"script_version": VERSION, "device_time": now.strftime(support_policy.STAMP_FORMAT), **stored}
