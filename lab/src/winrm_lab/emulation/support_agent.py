"""The support agent's pieces as a device keeps them, for the emulations of get_agent_state.ps1, install_agent.ps1,
heartbeat.ps1 and uninstall_agent.ps1.

- The agent scripts are real files in the device's file tree, C:\\ProgramData\\RemoteSupport\\scripts\\NAME.ps1,
  written UTF-8 with a byte-order mark as the scripts write them; their hashes and version headers are read from
  those files, so a file changed through the control surface reads as changed.
- The check-in task is `Device.agent.heartbeat_task`; it is enabled while `Device.agent.running` (stopping the agent
  through the control surface stands for a disabled task). While it runs the lab derives each check-in from the
  device's clock (device.py) instead of running heartbeat.ps1 every minute.
- The heartbeat's cleanup of transfer temporary files reads the files' modification times as device time.
- The lab keeps no ACLs: the scripts folder counts as locked down once it exists (the scripts that create it,
  install_agent.ps1 and set_support_session.ps1, lock it down on Windows).
"""

from __future__ import annotations

import datetime
import hashlib
import pathlib
import re

from ..device import AGENT_REGISTRY_KEY, Device, HeartbeatTask
from . import layout
from .scripts import DeviceScriptError

SYSTEM_ROOT = r"C:\Windows"
SCRIPTS_FOLDER = layout.SCRIPTS_FOLDER
POWERSHELL = SYSTEM_ROOT + r"\System32\WindowsPowerShell\v1.0\powershell.exe"
HEARTBEAT_TASK = layout.TASKS["heartbeat"]
EVENT_SOURCE = layout.EVENT_SOURCE
STAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def stamp(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).strftime(STAMP_FORMAT)


def script_path(name: str) -> str:
    if not _NAME.match(name):
        raise DeviceScriptError(f"'{name}' is not an agent script name.")
    return f"{SCRIPTS_FOLDER}\\{name}.ps1"


def folder_exists(device: Device) -> bool:
    try:
        return device.windows_path(SCRIPTS_FOLDER).is_dir()
    except ValueError:
        return False


def read_file(device: Device, name: str) -> dict[str, object]:
    try:
        path = device.windows_path(script_path(name))
    except ValueError:
        return {"present": False, "version": None, "sha256": None}
    if not path.is_file():
        return {"present": False, "version": None, "sha256": None}
    data = path.read_bytes()
    text = data.decode("utf-8", errors="replace").lstrip("\ufeff")
    version = None
    named = re.search(rf"(?m)^# device-script: {re.escape(name)}\s*$", text)
    found = re.search(r"(?m)^# version: *(\d+)\s*$", text)
    if named and found:
        version = int(found.group(1))
    return {"present": True, "version": version, "sha256": hashlib.sha256(data).hexdigest()}


def write_file(device: Device, name: str, text: str) -> None:
    if not re.search(rf"(?m)^# device-script: {re.escape(name)}\s*$", text):
        raise DeviceScriptError(f"files.{name} is not the {name} device script (its header does not name it).")
    try:
        path = device.windows_path(script_path(name))
    except ValueError:
        raise DeviceScriptError(f"Could not find a part of the path '{script_path(name)}'.") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(path.name + ".new")
    staging.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    staging.replace(path)


def heartbeat_arguments() -> str:
    return ('-NoProfile -NonInteractive -ExecutionPolicy Bypass -WindowStyle Hidden '
            f'-File "{SCRIPTS_FOLDER}\\heartbeat.ps1"')


def heartbeat_task_state(device: Device) -> dict[str, object] | None:
    task = device.agent.heartbeat_task
    if task is None:
        return None
    last = device.last_checkin() if device.agent.running else None
    return {
        "state": "Ready" if device.agent.running else "Disabled",
        "execute": task.execute,
        "arguments": task.arguments,
        "user_id": task.user_id,
        "interval_seconds": task.interval_seconds,
        "last_run_time": None if last is None else stamp(last),
        "last_task_result": 0 if last is not None else 0x00041303,  # SCHED_S_TASK_HAS_NOT_RUN
    }


def register_heartbeat(device: Device, interval_seconds: int) -> None:
    """Register-ScheduledTask -Force, then Start-ScheduledTask: the task replaces any other of that name and checks
    in at once; from then on every interval."""
    if not read_file(device, "heartbeat")["present"]:
        raise DeviceScriptError(f"The heartbeat script is not installed in {SCRIPTS_FOLDER}; send files.heartbeat "
                                "with this request.")
    with device.lock:
        device.agent.heartbeat_task = HeartbeatTask(execute=POWERSHELL, arguments=heartbeat_arguments(),
                                                    user_id="SYSTEM", interval_seconds=interval_seconds,
                                                    registered_at=device.clock.now())
        device.agent.interval_seconds = interval_seconds
        device.agent.running = True
        device.agent.stopped_last_checkin = None
        device.sync_agent_registry()


