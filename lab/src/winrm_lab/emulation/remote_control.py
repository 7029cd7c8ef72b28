"""Remote control as the device keeps it: what start_remote_control.ps1 and stop_remote_control.ps1 do, in one place,
for their emulations in emulation/scripts/. The registry layout is the scripts' (docs/remote-control.md):

    HKLM:\\SOFTWARE\\RemoteSupport\\RemoteControl       the grant (SessionId, Account, AccountSid, Mode, ...)
    HKLM:\\SOFTWARE\\RemoteSupport\\RemoteControlUndo   what ending the grant puts back (AccountAdded, Shadow...)

plus the RDP-Tcp listener's permissions (`device.remote_desktop.listener`), the Shadow policy value, the task
RemoteSupport-EndRemoteControl and its script. Callers hold `device.lock`, which stands for the scripts' mutex
Global\\RemoteSupport.Session.
"""

from __future__ import annotations

import datetime
import re
import typing as t

from .. import remote_desktop as rd
from ..device import Device
from ..tasks import ScheduledTask, TimeTrigger
from . import layout, session
from .scripts import DeviceScriptError

GRANT_KEY = layout.REGISTRY["remote_control"]
UNDO_KEY = layout.REGISTRY["remote_control_undo"]
END_TASK = session.END_REMOTE_CONTROL_TASK
TASK_SCRIPT = "stop_remote_control"

# Grant field -> (registry value, kind), as the scripts' $grantValues.
GRANT_VALUES = (
    ("support_session_id", "SessionId", "text"), ("account", "Account", "text"),
    ("account_sid", "AccountSid", "text"), ("mode", "Mode", "text"), ("user", "UserName", "text"),
    ("interactive_session_id", "ShadowSessionId", "number"), ("user_prompted", "PromptUser", "flag"),
    ("shadow_policy", "ShadowPolicy", "number"), ("granted_by", "GrantedBy", "text"),
    ("granted_at", "GrantedAt", "text"), ("expires_at", "ExpiresAt", "text"),
)


def shadow_policy_value(mode: str, prompt_user: bool) -> int:
    if mode == "control":
        return rd.SHADOW_CONTROL_WITH_PERMISSION if prompt_user else rd.SHADOW_CONTROL
    return rd.SHADOW_VIEW_WITH_PERMISSION if prompt_user else rd.SHADOW_VIEW


def read_grant(device: Device, strict: bool = True) -> dict[str, t.Any] | None:
    registry = device.registry
    if registry.get(GRANT_KEY, "SessionId") is None:
        return None
    grant: dict[str, t.Any] = {}
    for field, value_name, kind in GRANT_VALUES:
        raw = registry.get(GRANT_KEY, value_name)
        if raw is None and strict:
            raise DeviceScriptError(f"The remote-control grant under {GRANT_KEY} has no {value_name} value. Run "
                                    "remote_control with state stopped to clear it.")
        if kind == "flag":
            grant[field] = int(raw or 0) != 0
        elif kind == "number":
            grant[field] = int(raw or 0)
        else:
            grant[field] = "" if raw is None else str(raw)
    return grant


def write_grant(device: Device, grant: t.Mapping[str, t.Any]) -> None:
    registry = device.registry
    registry.create_key(GRANT_KEY)
    for field, value_name, kind in GRANT_VALUES:
        value = grant[field]
        registry.set(GRANT_KEY, value_name, int(bool(value)) if kind == "flag" else
                     int(value) if kind == "number" else str(value))


def same_grant(left: t.Mapping[str, t.Any] | None, right: t.Mapping[str, t.Any]) -> bool:
    if left is None:
        return False
    return all(str(left[f]) == str(right[f]) for f, _v, _k in GRANT_VALUES if f not in ("granted_at", "granted_by"))


def remote_desktop_state(device: Device) -> dict[str, t.Any]:
    """What the scripts report about Remote Desktop (contract: remote_desktop)."""
    if device.wmi_error:
        raise DeviceScriptError(device.wmi_error)  # Get-CimInstance Win32_OperatingSystem comes first
    enabled, source = rd.rdp_enabled(device)
    return {
        "enabled": enabled,
        "enabled_source": source,
        "port": rd.rdp_port(device),
        "edition": device.hardware.os_caption,
        "server": device.hardware.os_product_type != 1,
        "shadow_firewall_rule_enabled": device.remote_desktop.shadow_firewall_rule_enabled,
        "sessions": rd.active_sessions(device),
    }


