"""Emulation of get_support_session.ps1, version 3: the session record, the policy and the console user; with
`wait`, first waits on the device while the record is still the given version of the given session; with `facts`,
also what get_device_facts answers."""

from __future__ import annotations

import asyncio
import typing as t

from ...device import Device
from .. import session
from . import get_device_facts

VERSION = 3


def _read(device: Device) -> tuple[dict[str, t.Any] | None, str]:
    with device.lock:  # the script reads the record holding the mutex Global\RemoteSupport.Session
        return session.read_record(device), session.stamp(device.clock.now())


def _unchanged(record: dict[str, t.Any] | None, wait: dict[str, t.Any]) -> bool:
    return record is not None and str(record["id"]) == str(wait["session_id"]) \
        and int(record["version"]) == int(wait["version"])


async def run(device: Device, script_input: dict[str, t.Any]) -> dict[str, t.Any]:
    record, device_time = _read(device)
    wait = script_input.get("wait")
    if wait is not None:
        # The script's Stopwatch: the time the command has run, whatever the device's wall clock does meanwhile.
        # The event loop's clock is that time (in process it is the device's clock, which only moves forward).
        loop = asyncio.get_running_loop()
        started = loop.time()
        while _unchanged(record, wait) and loop.time() - started < wait["seconds"]:
            await asyncio.sleep(float(wait["every_seconds"]))  # Start-Sleep
            record, device_time = _read(device)
    result = {
        "script_version": VERSION,
        "device_time": device_time,
        "policy": session.read_policy(device),
        "interactive_user": session.interactive_user(device),  # WMI: fails on a device whose WMI is broken
        "session": record,
    }
    if script_input.get("facts"):
        result["facts"] = get_device_facts.run(device, {})  # the same function (library device_facts)
    return result
