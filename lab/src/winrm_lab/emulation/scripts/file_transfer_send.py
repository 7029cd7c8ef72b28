"""Emulation of file_transfer_send.ps1, version 1: receives a file through stdin (to_device) into a temporary file
beside the destination, checks the session after every chunk, and renames the file into place once its SHA-256
matches. Streams as the script does: `io` is the process, read and written as it arrives."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ntpath
import os
import typing as t

from ... import drives
from ...device import Device
from ...process import ProcessIO
from .. import session, transfers
from ..transfers import Refusal

VERSION = 2


def _write(handle: t.BinaryIO, digest: t.Any, data: bytes) -> None:
    handle.write(data)
    digest.update(data)


async def run(device: Device, script_input: dict[str, t.Any], io: ProcessIO) -> dict[str, t.Any]:
    request = script_input
    size = request["size"]
    chunk = request["chunk_bytes"]
    transfer_key = f"{transfers.TRANSFERS_KEY}\\{request['transfer_id']}"
    result: dict[str, t.Any] = {
        "kind": "result", "script_version": VERSION, "device_time": None, "outcome": "failed",
        "path": request["path"], "size": size, "offset": None, "bytes_written": 0, "sha256": None,
        "replaced": False, "error": None, "session": None, "audit_event_id": None,
    }
    started = False
    keep_temp = False
    temp_host = None
    handle = None
    try:
        path, policy = transfers.checked_path(device, request, result)
        transfers.check_size(policy, size)
        if transfers.host_path(device, path).is_dir():
            raise Refusal("is_directory", f"'{path}' is a folder.")
        await transfers.register_or_refuse(device, request, result, "to_device", size)
        started = True

        parent = ntpath.dirname(path)
        temp = ntpath.join(parent, f"~rs-{request['transfer_id']}.partial")
        transfers.check_access(device, temp)  # creating it in a folder whose ACL denies us
        parent_host = transfers.host_path(device, parent)
        # Directory.CreateDirectory meets a file where a folder of the path should be: the nearest that exists.
        nearest = next((p for p in (parent_host, *parent_host.parents) if p.exists()), parent_host)
        if not nearest.is_dir():
            assert device.file_root is not None  # host_path found the device's drives
            name = drives.windows_path_of(device.file_root, nearest) or parent
            raise Refusal("exists", f"Cannot create \"{name}\" because a file or directory with the same name "
                                    "already exists.")
        parent_host.mkdir(parents=True, exist_ok=True)
        if transfers.host_path(device, path).is_file():
            transfers.check_access(device, path)  # opened for writing, sharing nothing
            transfers.check_not_locked(device, path)
        temp_host = transfers.host_path(device, temp)
        handle = open(temp_host, "r+b" if temp_host.is_file() else "w+b")
        pinned = transfers.check_opened(device, policy, path, handle)
        if not request["resume"] or os.fstat(handle.fileno()).st_size > size:
            handle.truncate(0)
        kept = os.fstat(handle.fileno()).st_size
        transfers.check_free_space(device, path, size - kept)

        prefix_hash = transfers.sha256_of(handle, kept).hexdigest()
        await transfers.write_message(io, {"kind": "ready", "offset": kept, "prefix_sha256": prefix_hash})
        start = await transfers.read_start(io, kept)
        if start == 0:
            handle.truncate(0)
            digest = hashlib.sha256()
        else:
            digest = transfers.sha256_of(handle, start)
        handle.seek(start)
        result["offset"] = start

        remaining = size - start
        since_check = 0
        stop = None
        buffer_bytes = max(65536, min(chunk, 4 * 1024 * 1024))
        while remaining > 0:
            # Never past the next chunk boundary: the session is checked after every chunk_bytes exactly.
            data = await io.read_stdin_some(min(buffer_bytes, chunk - since_check, remaining))
            if not data:
                raise Refusal("interrupted", "stdin ended before the controller said how to go on: the transfer "
                                             "was interrupted.")
            # Off the event loop, as the script's own process would be: WinRS goes on taking the next Send.
            await asyncio.to_thread(_write, handle, digest, data)
            remaining -= len(data)
            result["bytes_written"] += len(data)
            since_check += len(data)
            if since_check >= chunk or remaining == 0:
                since_check = 0
                handle.flush()
                transfers.check_still_at(device, path, handle, pinned)
                stop = transfers.session_stop(device, request["session_id"], transfer_key)
                if stop is not None:
                    break
                await transfers.write_message(io, {"kind": "progress", "bytes": start + result["bytes_written"]})
        if stop is None:
            expected = (await transfers.read_line(io, 64)).strip().lower()
            actual = digest.hexdigest()
            result["sha256"] = actual
            if actual != expected:
                raise Refusal("hash_mismatch", f"The file arrived with SHA-256 {actual}; the controller sent "
                                               f"{expected}.")
            stop = transfers.session_stop(device, request["session_id"], transfer_key)
        if stop is not None:
            transfers.record_stop(result, stop)
        else:
            # The last moment the names are used: the file is still where it was opened, and no link stands in the
            # destination's way now either.
            transfers.check_still_at(device, path, handle, pinned)
            transfers.check_no_reparse_point(device, policy, path)
            handle.close()
            handle = None
            destination = transfers.host_path(device, path)
            if destination.is_file():
                if not request["overwrite"]:
                    raise Refusal("exists", f"The file '{path}' already exists.")
                # File.Replace: the destination must not be held open nor denied to us at this moment either.
                transfers.check_access(device, path)
                transfers.check_not_locked(device, path)
                result["replaced"] = True
            os.replace(temp_host, destination)
            temp_host = None
            result["outcome"] = "completed"
    except (Refusal, OSError) as failure:
        keep_temp = transfers.record_failure(result, failure).code in ("interrupted", "in_use")
    except asyncio.CancelledError:
        # Stopped (Stop-Process, or the shell deleted): no cleanup of its own runs; what it wrote stays.
        if handle is not None:
            handle.close()
        raise

    if handle is not None:
        if temp_host is not None and not keep_temp:
            # Deleted through its handle (FileDispositionInfo), not by name: the name may lead through a link now.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.realpath(f"/proc/self/fd/{handle.fileno()}"))
        handle.close()
    elif temp_host is not None and not keep_temp:
        # Closed before the rename, which failed: its name was checked at that moment.
        with contextlib.suppress(FileNotFoundError):
            temp_host.unlink()
    if started:
        transfers.end(device, request, result, success="sent", size=size,
                      done=(result["offset"] or 0) + result["bytes_written"],
                      what=(f"Support session {request['session_id']}: file transfer to {device.name}: "
                            f"{request['source']} -> {result['path']}"))
    result["device_time"] = session.stamp(device.clock.now())
    return result
