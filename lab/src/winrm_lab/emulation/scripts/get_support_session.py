"""Emulation of get_support_session.ps1, version 1: the session record, the policy and the console user."""

from __future__ import annotations

import typing as t

from ...device import Device
from .. import session

VERSION = 2


def run(device: Device, script_input: dict[str, t.Any]) -> dict[str, t.Any]:
    with device.lock:  # the script reads the record holding the mutex Global\RemoteSupport.Session
        record = session.read_record(device)
        device_time = session.stamp(device.clock.now())
    return {
        "script_version": VERSION,
        "device_time": device_time,
        "policy": session.read_policy(device),
        "interactive_user": session.interactive_user(device),  # WMI: fails on a device whose WMI is broken
        "session": record,
    }
