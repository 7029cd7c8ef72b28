"""Emulation of bench/device_scripts/bench_put_file_base64.ps1, version 1: the file-transfer benchmark's baseline,
what Ansible's winrm connection plugin runs on the device for put_file. Not a collection script: the benchmark points
the lab at bench/device_scripts as well (WINRM_LAB_DEVICE_SCRIPTS)."""

from __future__ import annotations

import asyncio
import hashlib
import typing as t

import pybase64

from ...device import Device
from ...process import ProcessIO
from .. import transfers

VERSION = 1


def _write(handle: t.BinaryIO, digest: t.Any, lines: list[bytes]) -> int:
    total = 0
    for line in lines:
        data = pybase64.b64decode(line)  # [Convert]::FromBase64String (native), one pipeline object (line) at a time
        digest.update(data)
        handle.write(data)
        total += len(data)
    return total


async def run(device: Device, script_input: dict[str, t.Any], io: ProcessIO) -> dict[str, t.Any]:
    path = transfers.full_path(script_input["path"])
    host = transfers.host_path(device, path)
    host.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1()  # noqa: S324 - what Ansible's put_file computes
    total = 0
    pending = b""
    with open(host, "wb") as handle:
        while True:
            data = await io.read_stdin_some(4 * 1024 * 1024)
            if not data:
                break
            pending += data
            *lines, pending = pending.split(b"\r\n")
            total += await asyncio.to_thread(_write, handle, digest, [line for line in lines if line])
        if pending.strip():
            total += await asyncio.to_thread(_write, handle, digest, [pending.strip()])
    return {"script_version": VERSION, "sha1": digest.hexdigest(), "bytes": total}
