"""What the collection leaves on a device (registry keys, folders, scheduled task names, the event source and the
event ids), as the collection declares it once, in plugins/module_utils/device_scripts/device_layout.json.

The lab reads that file as it reads the scripts' contracts and imports none of the collection's code: the emulations
use the collection's names, and still check its behaviour on their own.
"""

from __future__ import annotations

import json
import pathlib
import typing as t

from .powershell import DEVICE_SCRIPTS_ENV, collection_scripts_dir, device_scripts_dir
from .scripts import DeviceScriptError

LAYOUT_FILE = "device_layout.json"
PROGRAM_DATA = "C:\\ProgramData"


def _layout_path() -> pathlib.Path:
    # $WINRM_LAB_DEVICE_SCRIPTS may name a folder of other scripts (the benchmarks'); the layout is the collection's.
    for directory in (device_scripts_dir(), collection_scripts_dir()):
        if directory is not None and (directory / LAYOUT_FILE).is_file():
            return directory / LAYOUT_FILE
    raise DeviceScriptError(f"the lab cannot find the collection's {LAYOUT_FILE}: set {DEVICE_SCRIPTS_ENV} to the "
                            "collection's plugins/module_utils/device_scripts")


LAYOUT: dict[str, t.Any] = json.loads(_layout_path().read_text(encoding="utf-8"))
REGISTRY: dict[str, str] = LAYOUT["registry"]
TASKS: dict[str, str] = LAYOUT["tasks"]
EVENT_SOURCE: str = LAYOUT["event_source"]
ROOT_FOLDER = PROGRAM_DATA + "\\" + LAYOUT["folders"]["root"]
SCRIPTS_FOLDER = PROGRAM_DATA + "\\" + LAYOUT["folders"]["script"]


def event_id(name: str) -> int:
    """The event id the layout gives NAME: 'group.what' (session.authorized) or 'what' (consent_answered)."""
    value: t.Any = LAYOUT["events"]
    for part in name.split("."):
        value = value[part]
    if not isinstance(value, int):
        raise DeviceScriptError(f"{LAYOUT_FILE} names no single event {name}")
    return value


def events(group: str) -> dict[str, int]:
    """The ids of one group of events (session, remote_control, transfer, agent), by what they record."""
    return dict(LAYOUT["events"][group])
