"""Emulation of get_device_facts.ps1, version 1: the device's identity, the agent's last check-in, its clock."""

from __future__ import annotations

import typing as t

from ...device import AGENT_REGISTRY_KEY, Device
from . import DeviceScriptError

VERSION = 1

# Win32_SystemEnclosure.ChassisTypes (SMBIOS 3.x) values the script reads as a portable machine or a server.
LAPTOP_CHASSIS = frozenset((8, 9, 10, 11, 12, 14, 18, 21, 30, 31, 32))
SERVER_CHASSIS = frozenset((17, 23, 25, 28, 29))


def device_type(os_product_type: int, chassis_types: list[int]) -> str:
    """The script's rule: a server OS or a server chassis is a server, a portable chassis a laptop, else desktop."""
    if os_product_type != 1 or SERVER_CHASSIS.intersection(chassis_types):
        return "server"
    if LAPTOP_CHASSIS.intersection(chassis_types):
        return "laptop"
    return "desktop"


def run(device: Device, script_input: dict[str, t.Any]) -> dict[str, t.Any]:
    if device.wmi_error:
        # The script's first statement is Get-CimInstance; with $ErrorActionPreference = 'Stop' its error ends
        # the script and the bootstrap reports the exception's message.
        raise DeviceScriptError(device.wmi_error)
    hardware = device.hardware
    with device.lock:
        device.sync_agent_registry()  # the heartbeat task keeps this value current on a real device
        last_checkin = device.registry.get(AGENT_REGISTRY_KEY, "LastCheckIn")
        device_time = device.clock.now()
    return {
        "script_version": VERSION,
        "computer_name": device.name,
        "serial_number": hardware.serial_number,
        "manufacturer": hardware.manufacturer,
        "model": hardware.model,
        "chassis_types": [int(c) for c in hardware.chassis_types],
        "device_type": device_type(hardware.os_product_type, hardware.chassis_types),
        "os_caption": hardware.os_caption,
        "os_version": hardware.os_version,
        "os_product_type": hardware.os_product_type,
        "last_checkin": str(last_checkin) if last_checkin else None,
        "device_time": device_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
