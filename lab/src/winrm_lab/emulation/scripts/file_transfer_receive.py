"""Emulation of file_transfer_receive.ps1, version 1: sends a device file to the controller (from_device) through
stdout in frames, checking the session after every frame. Streams as the script does, and blocks as a writer to a
full pipe blocks while the controller does not receive."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import typing as t

from ...device import Device
from ...process import ProcessIO
from .. import session, transfers
from ..transfers import Refusal
from . import DeviceScriptError

VERSION = 2


async def _message(io: ProcessIO, message: dict[str, t.Any]) -> None:
    await io.write_stdout((json.dumps(message, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8"))


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
        transfers.check_form(request["path"])
        path = transfers.full_path(request["path"])
        result["path"] = path
        policy = transfers.read_policy(device)
        transfers.check_allowed(policy, path)
        transfers.check_no_reparse_point(device, policy, path)
        host = transfers.host_path(device, path)
        if host.is_dir():
            raise Refusal("is_directory", f"'{path}' is a folder.")
        if not host.is_file():
            raise Refusal("not_found", f"Could not find file '{path}'.")
        stop = await transfers.register(device, request, "from_device", host.stat().st_size)
        if stop is not None:
            result["session"] = stop["session"]
            raise Refusal("session_not_authorized", stop["message"])
        started = True

        handle = transfers.open_for_reading(device, path)
        pinned = transfers.check_opened(device, policy, path, handle)
        before = os.fstat(handle.fileno())
        size = before.st_size
        result["size"] = size
        transfers.check_size(policy, size)
        kept = request["offset"] if request["offset"] <= size else 0
        prefix_hash = transfers.sha256_of(handle, kept).hexdigest()
        await _message(io, {"kind": "ready", "offset": kept, "size": size, "prefix_sha256": prefix_hash})
        framing = True

        try:
            line = await io.read_stdin_line(20)
        except ValueError:
            raise DeviceScriptError("The controller sent a line this script does not expect.") from None
        if line is None:
            raise Refusal("interrupted", "stdin ended before the controller said how to go on: the transfer was "
                                         "interrupted.")
        try:
            start = int(line)
        except ValueError:
            raise DeviceScriptError(f'Cannot convert value "{line!r}" to type "System.Int64".') from None
        if start not in (0, kept):
            raise DeviceScriptError(f"The controller asked to start at byte {start}; only 0 or {kept} are possible.")
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
            result.update(outcome="stopped", session=stop["session"],
                          error={"code": "session_ended", "message": stop["message"]})
        else:
            result["sha256"] = digest.hexdigest()
            transfers.check_still_at(device, path, handle, pinned)
            after = os.fstat(handle.fileno())  # the file read, not whatever the path names now
            if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
                raise Refusal("source_changed", f"'{path}' changed while it was read.")
            result["outcome"] = "completed"
    except (Refusal, OSError) as failure:
        refusal = failure if isinstance(failure, Refusal) else transfers.from_os_error(failure, result["path"])
        result["outcome"] = "failed"
        result["error"] = refusal.as_failure()
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
        transfers.unregister(device, request["transfer_id"])
        what = (f"Support session {request['session_id']}: file transfer from {device.name}: {result['path']} -> "
                f"{request['destination']}")
        if result["outcome"] == "completed":
            message = (f"{what}, {result['size']} bytes, SHA-256 {result['sha256']}. Successfully received. "
                       f"Requested by {request['requested_by']}.")
        else:
            done = (result["offset"] or 0) + result["bytes_sent"]
            message = (f"{what}: Sending failed after {done} of {result['size']} bytes: "
                       f"{result['error']['message']} Requested by {request['requested_by']}.")
        result["audit_event_id"] = transfers.audit(device, result["outcome"], message)
    result["device_time"] = session.stamp(device.clock.now())
    return result


