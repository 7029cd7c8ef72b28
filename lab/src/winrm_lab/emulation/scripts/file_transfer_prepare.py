"""Emulation of file_transfer_prepare.ps1, version 1: what a transfer would meet on the device, changing nothing."""

from __future__ import annotations

import datetime
import ntpath
import typing as t

from ...device import Device
from .. import session, transfers
from ..transfers import Refusal

VERSION = 2


def _file_state(device: Device, policy: dict[str, t.Any], path: str, hash_if_size: int | None) -> dict[str, t.Any]:
    state: dict[str, t.Any] = {"exists": False, "is_directory": False, "size": None, "sha256": None,
                               "last_write_time": None, "read_only": False}
    host = transfers.host_path(device, path)
    if host.is_dir():
        return dict(state, exists=True, is_directory=True)
    if not host.is_file():
        return state
    info = host.stat()
    modified = datetime.datetime.fromtimestamp(info.st_mtime, tz=datetime.timezone.utc)
    state.update(exists=True, size=info.st_size, last_write_time=session.stamp(modified))
    if hash_if_size is not None and hash_if_size == info.st_size:
        with transfers.open_for_reading(device, path) as handle:
            transfers.check_opened(device, policy, path, handle)
            state["sha256"] = transfers.sha256_of(handle).hexdigest()
    return state


def run(device: Device, script_input: dict[str, t.Any]) -> dict[str, t.Any]:
    policy = transfers.read_policy(device)
    to_device = script_input["direction"] == "to_device"
    result: dict[str, t.Any] = {
        "script_version": VERSION,
        "device_time": session.stamp(device.clock.now()),
        "max_envelope_size_kb": device.service.max_envelope_size_kb,
        "policy": policy,
        "path": None,
        "file": None,
        "parent_exists": False,
        "partial": None,
        "free_space_bytes": None,
        "refusal": None,
    }
    try:
        given = script_input["path"]
        transfers.check_form(given)
        path = transfers.full_path(given)
        if to_device and (given.endswith(("\\", "/")) or transfers.is_folder(device, path)):
            joined = ntpath.join(path, script_input["file_name"] or "")
            transfers.check_form(joined)
            path = transfers.full_path(joined)
        result["path"] = path
        # Before anything is read: a file outside the allowed folders, or behind a link, is not even looked at.
        transfers.check_allowed(policy, path)
        transfers.check_no_reparse_point(device, policy, path)
        parent = ntpath.dirname(path)
        result["parent_exists"] = transfers.host_path(device, parent).is_dir()
        result["free_space_bytes"] = device.free_space_bytes
        result["file"] = state = _file_state(device, policy, path, script_input["hash_if_size"])
        if to_device:
            if state["is_directory"]:
                raise Refusal("is_directory", f"'{path}' is a folder.")
            size = script_input["size"] or 0
            transfers.check_size(policy, size)
            partial = ntpath.join(parent, f"~rs-{script_input['transfer_id']}.partial")
            partial_host = transfers.host_path(device, partial)
            if partial_host.is_file():
                result["partial"] = {"path": partial, "size": partial_host.stat().st_size}
            needed = size
            if result["partial"] is not None and result["partial"]["size"] <= size:
                needed = size - result["partial"]["size"]
            transfers.check_free_space(device, path, needed)
            if state["exists"]:
                # Assert-Writable: open for writing, sharing nothing
                transfers.check_access(device, path)
                transfers.check_not_locked(device, path)
        else:
            if not state["exists"]:
                raise Refusal("not_found", f"Could not find file '{path}'.")
            if state["is_directory"]:
                raise Refusal("is_directory", f"'{path}' is a folder.")
            transfers.check_size(policy, state["size"])
            with transfers.open_for_reading(device, path) as handle:
                transfers.check_opened(device, policy, path, handle)
    except Refusal as refusal:
        result["refusal"] = refusal.as_failure()
    return result
