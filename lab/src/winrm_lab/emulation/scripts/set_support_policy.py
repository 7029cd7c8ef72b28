"""Emulation of set_support_policy.ps1, version 1: writes the policy values it is given (and the shadow rule), stamps
ChangedBy and ChangedAt, writes the audit entry, and answers what is stored."""

from __future__ import annotations

import typing as t

from ...device import Device
from .. import support_policy

VERSION = 1


def run(device: Device, script_input: dict[str, t.Any]) -> dict[str, t.Any]:
    support_policy.check_request(script_input)
    entries = list(script_input["values"])
    shadow = script_input["shadow"]
    written = len(entries) + (1 if shadow is not None else 0)
    if written:  # checked before the first write: a refused write leaves every value as it was
        support_policy.check_writable(device, support_policy.POLICY_KEY)
        if shadow is not None:
            support_policy.check_writable(device, support_policy.SHADOW_KEY)
    with device.lock:
        if written:
            for entry in entries:
                support_policy.write(device, support_policy.POLICY_KEY, entry["name"], entry["kind"], entry["data"])
            if shadow is not None:
                support_policy.write(device, support_policy.SHADOW_KEY, "Shadow", "DWord", shadow["data"])
            stamp = device.clock.now().strftime(support_policy.STAMP_FORMAT)
            support_policy.write(device, support_policy.POLICY_KEY, "ChangedBy", "String", script_input["changed_by"])
            support_policy.write(device, support_policy.POLICY_KEY, "ChangedAt", "String", stamp)
        stored = support_policy.read(device)
        now = device.clock.now()
    if written:
        audit = script_input["audit"]
        device.write_event(support_policy.EVENT_SOURCE, audit["event_id"], audit["entry_type"], audit["message"])
    return {"script_version": VERSION, "device_time": now.strftime(support_policy.STAMP_FORMAT), "written": written,
            **stored}
