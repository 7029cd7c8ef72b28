"""Emulation of bench/device_scripts/bench_fetch_file_base64.ps1, version 1: the file-transfer benchmark's baseline,
what Ansible's winrm connection plugin runs on the device for fetch_file, one buffer per command."""

from __future__ import annotations

import base64
import typing as t

from ...device import Device
from .. import transfers

VERSION = 1


def run(device: Device, script_input: dict[str, t.Any]) -> dict[str, t.Any]:
    with transfers.open_for_reading(device, transfers.full_path(script_input["path"])) as handle:
        handle.seek(script_input["offset"])
        data = handle.read(script_input["buffer_size"])
    return {"script_version": VERSION, "data": base64.b64encode(data).decode("ascii")}
