"""Emulation of bench/device_scripts/bench_raw_stream.ps1, version 1: the file-transfer benchmark's ceiling, bytes
through one command with nothing done to them, so only WinRM's own cost is left."""

from __future__ import annotations

import typing as t

from ...device import Device
from ...process import ProcessIO
from . import DeviceScriptError

VERSION = 1
BLOCK = 1024 * 1024


async def run(device: Device, script_input: dict[str, t.Any], io: ProcessIO) -> dict[str, t.Any]:
    left = script_input["bytes"]
    zeros = bytes(BLOCK)
    while left > 0:
        count = min(BLOCK, left)
        if script_input["direction"] == "in":
            data = await io.read_stdin_some(count)
            if not data:
                raise DeviceScriptError("stdin ended early.")
            count = len(data)
        else:
            await io.write_stdout(zeros[:count])
            await io.wait_stdout_below(2 * BLOCK)
        left -= count
    return {"script_version": VERSION, "bytes": script_input["bytes"]}
