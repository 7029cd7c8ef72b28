"""Emulation of file_transfer_receive.ps1, version 1: sends a device file to the controller (from_device) through
stdout in frames, checking the session after every frame. Streams as the script does, and blocks as a writer to a
full pipe blocks while the controller does not receive."""

from __future__ import annotations

import asyncio
import hashlib
import os
import typing as t

from ...device import Device
from ...process import ProcessIO
from .. import session, transfers
from ..transfers import Refusal

VERSION = 2


def _read_frame(handle: t.BinaryIO, digest: t.Any, count: int) -> bytes:
    data = handle.read(count)
    digest.update(data)
    return len(data).to_bytes(4, "big") + data


async def run(device: Device, script_input: dict[str, t.Any], io: ProcessIO) -> dict[str, t.Any]:
    request = script_input
    chunk = request["chunk_bytes"]
    transfer_key = f"{transfers.TRANSFERS_KEY}\\{request['transfer_id']}"
    result: dict[str, t.Any] = {
        "kind": "result", "script_version": VERSION, "device_time": None, "outcome": "failed",
        "path": request["path"], "size": None, "offset": None, "bytes_sent": 0, "sha256": None,
        "error": None, "session": None, "audit_event_id": None,
    }
    started = False
    framing = False
    handle = None
    try:
        path, policy = transfers.checked_path(device, request, result)
        host = transfers.host_path(device, path)
        if host.is_dir():
            raise Refusal("is_directory", f"'{path}' is a folder.")
        if not host.is_file():
            raise Refusal("not_found", f"Could not find file '{path}'.")
        await transfers.register_or_refuse(device, request, result, "from_device", host.stat().st_size)
        started = True

        handle = transfers.open_for_reading(device, path)
        pinned = transfers.check_opened(device, policy, path, handle)
        before = os.fstat(handle.fileno())
        size = before.st_size
        result["size"] = size
        transfers.check_size(policy, size)
        kept = request["offset"] if request["offset"] <= size else 0
        prefix_hash = transfers.sha256_of(handle, kept).hexdigest()
        await transfers.write_message(io, {"kind": "ready", "offset": kept, "size": size,
                                           "prefix_sha256": prefix_hash})
        framing = True
        start = await transfers.read_start(io, kept)
        digest = transfers.sha256_of(handle, start) if start else hashlib.sha256()
        handle.seek(start)
        result["offset"] = start

        remaining = size - start
        stop = None
        while remaining > 0:
            # Off the event loop, as the script's own process would be: WinRS goes on serving Receives meanwhile.
            frame = await asyncio.to_thread(_read_frame, handle, digest, min(chunk, remaining))
            if len(frame) == 4:
                raise Refusal("source_changed", f"'{path}' became shorter while it was read.")
            data_length = len(frame) - 4
            await io.write_stdout(frame)
            remaining -= data_length
            result["bytes_sent"] += data_length
            transfers.check_still_at(device, path, handle, pinned)
            stop = transfers.session_stop(device, request["session_id"], transfer_key)
            if stop is not None:
                break
            # A pipe holds little: the script waits here until WinRS has handed the output to a Receive.
            await io.wait_stdout_below(2 * chunk)
        if stop is not None:
            transfers.record_stop(result, stop)
        else:
            result["sha256"] = digest.hexdigest()
            transfers.check_still_at(device, path, handle, pinned)
            after = os.fstat(handle.fileno())  # the file read, not whatever the path names now
            if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
                raise Refusal("source_changed", f"'{path}' changed while it was read.")
            result["outcome"] = "completed"
    except (Refusal, OSError) as failure:
        transfers.record_failure(result, failure)
    except asyncio.CancelledError:
        if handle is not None:
            handle.close()
        raise
    finally:
        if handle is not None and not handle.closed:
            handle.close()

    if framing:
        await io.write_stdout(b"\0\0\0\0")  # the frame of length 0
    if started:
        transfers.end(device, request, result, success="received", size=result["size"],
                      done=(result["offset"] or 0) + result["bytes_sent"],
                      what=(f"Support session {request['session_id']}: file transfer from {device.name}: "
                            f"{result['path']} -> {request['destination']}"))
    result["device_time"] = session.stamp(device.clock.now())
    return result