def remote_control_mode(device: Device) -> str:
    """RemoteControlMode of the support policy: control | view | none; anything else (absent, not text, not a mode)
    counts as control."""
    value = device.registry.get(session.POLICY_KEY, "RemoteControlMode")
    if isinstance(value, str) and value.strip().lower() in ("control", "view", "none"):
        return value.strip().lower()
    return "control"


def current_shadow_policy(device: Device) -> int | None:
    return rd.shadow_policy(device)


# The end task and its script ----------------------------------------------------------------------------------------
def install_task_script(device: Device, text: str) -> None:
    if not re.search(rf"(?m)^# device-script: {TASK_SCRIPT}\s*$", text):
        raise DeviceScriptError(f"task_scripts.{TASK_SCRIPT} is not the {TASK_SCRIPT} device script (its header does "
                                "not name it).")
    path = device.windows_path(session.task_script_path(TASK_SCRIPT))
    data = b"\xef\xbb\xbf" + text.encode("utf-8")
    if path.is_file() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def end_task_armed_at(device: Device, expires_at: str) -> bool:
    task = device.tasks.get(END_TASK)
    return task is not None and any(session.stamp(trigger.start_boundary) == expires_at
                                    for trigger in task.time_triggers)


def arm_end_task(device: Device, expires_at: str) -> None:
    at = session.parse_stamp(expires_at)
    assert at is not None
    device.tasks.register(ScheduledTask(
        name=END_TASK, execute=session.POWERSHELL,
        arguments=(f'-NoProfile -NonInteractive -ExecutionPolicy Bypass -WindowStyle Hidden '
                   f'-File "{session.task_script_path(TASK_SCRIPT)}"'),
        user_id="SYSTEM", logon_type="ServiceAccount", run_level="Highest", time_triggers=[TimeTrigger(at)],
        multiple_instances="IgnoreNew", start_when_available=True, execution_time_limit_seconds=300))


# Undoing a grant ------------------------------------------------------------------------------------------------------
def undo(device: Device) -> tuple[bool, bool]:
    """Puts back what the grant changed, as recorded under RemoteControlUndo; returns (listener entry removed,
    Shadow policy restored). The Undo key goes too."""
    registry = device.registry
    listener_removed = policy_restored = False
    if not registry.key_exists(UNDO_KEY):
        return listener_removed, policy_restored
    if int(registry.get(UNDO_KEY, "AccountAdded", 0) or 0) == 1:
        sid = str(registry.get(UNDO_KEY, "AccountSid", ""))
        entry = rd.listener_entry(device, sid)
        if entry is not None:
            device.remote_desktop.listener.remove(entry)  # Win32_TSAccount.Delete
            listener_removed = True
    if int(registry.get(UNDO_KEY, "ShadowPolicyChanged", 0) or 0) == 1:
        current = rd.shadow_policy(device)
        # Only the value the grant set is restored: a value someone changed since is theirs.
        if current is not None and current == int(registry.get(UNDO_KEY, "ShadowPolicySetTo", -1)):
            previous = registry.get(UNDO_KEY, "ShadowPolicyPrevious")
            if previous is None:
                registry.delete_value(rd.TERMINAL_SERVICES_POLICY_KEY, "Shadow")
            else:
                registry.set(rd.TERMINAL_SERVICES_POLICY_KEY, "Shadow", int(previous))
            policy_restored = True
    registry.delete_key(UNDO_KEY)
    return listener_removed, policy_restored


def end_grant(device: Device, grant: t.Mapping[str, t.Any] | None) -> tuple[int, bool, bool]:
    """Closes the shadow connections to the granted session, undoes the grant's changes and removes it: what
    stop_remote_control.ps1 does. Returns (connections ended, listener entry removed, policy restored)."""
    ended = 0
    if grant is not None:
        if device.wmi_error:
            raise DeviceScriptError(device.wmi_error)  # Get-CimInstance Win32_Process
        ended = rd.end_connections(device, int(grant["interactive_session_id"]))
    listener_removed, policy_restored = undo(device)
    device.registry.delete_key(GRANT_KEY)
    return ended, listener_removed, policy_restored


def now_stamp(device: Device) -> tuple[datetime.datetime, str]:
    now = session.device_now(device)
    return now, session.stamp(now)
