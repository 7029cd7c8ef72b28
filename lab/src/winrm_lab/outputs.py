"""What the lab writes for its users: an Ansible inventory and a JSON manifest of the running fleet.

Both are written atomically (a temporary file renamed into place), mode 0600 because they hold passwords, and only
once every device listens: a file that exists describes a lab that answers.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
import typing as t

import yaml

from .device import Device
from .emulation.scripts.get_device_facts import device_type
from .scenarios import Fleet

# Timeouts sized for a lab on loopback, so a device that never answers fails in about ten seconds rather than
# pywinrm's thirty. The read timeout must exceed the operation timeout (the device may hold a Receive that long)
# plus the slowest device's latency. Ansible's own winrm connection reads connection_timeout as "operation timeout
# (and read timeout + 1)", the collection as the TCP connect timeout; 9 works for both.
OPERATION_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 10
CONNECTION_TIMEOUT_SECONDS = 9

GROUPS = {"desktop": "desktops", "laptop": "laptops", "server": "servers"}
# How the inventory's hosts authenticate (winrm-lab --auth).
AUTH_MODES = ("ntlm", "kerberos", "certificate", "credssp")


def write_atomically(path: pathlib.Path | str, text: str, mode: int = 0o600) -> pathlib.Path:
    """Writes `text` to `path` so that readers see either nothing or the whole file, never half of it."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(handle, mode)
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        pathlib.Path(temporary).unlink(missing_ok=True)
        raise
    return path


def device_kind(device: Device) -> str:
    return device_type(device.hardware.os_product_type, device.hardware.chassis_types)


def host_variables(fleet: Fleet, device: Device, ca_file: pathlib.Path | str, auth: str = "ntlm",
                   auth_files: t.Mapping[str, str] | None = None) -> dict[str, t.Any]:
    """The standard ansible_* / ansible_winrm_* variables for one device, as an existing Windows inventory has."""
    variables = _ntlm_variables(fleet, device, ca_file)
    auth_files = auth_files or {}
    if auth == "kerberos":
        # The realm's user principal with the same password; the device's service principal is HTTP/<its name>,
        # while the inventory reaches it by address.
        variables.update({"ansible_user": auth_files["principal"], "ansible_winrm_transport": "kerberos",
                          "ansible_winrm_kerberos_hostname_override": device.name.lower()})
    elif auth == "credssp":
        variables.update({"ansible_port": device.https_port, "ansible_winrm_scheme": "https",
                          "ansible_winrm_transport": "credssp", "ansible_winrm_message_encryption": "auto"})
    elif auth == "certificate":
        https = device.https_port
        for name in ("ansible_user", "ansible_password"):
            variables.pop(name)
        variables.update({"ansible_port": https, "ansible_winrm_scheme": "https", "ansible_winrm_transport": "certificate",
                          "ansible_winrm_message_encryption": "auto", "ansible_winrm_cert_pem": auth_files["cert_pem"],
                          "ansible_winrm_cert_key_pem": auth_files["cert_key_pem"]})
    return variables


def _ntlm_variables(fleet: Fleet, device: Device, ca_file: pathlib.Path | str) -> dict[str, t.Any]:
    connection = fleet.connections[device.name]
    return {
        "ansible_host": connection.host,
        "ansible_port": connection.port,
        "ansible_user": connection.username,
        "ansible_password": connection.password,
        "ansible_connection": "winrm",
        "ansible_winrm_transport": "ntlm",
        "ansible_winrm_scheme": connection.scheme,
        "ansible_winrm_server_cert_validation": "validate",
        "ansible_winrm_ca_trust_path": str(ca_file),
        # Over HTTP the device refuses unencrypted traffic (AllowUnencrypted=false), so NTLM must seal every message.
        "ansible_winrm_message_encryption": "always" if connection.scheme == "http" else "auto",
        "ansible_winrm_connection_timeout": CONNECTION_TIMEOUT_SECONDS,
        "ansible_winrm_operation_timeout_sec": OPERATION_TIMEOUT_SECONDS,
        "ansible_winrm_read_timeout_sec": READ_TIMEOUT_SECONDS,
    }


