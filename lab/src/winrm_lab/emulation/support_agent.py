"""The support agent's pieces as a device keeps them, for the emulations of get_agent_state.ps1, install_agent.ps1
and heartbeat.ps1.

- The agent scripts are real files in the device's file tree, C:\\ProgramData\\RemoteSupport\\scripts\\NAME.ps1,
  written UTF-8 with a byte-order mark as the scripts write them; their hashes and version headers are read from
  those files, so a file changed through the control surface reads as changed.
- The check-in task is `Device.agent.heartbeat_task`; it is enabled while `Device.agent.running` (stopping the agent
  through the control surface stands for a disabled task). While it runs the lab derives each check-in from the
  device's clock (device.py) instead of running heartbeat.ps1 every minute.
- The lab keeps no ACLs: the scripts folder counts as locked down once it exists (the scripts that create it,
  install_agent.ps1 and set_support_session.ps1, lock it down on Windows).
"""

from __future__ import annotations

import datetime
import hashlib
import re

from ..device import AGENT_REGISTRY_KEY, Device, HeartbeatTask
from .scripts import DeviceScriptError

SYSTEM_ROOT = r"C:\Windows"
SCRIPTS_FOLDER = r"C:\ProgramData\RemoteSupport\scripts"
POWERSHELL = SYSTEM_ROOT + r"\System32\WindowsPowerShell\v1.0\powershell.exe"
HEARTBEAT_TASK = "RemoteSupport-Heartbeat"
EVENT_SOURCE = "RemoteSupport.Windows"
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
