"""A device's drives as folders on the lab's host, with Windows' reparse points.

`Device.file_root` stands for the device's drives: C:\\Users\\x is <file_root>/C/Users/x. A symbolic link anywhere in
that tree is a reparse point on the device (a junction, a symbolic link or a mount point: Windows tells them apart by
their reparse tag, the transfer scripts refuse all three alike), and its target, wherever it lands inside the device's
drives, is the Windows path it points at. A link whose target leaves the device's drives is dangling on the device:
the lab never follows it out of the tree.

Every device has the junctions Windows creates itself (`BUILTIN_JUNCTIONS`, and `PROFILE_JUNCTIONS` in every
profile), so `C:\\Users\\All Users` is `C:\\ProgramData` in the lab as it is on Windows.

Names compare case-insensitively, and a name that is not 8.3 also answers to its short name (`short_names`), as on an
NTFS system volume, where short names are on by default.
"""

from __future__ import annotations

import os
import pathlib
import re

# Junctions every Windows (Vista and later) has, link -> target, for compatibility with XP-era paths.
BUILTIN_JUNCTIONS = (
    ("Documents and Settings", "Users"),
    ("Users\\All Users", "ProgramData"),
    ("Users\\Default User", "Users\\Default"),
    ("ProgramData\\Application Data", "ProgramData"),
    ("ProgramData\\Desktop", "Users\\Public\\Desktop"),
    ("ProgramData\\Documents", "Users\\Public\\Documents"),
    ("ProgramData\\Start Menu", "ProgramData\\Microsoft\\Windows\\Start Menu"),
    ("ProgramData\\Templates", "ProgramData\\Microsoft\\Windows\\Templates"),
)
# The same inside every profile (C:\\Users\\<name>, and C:\\Users\\Default), relative to the profile.
PROFILE_JUNCTIONS = (
    ("Application Data", "AppData\\Roaming"),
    ("Local Settings", "AppData\\Local"),
    ("My Documents", "Documents"),
    ("Cookies", "AppData\\Local\\Microsoft\\Windows\\INetCookies"),
    ("Recent", "AppData\\Roaming\\Microsoft\\Windows\\Recent"),
    ("SendTo", "AppData\\Roaming\\Microsoft\\Windows\\SendTo"),
    ("Start Menu", "AppData\\Roaming\\Microsoft\\Windows\\Start Menu"),
    ("Templates", "AppData\\Roaming\\Microsoft\\Windows\\Templates"),
    ("AppData\\Local\\Application Data", "AppData\\Local"),
    ("Documents\\My Music", "Music"),
    ("Documents\\My Pictures", "Pictures"),
    ("Documents\\My Videos", "Videos"),
)
# Folders every Windows has on C:.
BUILTIN_FOLDERS = ("Windows\\Temp", "Windows\\System32", "ProgramData\\Microsoft\\Windows\\Start Menu",
                   "ProgramData\\Microsoft\\Windows\\Templates", "Users\\Public\\Desktop", "Users\\Public\\Documents",
                   "Users\\Default")
PROFILE_FOLDERS = ("Desktop", "Documents", "Music", "Pictures", "Videos", "AppData\\Local\\Microsoft\\Windows\\INetCookies",
                   "AppData\\Roaming\\Microsoft\\Windows\\Recent", "AppData\\Roaming\\Microsoft\\Windows\\SendTo",
                   "AppData\\Roaming\\Microsoft\\Windows\\Start Menu",
                   "AppData\\Roaming\\Microsoft\\Windows\\Templates")


def _host(drive: pathlib.Path, windows_relative: str) -> pathlib.Path:
    return drive.joinpath(*[part for part in windows_relative.split("\\") if part])


def make_link(link: pathlib.Path, target: pathlib.Path) -> None:
    """A reparse point at `link` pointing at `target` (both host paths in one device's tree). Relative, so the
    tree means the same wherever the lab keeps it."""
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(target, link.parent), link, target_is_directory=True)


def prepare_drive_c(file_root: pathlib.Path, profiles: list[str]) -> None:
    """Drive C: with the folders and junctions every Windows has, and the given user profiles."""
    drive = file_root / "C"
    for folder in BUILTIN_FOLDERS:
        _host(drive, folder).mkdir(parents=True, exist_ok=True)
    for profile in ["Default", *profiles]:
        home = _host(drive, "Users\\" + profile)
        for folder in PROFILE_FOLDERS:
            _host(home, folder).mkdir(parents=True, exist_ok=True)
        for link, target in PROFILE_JUNCTIONS:
            if not os.path.lexists(_host(home, link)):
                make_link(_host(home, link), _host(home, target))
    for link, target in BUILTIN_JUNCTIONS:
        if not os.path.lexists(_host(drive, link)):
            make_link(_host(drive, link), _host(drive, target))


def windows_path_of(file_root: pathlib.Path, host: str | os.PathLike[str]) -> str | None:
    """The Windows path of a host path in the device's tree, links resolved (what GetFinalPathNameByHandle gives for
    a handle to it); None when it lies outside the device's drives."""
    real = pathlib.Path(os.path.realpath(host))
    root = pathlib.Path(os.path.realpath(file_root))
    try:
        relative = real.relative_to(root)
    except ValueError:
        return None
    parts = relative.parts
    if not parts or len(parts[0]) != 1 or not parts[0].isalpha():
        return None
    return parts[0].upper() + ":\\" + "\\".join(parts[1:])


def link_stays_inside(file_root: pathlib.Path, link: pathlib.Path) -> bool:
    """Whether a link of the device's tree lands inside the device's drives (else it is dangling on the device)."""
    return windows_path_of(file_root, link) is not None


_SHORT_INVALID = re.compile(r'[^A-Z0-9!#$%&\'()@^_`{}~-]')


def _is_short(name: str) -> bool:
    base, dot, extension = name.partition(".")
    return (0 < len(base) <= 8 and len(extension) <= 3 and "." not in extension and
            not _SHORT_INVALID.search((base + extension).upper()))


def short_names(names: list[str]) -> dict[str, str]:
    """The 8.3 names Windows gives the entries of one folder that need one: the first six usable characters of the
    name, ~N, and the first three of its extension, N counting the names that share that start. Windows numbers
    them in the order the entries were created (and hashes after ~4); the lab counts in name order."""
    taken: dict[str, int] = {}
    result: dict[str, str] = {}
    for name in sorted(names, key=str.casefold):
        if _is_short(name):
            continue
        stem, _, extension = name.rpartition(".") if "." in name.lstrip(".") else (name, "", "")
        base = _SHORT_INVALID.sub("_", stem.upper().replace(" ", "").replace(".", ""))[:6] or "_"
        suffix = _SHORT_INVALID.sub("_", extension.upper().replace(" ", ""))[:3]
        key = base + "." + suffix
        taken[key] = taken.get(key, 0) + 1
        result[name] = f"{base}~{taken[key]}" + (f".{suffix}" if suffix else "")
    return result


def match_entry(folder: pathlib.Path, part: str) -> str | None:
    """The entry of a host folder that a Windows name component means: the same name in any case, or the entry
    whose short name it is; None when there is none."""
    try:
        names = os.listdir(folder)
    except OSError:
        return None
    folded = part.casefold()
    exact = next((name for name in names if name.casefold() == folded), None)
    if exact is not None or "~" not in part:
        return exact
    return next((name for name, short in short_names(names).items() if short.casefold() == folded), None)
