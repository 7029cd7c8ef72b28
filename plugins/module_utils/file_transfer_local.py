# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller's side of a transfer's files: options checked before anything starts, the transfer's id, hashing
local files, room for a received file, and the temporary file a receive writes beside its destination. On the controller the destination folder
may be shared with other users: the temporary file is created exclusively under a name nobody can guess, never through
a link, and an earlier run's file is taken up again only when it is a regular file of this user's that nobody else may
read (see `own_partial`)."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import stat
import typing as t

from ansible_collections.remote_support.windows.plugins.module_utils.file_transfer_report import TransferFailed

# Local reads while hashing.
READ_BYTES = 1024 * 1024

# Control characters (NUL included) have no place in a path or a requester's name: refused before anything starts.
CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")
# The controller's temporary files: PARTIAL_PREFIX + transfer id + "-" + a random part + ".partial".
PARTIAL_PREFIX = ".~rs-"


def option_error(options: t.Mapping[str, t.Any]) -> str | None:
    """What is wrong with an option that carries a control character, or None."""
    for name in sorted(options):
        value = options[name]
        found = CONTROL_CHARACTER.search(value) if isinstance(value, str) else None
        if found is not None:
            what = "a NUL byte" if found.group() == "\x00" else f"the control character {found.group()!r}"
            return (f"The option {name} contains {what} at position {found.start()}: no path or name may carry one. "
                    "Nothing was transferred; remove it and run the task again.")
    return None


def own_partial(folder: str, identity: str) -> str | None:
    """The temporary file an interrupted run of this transfer left in `folder`, if it is one this user can trust: a
    regular file (not a link), owned by this user, readable by nobody else, with no other name (hard link). Anything
    else with a matching name was not made by this collection and is left alone."""
    prefix = f"{PARTIAL_PREFIX}{identity}-"
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return None
    for name in names:
        if name.startswith(prefix) and name.endswith(".partial"):
            path = os.path.join(folder, name)
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if _trusted(info):
                return path
    return None


def _trusted(info: os.stat_result) -> bool:
    return (stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid() and info.st_nlink == 1
            and not info.st_mode & 0o077)


def open_partial(folder: str, identity: str, existing: str | None) -> tuple[str, t.BinaryIO]:
    """Opens `existing` (own_partial's answer) again without following a link and checks it is still that file, or
    creates a new temporary file exclusively (O_EXCL | O_NOFOLLOW, mode 0600, an unpredictable name)."""
    flags = os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    if existing is not None:
        try:
            descriptor = os.open(existing, flags)
        except OSError:
            descriptor = None
        if descriptor is not None:
            if _trusted(os.fstat(descriptor)):
                return existing, os.fdopen(descriptor, "r+b")
            os.close(descriptor)
    path = os.path.join(folder, f"{PARTIAL_PREFIX}{identity}-{secrets.token_hex(16)}.partial")
    return path, os.fdopen(os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600), "r+b")


def new_file_mode() -> int:
    """The mode a file created now gets (0666 less the umask), read without changing the umask where Linux says it."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def transfer_id(direction: str, device_path: str, controller_host: str, local_path: str) -> str:
    """Names one transfer on the device (its registration and temporary file): the same direction, device path,
    controller and local path give the same id, so a rerun finds what an interrupted run left."""
    key = "\n".join((direction, device_path.replace("/", "\\").lower(), controller_host.lower(), local_path))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def file_sha256(path: str, limit: int | None = None) -> hashlib._Hash:
    """The SHA-256 of a local file's first `limit` bytes (all of it when None), read a block at a time."""
    with open(path, "rb") as handle:
        return sha256_of(handle, limit)


def sha256_of(handle: t.BinaryIO, limit: int | None = None) -> hashlib._Hash:
    digest = hashlib.sha256()
    left = limit
    handle.seek(0)
    while left is None or left > 0:
        block = handle.read(READ_BYTES if left is None else min(READ_BYTES, left))
        if not block:
            break
        digest.update(block)
        if left is not None:
            left -= len(block)
    return digest


def remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def check_local_space(dest: str, needed: int) -> None:
    """Creates the destination's folder on the controller and checks it has room for `needed` bytes."""
    folder = os.path.dirname(dest)
    try:
        os.makedirs(folder, exist_ok=True)
        free = shutil.disk_usage(folder).free
    except OSError as error:
        raise TransferFailed("access_denied", f"Cannot use {folder} on the controller: {error.strerror}.") from None
    if needed > free:
        raise TransferFailed("disk_full", f"There is not enough space on the controller: {needed} bytes are "
                                          f"needed and {free} bytes are free in {folder}.")
