"""The support policy as the device keeps it, for the emulations of get_support_policy.ps1 and set_support_policy.ps1.

    HKLM:\\SOFTWARE\\RemoteSupport\\Policy                                   the policy's values (the collection's
                                                                           plugins/module_utils/support_policy.py)
    HKLM:\\SOFTWARE\\Policies\\Microsoft\\Windows NT\\Terminal Services  Shadow, the RDP shadow rule

The lab's registry keeps plain values, not their kinds; a value's kind is read from its Python type the way the
control surface writes them: text is REG_SZ, a whole number REG_DWORD (REG_QWORD past 32 bits), a list of text
REG_MULTI_SZ, bytes REG_BINARY. So a REG_QWORD the script wrote with a small number reads back as a REG_DWORD; every
reader of a number takes either kind.
"""

from __future__ import annotations

import base64
import typing as t

from ..device import Device
from . import layout
from .scripts import DeviceScriptError

POLICY_KEY = layout.REGISTRY["policy"]
SHADOW_KEY = r"HKLM:\SOFTWARE\Policies\Microsoft\Windows NT\Terminal Services"
EVENT_SOURCE = layout.EVENT_SOURCE
STAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

# The values set_support_policy.ps1 may write, and the kind it writes each as.
VALUE_KINDS = {
    "ConfirmationRequired": "DWord",
    "ConfirmationTimeoutSeconds": "DWord",
    "SessionTtlSeconds": "DWord",
    "RemoteControlMode": "String",
    "FileTransferAllowedRoots": "MultiString",
    "FileTransferMaxSizeBytes": "QWord",
}


def value_record(value: t.Any) -> dict[str, t.Any]:
    """A stored value as the scripts report it: {"kind": RegistryValueKind, "data": ...}."""
    if isinstance(value, bytes):
        return {"kind": "Binary", "data": base64.b64encode(value).decode("ascii")}
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        if -(1 << 31) <= value < (1 << 32):
            return {"kind": "DWord", "data": value & 0xFFFFFFFF}
        return {"kind": "QWord", "data": value}
    if isinstance(value, list):
        return {"kind": "MultiString", "data": [str(item) for item in value]}
    return {"kind": "String", "data": str(value)}


def key_values(device: Device, path: str) -> dict[str, dict[str, t.Any]] | None:
    """Every value of a key ('' excluded), or None when the key does not exist."""
    registry = device.registry
    if not registry.key_exists(path):
        return None
    return {name: value_record(value) for name, value in registry.get_values(path).items() if name != ""}


def read(device: Device) -> dict[str, t.Any]:
    """What get_support_policy.ps1 answers (without script_version and device_time)."""
    values = key_values(device, POLICY_KEY)
    shadow_values = key_values(device, SHADOW_KEY) or {}
    shadow = next((value for name, value in shadow_values.items() if name.lower() == "shadow"), None)
    return {"policy_key_exists": values is not None, "values": values or {}, "shadow": shadow}


def check_writable(device: Device, path: str) -> None:
    """A key whose ACL denies the WinRM account (listed in `Device.denied_paths`) refuses every write, as
    Set-ItemProperty does with .NET's SecurityException."""
    if path.lower() in device.denied_paths:
        raise DeviceScriptError("Requested registry access is not allowed.")


def write(device: Device, path: str, name: str, kind: str, data: t.Any) -> None:
    if kind in ("DWord", "QWord"):
        device.registry.set(path, name, int(data))
    elif kind == "MultiString":
        device.registry.set(path, name, [str(item) for item in data])
    else:
        device.registry.set(path, name, str(data))


def check_request(request: t.Mapping[str, t.Any]) -> None:
    """What the script's Assert-Input refuses beyond the contract."""
    for entry in request["values"]:
        if entry["name"] not in VALUE_KINDS:
            raise DeviceScriptError(f"'{entry['name']}' is not a support-policy value this script writes.")
        if entry["kind"] != VALUE_KINDS[entry["name"]]:
            raise DeviceScriptError(f"{entry['name']} is kept as {VALUE_KINDS[entry['name']]}, not {entry['kind']}.")