def last_checkin(device: Device) -> str | None:
    with device.lock:
        device.sync_agent_registry()
        value = device.registry.get(AGENT_REGISTRY_KEY, "LastCheckIn")
    return str(value) if value else None


# Transfer temporary files and the uninstall (library partial_files, heartbeat.ps1 v2, uninstall_agent.ps1) ---------
TRANSFERS_KEY = layout.REGISTRY["transfers"]
TRANSFER_FOLDERS_VALUE = "TransferFolders"
CLEANED_AT_VALUE = "PartialFilesCleanedAt"
TRANSFER_FOLDERS_KEPT = 256
PARTIAL_NAME = re.compile(r"^~rs-[A-Za-z0-9_-]{1,64}\.partial$")
DAY_SECONDS = 86400
ROOT_FOLDER = layout.ROOT_FOLDER
TASK_NAMES = tuple(layout.TASKS.values())


def read_transfer_folders(device: Device) -> list[str]:
    value = device.registry.get(AGENT_REGISTRY_KEY, TRANSFER_FOLDERS_VALUE)
    return [str(v) for v in value] if isinstance(value, list) else []


def note_transfer_folders(device: Device) -> list[str]:
    """Add-RunningTransferFolders: the destination folder of every registered transfer to the device is noted."""
    folders = read_transfer_folders(device)
    registry = device.registry
    for name in registry.subkeys(TRANSFERS_KEY):
        key = f"{TRANSFERS_KEY}\\{name}"
        path = str(registry.get(key, "Path", ""))
        if registry.get(key, "Direction", "") != "to_device" or not path:
            continue
        folder = path.rsplit("\\", 1)[0] if "\\" in path.rstrip("\\") else None
        if folder and len(folder) == 2 and folder[1] == ":":
            folder += "\\"  # [System.IO.Path]::GetDirectoryName('C:\x') is 'C:\'
        if folder and folder not in folders:
            folders.append(folder)
    folders = folders[-TRANSFER_FOLDERS_KEPT:]
    registry.set(AGENT_REGISTRY_KEY, TRANSFER_FOLDERS_VALUE, list(folders))
    return folders


def _real_folder(device: Device, folder: str) -> pathlib.Path | None:
    try:
        path = device.windows_path(folder)
    except ValueError:
        return None
    # A junction or symbolic link (the lab keeps them as symbolic links) is passed over, never followed.
    if path.is_symlink() or not path.is_dir():
        return None
    return path


def partial_files(device: Device, folders: list[str]) -> list[str]:
    found = []
    for folder in folders:
        path = _real_folder(device, folder)
        if path is None:
            continue
        for entry in sorted(path.iterdir()):
            if PARTIAL_NAME.match(entry.name) and entry.is_file() and not entry.is_symlink():
                found.append(folder.rstrip("\\") + "\\" + entry.name)
    return found


def remove_partial_files(device: Device, folders: list[str], older_than_seconds: int) -> list[str]:
    """Remove-PartialFiles: ~rs-*.partial files directly in each folder last written more than the given time ago
    on the device's clock (0: all); a folder or file that is a link is passed over."""
    removed = []
    cutoff = device.clock.timestamp() - older_than_seconds
    for windows_path in partial_files(device, folders):
        path = device.windows_path(windows_path)
        if older_than_seconds > 0 and path.stat().st_mtime > cutoff:
            continue
        path.unlink()
        removed.append(windows_path)
    return removed


def heartbeat_cleanup(device: Device) -> tuple[bool, list[str]]:
    """What heartbeat.ps1 does after its check-in: note the folders, and once a day remove the old temporary files."""
    folders = note_transfer_folders(device)
    now = device.clock.now()
    last = device.registry.get(AGENT_REGISTRY_KEY, CLEANED_AT_VALUE)
    try:
        last_time = datetime.datetime.strptime(str(last), STAMP_FORMAT).replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        last_time = None
    if last_time is not None and 0 <= (now - last_time).total_seconds() < DAY_SECONDS:
        return False, []
    removed = remove_partial_files(device, folders, DAY_SECONDS)
    kept = [f for f in folders if partial_files(device, [f])]
    device.registry.set(AGENT_REGISTRY_KEY, TRANSFER_FOLDERS_VALUE, kept)
    device.registry.set(AGENT_REGISTRY_KEY, CLEANED_AT_VALUE, stamp(now))
    return True, removed