def inventory(fleet: Fleet, ca_file: pathlib.Path | str, auth: str = "ntlm",
              auth_files: t.Mapping[str, str] | None = None) -> dict[str, t.Any]:
    """A YAML-ready inventory: every device under `winrm_lab`, grouped by device type."""
    groups: dict[str, dict[str, t.Any]] = {}
    for device in fleet.devices:
        group = groups.setdefault(GROUPS[device_kind(device)], {"hosts": {}})
        group["hosts"][device.name] = host_variables(fleet, device, ca_file, auth, auth_files)
    ordered = {name: groups[name] for name in GROUPS.values() if name in groups}
    return {"all": {"children": {"winrm_lab": {"children": ordered}}}}


def write_inventory(path: pathlib.Path | str, fleet: Fleet, ca_file: pathlib.Path | str, auth: str = "ntlm",
                    auth_files: t.Mapping[str, str] | None = None) -> pathlib.Path:
    header = (f"# Written by winrm-lab for the running lab (scenario {fleet.scenario}, seed {fleet.seed}, "
              f"{len(fleet.devices)} devices, authentication {auth}). It holds passwords: keep it private.\n")
    if auth == "kerberos":
        header += f"# Kerberos: export KRB5_CONFIG={(auth_files or {}).get('krb5_conf')} before running playbooks.\n"
    body = yaml.safe_dump(inventory(fleet, ca_file, auth, auth_files), sort_keys=False, default_flow_style=False,
                          width=120)
    return write_atomically(path, header + body)


def device_entry(fleet: Fleet, device: Device, ca_file: pathlib.Path | str) -> dict[str, t.Any]:
    connection = fleet.connections[device.name]
    user = device.interactive_user
    return {
        "name": device.name,
        "device_type": device_kind(device),
        "address": device.address,
        "inventory_host": connection.host,
        "endpoint": {"url": connection.url, "scheme": connection.scheme, "port": connection.port},
        "endpoints": [
            {"scheme": "http", "url": f"http://{device.address}:{device.http_port}/wsman", "port": device.http_port},
            {"scheme": "https", "url": f"https://{device.address}:{device.https_port}/wsman",
             "port": device.https_port},
        ],
        "credentials": {
            "username": connection.username,
            "password": connection.password,  # what the inventory holds
            # Whether the device accepts them (False for a device meant to show wrong credentials).
            "accepted": device.accounts.get(connection.username) == connection.password,
        },
        "transport": "ntlm",
        "message_encryption": "always" if connection.scheme == "http" else "auto",
        "ca_file": str(ca_file),
        "hardware": {
            "manufacturer": device.hardware.manufacturer,
            "model": device.hardware.model,
            "serial_number": device.hardware.serial_number,
            "os_caption": device.hardware.os_caption,
            "os_version": device.hardware.os_version,
        },
        "interactive_user": None if user is None else {
            "name": user.name, "consent": user.consent, "answer_after_seconds": user.answer_after_seconds,
        },
        "behaviours": list(device.behaviours),
        "expected": dict(device.expected),
    }


def manifest(fleet: Fleet, ca_file: pathlib.Path | str, control_url: str, control_token: str,
             inventory_file: pathlib.Path | str | None = None, auth: str = "ntlm",
             auth_files: t.Mapping[str, str] | None = None) -> dict[str, t.Any]:
    return {
        "auth": {"mode": auth, **(auth_files or {})},
        "lab": {
            "scenario": fleet.scenario,
            "seed": fleet.seed,
            "device_count": len(fleet.devices),
            "pid": os.getpid(),
            "work_dir": str(fleet.work_dir),
            "inventory": None if inventory_file is None else str(inventory_file),
        },
        "control": {"url": control_url, "token": control_token},
        "ca_file": str(ca_file),
        "timeouts": {"connection": CONNECTION_TIMEOUT_SECONDS, "operation": OPERATION_TIMEOUT_SECONDS,
                     "read": READ_TIMEOUT_SECONDS},
        "devices": [device_entry(fleet, device, ca_file) for device in fleet.devices],
    }


def write_manifest(path: pathlib.Path | str, fleet: Fleet, ca_file: pathlib.Path | str, control_url: str,
                   control_token: str, inventory_file: pathlib.Path | str | None = None, auth: str = "ntlm",
                   auth_files: t.Mapping[str, str] | None = None) -> pathlib.Path:
    document = manifest(fleet, ca_file, control_url, control_token, inventory_file, auth, auth_files)
    return write_atomically(path, json.dumps(document, indent=2) + "\n")
