"""File transfers as a device does them, for the emulations of file_transfer_prepare.ps1, file_transfer_send.ps1 and
file_transfer_receive.ps1 (emulation/scripts/): Windows paths as .NET Framework's Path.GetFullPath makes them, the
device's drives (Device.windows_path, names compared case-insensitively and short names as NTFS has them, with
reparse points as drives.py models them), the confinement rules of the library transfer_policy (what a path is, not how it reads: no device
namespace, stream or reserved name, no reparse point on the way, and the opened handle's final path under an allowed
root), the transfer policy, ACLs that deny
the WinRM account and files other programs hold open (Device.denied_paths, Device.locked_files), free space
(Device.free_space_bytes), the session check every chunk makes, the registration under
HKLM:\\SOFTWARE\\RemoteSupport\\Transfers, and the audit entries.

Each failure is a `Refusal` with the scripts' code and the message Windows gives for it (en-US).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import itertools
import json
import ntpath
import os
import pathlib
import re
import typing as t

from .. import drives
from ..device import Device
from ..process import ProcessIO
from . import layout, session
from .scripts import DeviceScriptError

TRANSFERS_KEY = layout.REGISTRY["transfers"]
POLICY_KEY = layout.REGISTRY["policy"]
ALLOWED_ROOTS_VALUE = "FileTransferAllowedRoots"
MAX_SIZE_VALUE = "FileTransferMaxSizeBytes"
DEFAULT_ALLOWED_ROOTS = ("C:\\Users",)
DEFAULT_MAX_SIZE_BYTES = 4 * 1024**3
AUDIT_EVENTS = layout.events("transfer")
ENTRY_TYPES = {"completed": "Information", "stopped": "Warning", "failed": "Error"}

PATH_TOO_LONG = ("The specified path, file name, or both are too long. The fully qualified file name must be less "
                 "than 260 characters, and the directory name must be less than 248 characters.")
# Names Windows keeps for devices, in any folder and with any extension (NUL.txt is NUL too).
RESERVED_NAMES = frozenset(["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"] +
                           [f"{port}{n}" for port in ("COM", "LPT") for n in "123456789\u00b9\u00b2\u00b3"])
RESERVED_TEXT = "CON, PRN, AUX, NUL, COM1-COM9, LPT1-LPT9"


class Refusal(Exception):
    """A failure the scripts name: `code` as in their contracts, `message` as Windows words it."""

    def __init__(self, code: str, message: str, record: dict[str, t.Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.record = record

    def as_failure(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


def access_denied(path: str) -> Refusal:
    return Refusal("access_denied", f"Access to the path '{path}' is denied.")


def in_use(path: str) -> Refusal:
    return Refusal("in_use", f"The process cannot access the file '{path}' because it is being used by another "
                             "process.")


def from_os_error(error: OSError, path: str) -> Refusal:
    """What Windows would have said where the lab's own file system failed (its limits are not Windows' limits)."""
    import errno

    if error.errno == errno.ENOSPC:
        return Refusal("disk_full", "There is not enough space on the disk.")
    if error.errno == errno.ENAMETOOLONG:
        return Refusal("name_too_long", PATH_TOO_LONG)
    if error.errno in (errno.EACCES, errno.EPERM):
        return access_denied(path)
    if error.errno in (errno.ENOENT, errno.ENOTDIR):
        return Refusal("not_found", f"Could not find a part of the path '{path}'.")
    return Refusal("access_denied", f"{error.strerror}: '{path}'")


def stamp(moment: datetime.datetime) -> str:
    return session.stamp(moment)


# Paths --------------------------------------------------------------------------------------------------------------
def full_path(path: str) -> str:
    """What [System.IO.Path]::GetFullPath gives in Windows PowerShell 5.1 (.NET Framework, no long-path support),
    after the scripts' own check that the path is absolute."""
    if not re.match(r"^[A-Za-z]:\\", path) and not re.match(r"^\\\\[^\\]+\\[^\\]+", path):
        raise Refusal("invalid_path", f"'{path}' is not an absolute Windows path (C:\\folder\\file or "
                                      "\\\\server\\share\\file).")
    text = path.replace("/", "\\")
    if re.search(r'[<>"|?*\x00-\x1f]', text):
        raise Refusal("invalid_path", "Illegal characters in path.")
    if text[1] == ":":
        prefix, rest = text[0].upper() + ":\\", text[3:]
    else:
        server, share, *more = text[2:].split("\\")
        prefix, rest = f"\\\\{server}\\{share}\\", "\\".join(more)
    if ":" in rest:
        raise Refusal("invalid_path", "The given path's format is not supported.")
    parts: list[str] = []
    for part in rest.split("\\"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        part = part.rstrip(". ")  # Win32 drops trailing dots and spaces of a name
        if part:
            parts.append(part)
    for part in parts:
        if part.split(".")[0].upper() in RESERVED_NAMES:
            return "\\\\.\\" + part.split(".")[0].upper()  # a device, not a file
    result = prefix + "\\".join(parts)
    if text.endswith("\\") and parts:
        result += "\\"
    directory = ntpath.dirname(result.rstrip("\\")) if parts else result
    if len(result) >= 260 or len(directory) >= 248:
        raise Refusal("name_too_long", PATH_TOO_LONG)
    return result


def check_form(path: str) -> None:
    """Assert-PathForm: what the text of a path may not be, before Windows makes anything of it. Each rule names
    itself: the device namespace, an alternate data stream, a name Windows reserves for a device."""
    text = path.replace("/", "\\")
    if text.startswith(("\\\\?\\", "\\\\.\\", "\\??\\")):
        raise Refusal("device_path", f"'{path}' is written in the Windows device namespace (\\\\?\\ or \\\\.\\): "
                                     "file transfers take ordinary paths only, such as C:\\Users\\name\\file.txt.")
    if re.match(r"^[A-Za-z]:\\", text):
        rest = text[3:]
    elif re.match(r"^\\\\[^\\]+\\[^\\]+", text):
        rest = "\\".join(text[2:].split("\\")[2:])
    else:
        return  # not absolute: full_path says so
    for part in rest.split("\\"):
        if ":" in part:
            raise Refusal("alternate_stream", f"'{path}' names an alternate data stream ('{part}'): file transfers "
                                              "move a file's main content only.")
        name = part.rstrip(". ").split(".")[0].rstrip(" ").upper()
        if name in RESERVED_NAMES:
            raise Refusal("reserved_name", f"'{path}' contains '{part}', a name Windows reserves for a device "
                                           f"({RESERVED_TEXT}), whatever its extension: it can never be a file.")


def _root_of(policy: dict[str, t.Any], path: str) -> str | None:
    lowered = path.lower()
    for root in policy["allowed_roots"]:
        if lowered.startswith(root.rstrip("\\").lower() + "\\"):
            return root
    return None


def check_no_reparse_point(device: Device, policy: dict[str, t.Any], path: str) -> None:
    """Assert-NoReparsePoint: no existing component of `path`, from the drive down, is a junction, symbolic link or
    mount point (a link in the device's tree, drives.py)."""
    if path.startswith("\\\\") or device.file_root is None:
        return  # host_path answers for network paths
    current = device.windows_path(path[:3])
    walked = path[:2]
    for part in [p for p in path[3:].split("\\") if p]:
        walked += "\\" + part
        if not current.is_dir() or os.path.islink(current):
            return
        match = drives.match_entry(current, part)
        if match is None:
            return  # the rest does not exist yet
        current = current / match
        if os.path.islink(current):
            raise reparse_refusal(policy, path, walked)


def reparse_refusal(policy: dict[str, t.Any], path: str, component: str) -> Refusal:
    root = _root_of(policy, path)
    if root is not None and (root.rstrip("\\").lower() + "\\").startswith(component.lower() + "\\"):
        return Refusal("reparse_point", f"The allowed folder '{root}' is not a real folder: '{component}' is a "
                                        "junction, symbolic link or mount point (policy FileTransferAllowedRoots). "
                                        "File transfers never follow links.")
    return Refusal("reparse_point", f"'{path}' goes through '{component}', a junction, symbolic link or mount point: "
                                    "file transfers never follow links.")


def final_path(device: Device, handle: t.BinaryIO) -> str | None:
    """GetFinalPathNameByHandle: where an open file really is now, links resolved and renames followed; None when
    that is outside the device's drives."""
    assert device.file_root is not None
    return drives.windows_path_of(device.file_root, f"/proc/self/fd/{handle.fileno()}")


def check_opened(device: Device, policy: dict[str, t.Any], path: str, handle: t.BinaryIO) -> str:
    """Assert-OpenedUnderRoot: the handle's final path is under an allowed root (a link put in the way after the
    checks shows here). Returns that final path, which the handle must keep."""
    final = final_path(device, handle)
    if final is None or _root_of(policy, final) is None:
        raise Refusal("path_changed", f"'{path}' was opened as '{final}', outside the folders this device allows file "
                                      "transfers in: a link was put in its way after it was checked. Nothing was "
                                      "transferred.")
    return final


def check_still_at(device: Device, path: str, handle: t.BinaryIO, pinned: str) -> None:
    """Assert-StillAt: the open file is where it was when it was opened (a folder on its way was not moved or
    replaced by a link meanwhile)."""
    final = final_path(device, handle)
    if final is None or final.lower() != pinned.lower():
        raise Refusal("path_changed", f"'{path}' moved to '{final}' while it was transferred: a folder on its way was "
                                      "moved or replaced by a link. The transfer was stopped.")


def host_path(device: Device, path: str) -> pathlib.Path:
    """Where the lab keeps a full Windows path of `device`. Names compare case-insensitively and answer to their short
    names, as on NTFS."""
    if path.startswith("\\\\"):
        raise Refusal("not_found", "The network path was not found.")
    if device.file_root is None:
        raise Refusal("not_found", "The device is not ready.")
    current = device.windows_path(path[:3])
    for part in [p for p in path[3:].split("\\") if p]:
        match = drives.match_entry(current, part) if current.is_dir() else None
        current = current / (match or part)
        if os.path.islink(current) and not drives.link_stays_inside(device.file_root, current):
            # A link out of the device's drives is dangling on the device: the lab never follows it out.
            raise Refusal("not_found", f"Could not find a part of the path '{path}'.")
    return current


def is_folder(device: Device, path: str) -> bool:
    """[System.IO.Directory]::Exists: false, not an error, for what is no folder of this device's drives."""
    try:
        return host_path(device, path).is_dir()
    except (Refusal, ValueError):
        return False


def _covered(path: str, paths: t.Iterable[str]) -> bool:
    lowered = path.lower().rstrip("\\")
    return any(lowered == p.rstrip("\\") or lowered.startswith(p.rstrip("\\") + "\\") for p in paths)


def check_access(device: Device, path: str) -> None:
    """Fails as Windows does for a path whose ACL (or a folder's above it) denies the WinRM account."""
    if _covered(path, device.denied_paths):
        raise access_denied(path)


def check_not_locked(device: Device, path: str) -> None:
    if path.lower() in device.locked_files:
        raise in_use(path)


def open_for_reading(device: Device, path: str) -> t.BinaryIO:
    """A FileStream opened for reading, sharing only reading (FileShare.Read)."""
    check_access(device, path)
    check_not_locked(device, path)
    host = host_path(device, path)
    if host.is_dir():
        raise access_denied(path)  # what opening a folder as a file says on Windows
    try:
        return open(host, "rb")
    except FileNotFoundError:
        raise Refusal("not_found", f"Could not find file '{path}'.") from None


def sha256_of(handle: t.BinaryIO, count: int | None = None) -> t.Any:
    """The SHA-256 of the first `count` bytes (all when None) from the start of an open file."""
    digest = hashlib.sha256()
    handle.seek(0)
    left = count
    while left is None or left > 0:
        block = handle.read(1024 * 1024 if left is None else min(1024 * 1024, left))
        if not block:
            break
        digest.update(block)
        if left is not None:
            left -= len(block)
    return digest


# The policy (support_policy.effective_policy's rules, as the scripts apply them) ---------------------------------------
def normalize_root(text: t.Any) -> str | None:
    root = str(text).strip().replace("/", "\\")
    if not root or re.search(r'[<>"|?*\x00-\x1f]', root):
        return None
    if re.match(r"^[A-Za-z]:\\", root):
        root = root[0].upper() + root[1:]
        rest = root[3:]
    elif re.match(r"^\\\\[^\\]+\\[^\\]+", root):
        rest = root[2:]
    else:
        return None
    if ":" in rest or any(part.strip(" ") in (".", "..") for part in rest.split("\\")) or \
            "\\\\" in rest.rstrip("\\"):
        return None
    root = root.rstrip("\\")
    if len(root) == 2:
        root += "\\"
    return root if len(root) <= 248 else None


def read_policy(device: Device) -> dict[str, t.Any]:
    policy: dict[str, t.Any] = {"allowed_roots": list(DEFAULT_ALLOWED_ROOTS), "max_size_bytes": DEFAULT_MAX_SIZE_BYTES,
                                "source": "default"}
    registry = device.registry
    if not registry.key_exists(POLICY_KEY):
        return policy
    policy["source"] = "device"
    size = registry.get(POLICY_KEY, MAX_SIZE_VALUE)
    if size is not None and not isinstance(size, (list, bytes)):
        text = str(size).strip()
        if re.fullmatch(r"[+-]?\d+", text) and int(text) >= 1:
            policy["max_size_bytes"] = int(text)
    roots = registry.get(POLICY_KEY, ALLOWED_ROOTS_VALUE)
    if isinstance(roots, list):  # REG_MULTI_SZ: exactly these, the unusable ones left out
        policy["allowed_roots"] = [root for root in (normalize_root(entry) for entry in roots) if root is not None]
    return policy


def check_allowed(policy: dict[str, t.Any], path: str) -> None:
    for root in policy["allowed_roots"]:
        if path.lower().startswith(root.rstrip("\\").lower() + "\\"):
            return
    raise Refusal("path_not_allowed", f"'{path}' is outside the folders this device allows file transfers in "
                                      f"(policy FileTransferAllowedRoots: {'; '.join(policy['allowed_roots'])}).")


def check_size(policy: dict[str, t.Any], size: int) -> None:
    if size > policy["max_size_bytes"]:
        raise Refusal("too_large", f"The file is {size} bytes; this device allows at most {policy['max_size_bytes']} "
                                   "bytes per transfer (policy FileTransferMaxSizeBytes).")


def check_free_space(device: Device, path: str, needed: int) -> None:
    if needed > device.free_space_bytes:
        raise Refusal("disk_full", f"There is not enough space on the disk: {needed} bytes are needed and "
                                   f"{device.free_space_bytes} bytes are free on {path[:3]}.")


# The session and the registration -----------------------------------------------------------------------------------
def session_stop(device: Device, session_id: str, transfer_key: str | None) -> dict[str, t.Any] | None:
    """None while the session allows the transfer; else why not, with the record as it is now (Get-SessionStop)."""
    with device.lock:  # the session mutex
        record = session.read_record(device)
        registered = transfer_key is not None and device.registry.key_exists(transfer_key)
        now = device.clock.now()
    message = None
    expires_at = session.parse_stamp(record["expires_at"]) if record and record.get("expires_at") else None
    if record is None:
        message = "The device has no support session."
    elif record["id"] != session_id:
        message = f"The support session {session_id} was replaced by session {record['id']}."
    elif record["state"] == "deauthorized":
        message = f"The support session was deauthorized by {record['ended_by']} at {record['ended_at']}."
    elif record["state"] == "expired" or (record["state"] == "authorized" and expires_at is not None
                                          and expires_at <= now):
        message = f"The support session's authorization expired at {record['expires_at']}."
    elif record["state"] != "authorized":
        message = f"The support session is {record['state']}."
    elif transfer_key is not None and not registered:
        message = f"The transfer was ended on the device (its entry under {TRANSFERS_KEY} was removed)."
    return None if message is None else {"message": message, "session": record}


# The processes of running transfers, by device and transfer id: what Stop-Process reaches on Windows.
_running: dict[tuple[str, str], asyncio.Task[t.Any]] = {}
_process_ids = itertools.count(4000, 4)


async def register(device: Device, request: t.Mapping[str, t.Any], direction: str, size: int) -> dict[str, t.Any] | None:
    """Registers this transfer under Transfers\\<transfer_id>, after stopping the process of an interrupted run of
    the same transfer; None, or why the session does not allow it (nothing registered then)."""
    transfer_id = request["transfer_id"]
    earlier = _running.pop((device.name, transfer_id), None)
    current = asyncio.current_task()
    if earlier is not None and earlier is not current and not earlier.done():
        earlier.cancel()  # Stop-Process -Force: no cleanup runs in the stopped process
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(asyncio.shield(earlier), 10)
    key = f"{TRANSFERS_KEY}\\{transfer_id}"
    with device.lock:
        stop = session_stop(device, request["session_id"], None)
        if stop is not None:
            return stop
        registry = device.registry
        registry.delete_key(key)
        for name, value in (("SessionId", request["session_id"]), ("Direction", direction), ("Path", request["path"]),
                            ("Size", size), ("RequestedBy", request["requested_by"]),
                            ("StartedAt", stamp(device.clock.now())), ("ProcessId", next(_process_ids)),
                            ("ProcessStartTime", device.clock.now().isoformat())):
            registry.set(key, name, value)
    if current is not None:
        _running[(device.name, transfer_id)] = current
    return None


def unregister(device: Device, transfer_id: str) -> None:
    with device.lock:
        device.registry.delete_key(f"{TRANSFERS_KEY}\\{transfer_id}")
    if _running.get((device.name, transfer_id)) is asyncio.current_task():
        del _running[(device.name, transfer_id)]


def audit(device: Device, outcome: str, message: str) -> int:
    device.write_event(session.EVENT_SOURCE, AUDIT_EVENTS[outcome], ENTRY_TYPES[outcome], message)
    return AUDIT_EVENTS[outcome]


# What both transfer scripts do (library transfer_session) -----------------------------------------------------------
async def write_message(io: ProcessIO, message: dict[str, t.Any]) -> None:
    """Write-Message: one compact JSON line on stdout."""
    await io.write_stdout((json.dumps(message, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8"))


async def read_line(io: ProcessIO, max_length: int) -> str:
    """Read-Line: one ASCII line from stdin."""
    try:
        line = await io.read_stdin_line(max_length)
    except ValueError:
        raise DeviceScriptError("The controller sent a line this script does not expect.") from None
    if line is None:
        raise Refusal("interrupted", "stdin ended before the controller said how to go on: the transfer was "
                                     "interrupted.")
    return line.decode("ascii", errors="replace")


async def read_start(io: ProcessIO, kept: int) -> int:
    """The byte the controller starts at, after the ready message: 0, or the `kept` bytes the device already has."""
    text = await read_line(io, 20)
    try:
        start = int(text)
    except ValueError:
        raise DeviceScriptError(f'Cannot convert value "{text}" to type "System.Int64".') from None
    if start not in (0, kept):
        raise DeviceScriptError(f"The controller asked to start at byte {start}; only 0 or {kept} are possible.")
    return start


def checked_path(device: Device, request: t.Mapping[str, t.Any], result: dict[str, t.Any]
                 ) -> tuple[str, dict[str, t.Any]]:
    """The request's path made full and checked against the policy; (path, policy). The result names the full path."""
    check_form(request["path"])
    path = full_path(request["path"])
    result["path"] = path
    policy = read_policy(device)
    check_allowed(policy, path)
    check_no_reparse_point(device, policy, path)
    return path, policy


async def register_or_refuse(device: Device, request: t.Mapping[str, t.Any], result: dict[str, t.Any],
                             direction: str, size: int) -> None:
    """register(), refusing the transfer (with the session record in the result) when the session does not allow it."""
    stop = await register(device, request, direction, size)
    if stop is not None:
        result["session"] = stop["session"]
        raise Refusal("session_not_authorized", stop["message"])


def record_stop(result: dict[str, t.Any], stop: dict[str, t.Any]) -> None:
    """The session ended the transfer mid-way."""
    result.update(outcome="stopped", session=stop["session"],
                  error={"code": "session_ended", "message": stop["message"]})


def record_failure(result: dict[str, t.Any], failure: Exception) -> Refusal:
    """A refusal, or an OSError in the words Windows uses for it, as the result's error."""
    refusal = failure if isinstance(failure, Refusal) else from_os_error(t.cast(OSError, failure), result["path"])
    result["outcome"] = "failed"
    result["error"] = refusal.as_failure()
    return refusal


def end(device: Device, request: t.Mapping[str, t.Any], result: dict[str, t.Any], *, what: str, size: int | None,
        done: int, success: str) -> None:
    """Unregisters the transfer and writes its audit event; `what` names the transfer, `success` how it ended well."""
    unregister(device, request["transfer_id"])
    if result["outcome"] == "completed":
        message = (f"{what}, {size} bytes, SHA-256 {result['sha256']}. Successfully {success}. Requested by "
                   f"{request['requested_by']}.")
    else:
        message = (f"{what}: Sending failed after {done} of {size} bytes: {result['error']['message']} "
                   f"Requested by {request['requested_by']}.")
    result["audit_event_id"] = audit(device, result["outcome"], message)
