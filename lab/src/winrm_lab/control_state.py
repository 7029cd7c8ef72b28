"""The control surface's model: how a simulated device looks through the API, and each change the API applies.

Every function checks what the caller sent (a `BadRequest` names what is wrong and what is allowed) before it takes
the device's lock and changes anything, so a refused request leaves the device as it was. control.py serves these
over HTTP.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import os
import pathlib
import typing as t

from . import drives, remote_desktop
from .device import Device, Faults, InteractiveUser, WinRMServiceConfig
from .event_log import LOG_MODES, MINIMUM_MAXIMUM_SIZE_BYTES
from .outputs import device_kind

CONSENT_ANSWERS = ("accept", "deny", "ignore")
CERTIFICATE_KINDS = ("valid", "mismatch", "untrusted", "expired")


class BadRequest(ValueError):
    """The caller sent something the API cannot apply (400)."""


def _utc(moment: datetime.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# How a device looks through the API --------------------------------------------------------------------------------
def faults_state(device: Device) -> dict[str, t.Any]:
    state = dataclasses.asdict(device.faults)
    state["wmi_error"] = device.wmi_error  # a device-level fault too: makes WMI-reading scripts fail
    return state


def device_summary(device: Device) -> dict[str, t.Any]:
    return {
        "name": device.name,
        "address": device.address,
        "device_type": device_kind(device),
        "behaviours": list(device.behaviours),
        "expected": dict(device.expected),
    }


def device_state(device: Device) -> dict[str, t.Any]:
    user = device.interactive_user
    with device.lock:
        return {
            **device_summary(device),
            "inventory_host": device.inventory_host,
            "http_port": device.http_port,
            "https_port": device.https_port,
            "hardware": dataclasses.asdict(device.hardware),
            "interactive_user": None if user is None else dataclasses.asdict(user),
            "agent": {
                "running": device.agent.running,
                "interval_seconds": device.agent.interval_seconds,
                "last_checkin": _utc(device.last_checkin()),
                "heartbeat_task": None if device.agent.heartbeat_task is None else {
                    **dataclasses.asdict(device.agent.heartbeat_task),
                    "registered_at": _utc(device.agent.heartbeat_task.registered_at),
                    "state": "Ready" if device.agent.running else "Disabled",
                },
            },
            "clock": {"device_time": _utc(device.clock.now()), "offset_seconds": device.clock.offset_seconds},
            "service": dataclasses.asdict(device.service),
            "faults": faults_state(device),
            "accounts": sorted(device.accounts),  # names only; passwords stay in the inventory and manifest
        }


# Applying changes --------------------------------------------------------------------------------------------------
def _require_object(body: t.Any) -> dict[str, t.Any]:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def _check_fields(body: dict[str, t.Any], allowed: t.Iterable[str]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def _number(value: t.Any, name: str, minimum: float = 0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise BadRequest(f"{name} must be a number >= {minimum}")
    return value


def apply_user(device: Device, body: t.Any, replace: bool) -> None:
    """PUT: log a user on (replacing whoever was there); PATCH: change how the logged-on user answers."""
    body = _require_object(body)
    fields = {f.name for f in dataclasses.fields(InteractiveUser)}
    _check_fields(body, fields)
    if "consent" in body and body["consent"] not in CONSENT_ANSWERS:
        raise BadRequest(f"consent must be one of {', '.join(CONSENT_ANSWERS)}")
    if "answer_after_seconds" in body:
        _number(body["answer_after_seconds"], "answer_after_seconds")
    if "session_id" in body and (not isinstance(body["session_id"], int) or body["session_id"] < 1):
        raise BadRequest("session_id must be a positive whole number")
    with device.lock:
        if replace:
            if not isinstance(body.get("name"), str) or not body["name"]:
                raise BadRequest("name (DOMAIN\\user) is required to log a user on")
            if device.interactive_user is not None:
                device.tasks.user_logged_off(device.interactive_user.name)  # the one before is logged off
            device.interactive_user = InteractiveUser(**body)
        else:
            if device.interactive_user is None:
                raise BadRequest("nobody is logged on; PUT a user first")
            for key, value in body.items():
                setattr(device.interactive_user, key, value)
        device.write_event("Microsoft-Windows-Winlogon", 7001, "Information",
                           f"User Logon Notification for Customer Experience Improvement Program: "
                           f"{device.interactive_user.name}", log="System")


def log_user_off(device: Device) -> None:
    with device.lock:
        if device.interactive_user is not None:
            # Logging off ends the processes of the user's session: a prompt on the screen closes unanswered.
            device.tasks.user_logged_off(device.interactive_user.name)
            device.write_event("Microsoft-Windows-Winlogon", 7002, "Information",
                               f"User Logoff Notification for Customer Experience Improvement Program: "
                               f"{device.interactive_user.name}", log="System")
        device.interactive_user = None


def apply_agent(device: Device, body: t.Any) -> None:
    body = _require_object(body)
    _check_fields(body, ("running", "interval_seconds"))
    with device.lock:
        if "interval_seconds" in body:
            interval = _number(body["interval_seconds"], "interval_seconds", 1)
            if int(interval) != interval:
                raise BadRequest("interval_seconds must be a whole number")
            device.agent.interval_seconds = int(interval)
        if "running" in body:
            if not isinstance(body["running"], bool):
                raise BadRequest("running must be true or false")
            if device.agent.running and not body["running"]:
                # The last check-in stays where it was when the agent stopped; from now on it only ages.
                device.agent.stopped_last_checkin = device.last_checkin()
                device.write_event("RemoteSupportAgent", 2, "Warning", "The remote support agent stopped.")
            elif not device.agent.running and body["running"]:
                device.write_event("RemoteSupportAgent", 1, "Information", "The remote support agent started.")
            device.agent.running = body["running"]
        device.sync_agent_registry()


def apply_service(device: Device, body: t.Any) -> None:
    body = _require_object(body)
    fields = {f.name: f for f in dataclasses.fields(WinRMServiceConfig)}
    _check_fields(body, fields)
    with device.lock:
        for key, value in body.items():
            current = getattr(device.service, key)
            if isinstance(current, bool) != isinstance(value, bool) or not isinstance(value, type(current)):
                raise BadRequest(f"{key} must be a {type(current).__name__}")
            if isinstance(value, int) and not isinstance(value, bool) and value < 0:
                raise BadRequest(f"{key} must not be negative")
        for key, value in body.items():
            setattr(device.service, key, value)


def apply_faults(device: Device, body: t.Any) -> bool:
    """Sets the given faults; returns whether the listeners must be refreshed (refuse_connections changed)."""
    body = _require_object(body)
    fields = {f.name for f in dataclasses.fields(Faults)} | {"wmi_error"}
    _check_fields(body, fields)
    for key in ("refuse_connections", "blackhole", "http_500"):
        if key in body and not isinstance(body[key], bool):
            raise BadRequest(f"{key} must be true or false")
    if "latency_seconds" in body:
        _number(body["latency_seconds"], "latency_seconds")
    for key in ("drop_after_bytes", "drop_after_response_bytes"):
        if body.get(key) is not None:
            drop = body[key]
            if isinstance(drop, bool) or not isinstance(drop, int) or drop < 0:
                raise BadRequest(f"{key} must be a whole number of bytes, or null")
    if "certificate" in body and body["certificate"] not in CERTIFICATE_KINDS:
        raise BadRequest(f"certificate must be one of {', '.join(CERTIFICATE_KINDS)}")
    if body.get("wmi_error") is not None and not isinstance(body["wmi_error"], str):
        raise BadRequest("wmi_error must be the error message, or null")
    with device.lock:
        refuse_before = device.faults.refuse_connections
        for key, value in body.items():
            if key == "wmi_error":
                device.wmi_error = value or None
            else:
                setattr(device.faults, key, value)
        return device.faults.refuse_connections != refuse_before


def set_password(device: Device, user: str, body: t.Any) -> None:
    """Sets (or creates) an account's password on the device: the way to make an inventory's password wrong."""
    body = _require_object(body)
    _check_fields(body, ("password",))
    password = body.get("password")
    if not isinstance(password, str) or not password or ":" in password or "\n" in password:
        raise BadRequest("password must be a non-empty string without ':' or line breaks")
    with device.lock:
        device.accounts[_account_key(device, user) or user] = password


def remove_account(device: Device, user: str) -> bool:
    with device.lock:
        key = _account_key(device, user)
        if key is None:
            return False
        del device.accounts[key]
        return True


def _account_key(device: Device, user: str) -> str | None:
    return next((key for key in device.accounts if key.lower() == user.lower()), None)


def clear_faults(device: Device) -> bool:
    with device.lock:
        refuse_before = device.faults.refuse_connections
        device.faults = Faults()
        device.wmi_error = None
        return refuse_before


def advance_clock(device: Device, body: t.Any) -> dict[str, t.Any]:
    body = _require_object(body)
    _check_fields(body, ("seconds",))
    seconds = _number(body.get("seconds"), "seconds")
    with device.lock:
        device.clock.advance(seconds)
        device.sync_agent_registry()
        return {"name": device.name, "device_time": _utc(device.clock.now()),
                "offset_seconds": device.clock.offset_seconds}


def events(device: Device, log: str | None, since: str | None) -> list[dict[str, t.Any]]:
    threshold = None
    if since:
        try:
            threshold = datetime.datetime.strptime(since, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
        except ValueError:
            raise BadRequest("since must look like 2024-01-31T12:00:00Z") from None
    with device.lock:
        entries = device.event_log.entries(log)
    return [
        {"log": e.log, "record_id": e.record_id, "source": e.source, "event_id": e.event_id,
         "entry_type": e.entry_type, "message": e.message, "time_generated": _utc(e.time_generated)}
        for e in entries
        if (log is None or e.log.lower() == log.lower()) and (threshold is None or e.time_generated >= threshold)
    ]


def apply_event_log(device: Device, body: t.Any) -> dict[str, t.Any]:
    """A log's maximum size and mode (wevtutil sl /ms: /rt:), or clearing it (wevtutil cl)."""
    body = _require_object(body)
    _check_fields(body, ("log", "maximum_size_bytes", "log_mode", "clear"))
    if not isinstance(body.get("log"), str) or not body["log"]:
        raise BadRequest("log (e.g. Application) is required")
    size = body.get("maximum_size_bytes")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < MINIMUM_MAXIMUM_SIZE_BYTES):
        raise BadRequest(f"maximum_size_bytes must be a whole number >= {MINIMUM_MAXIMUM_SIZE_BYTES}")
    if "log_mode" in body and body["log_mode"] not in LOG_MODES:
        raise BadRequest(f"log_mode must be one of {', '.join(LOG_MODES)}")
    with device.lock, device.event_log.lock:
        log = device.event_log.log(body["log"])
        if body.get("clear"):
            log.clear()
        if "log_mode" in body:
            log.log_mode = body["log_mode"]
        if size is not None:
            log.resize(size)
        information = log.information()
    information["oldest_time_created"] = _utc(information["oldest_time_created"])
    return information


def write_events(device: Device, body: t.Any) -> dict[str, t.Any]:
    """Events written as any local program may write to the Application log (Write-EventLog), `count` times."""
    body = _require_object(body)
    _check_fields(body, ("log", "source", "event_id", "entry_type", "message", "count"))
    for key in ("source", "message"):
        if not isinstance(body.get(key), str) or not body[key]:
            raise BadRequest(f"{key} is required")
    event_id, count = body.get("event_id"), body.get("count", 1)
    if isinstance(event_id, bool) or not isinstance(event_id, int) or not 0 <= event_id <= 65535:
        raise BadRequest("event_id must be a whole number from 0 to 65535")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 1000000:
        raise BadRequest("count must be a whole number from 1 to 1000000")
    if body.get("entry_type", "Information") not in ("Information", "Warning", "Error"):
        raise BadRequest("entry_type must be Information, Warning or Error")
    for _ in range(count):
        device.write_event(body["source"], event_id, body.get("entry_type", "Information"), body["message"],
                           log=body.get("log", "Application"))
    return {"written": count}


def scheduled_tasks(device: Device) -> list[dict[str, t.Any]]:
    """The device's registered scheduled tasks, as Get-ScheduledTask and Get-ScheduledTaskInfo show them."""
    return [task.as_dict() for task in sorted(device.tasks.all(), key=lambda task: task.name.lower())]


def prompts(device: Device) -> list[dict[str, t.Any]]:
    """The windows shown on the interactive user's desktop (consent prompts), oldest first."""
    with device.lock:
        shown = list(device.prompts)
    return [{"user": p.user, "title": p.title, "text": p.text, "timeout_seconds": p.timeout_seconds,
             "shown_at": _utc(p.shown_at), "closed_at": _utc(p.closed_at), "result": p.result} for p in shown]


def _device_path(device: Device, path: str | None) -> pathlib.Path:
    if not path:
        raise BadRequest("the path query parameter (a Windows path such as C:\\Users) is required")
    try:
        return device.windows_path(path)
    except ValueError as error:
        raise BadRequest(str(error)) from None


def read_path(device: Device, path: str | None, content: bool = True) -> dict[str, t.Any] | None:
    target = _device_path(device, path)
    if target.is_file() and not content:
        # Size and SHA-256 only, read a block at a time: how tests check files too large to ship as JSON.
        digest = hashlib.sha256()
        with open(target, "rb") as handle:
            for block in iter(lambda: handle.read(1024 * 1024), b""):
                digest.update(block)
        return {"path": path, "type": "file", "size": target.stat().st_size, "sha256": digest.hexdigest()}
    if target.is_dir():
        return {"path": path, "type": "directory", "entries": [
            {"name": child.name, "type": "directory" if child.is_dir() else "file",
             "size": None if child.is_dir() else child.stat().st_size}
            for child in sorted(target.iterdir(), key=lambda p: p.name.lower())
        ]}
    if target.is_file():
        data = target.read_bytes()
        return {"path": path, "type": "file", "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                "content_base64": base64.b64encode(data).decode("ascii")}
    return None


def write_file(device: Device, path: str | None, data: bytes) -> dict[str, t.Any]:
    target = _device_path(device, path)
    if target.is_dir():
        raise BadRequest(f"{path} is a directory")
    with device.lock:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return {"path": path, "type": "file", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def delete_path(device: Device, path: str | None) -> bool:
    target = _device_path(device, path)
    with device.lock:
        if target.is_symlink():  # a reparse point: the link goes, its target stays
            target.unlink()
            return True
        if target.is_file():
            target.unlink()
            return True
        if target.is_dir():
            if any(target.iterdir()):
                raise BadRequest(f"{path} is a directory that is not empty")
            target.rmdir()
            return True
    return False


def plant_link(device: Device, body: t.Any) -> dict[str, t.Any]:
    """A junction (a link in the device's tree, drives.py) at `path` to `target`, as a local user makes one with
    mklink /J. With `move_existing_to`, what is at `path` is first renamed there: a folder replaced by a link."""
    body = _require_object(body)
    _check_fields(body, ("path", "target", "move_existing_to"))
    link = _device_path(device, body.get("path"))
    target = _device_path(device, body.get("target"))
    moved = body.get("move_existing_to")
    with device.lock:
        if moved is not None:
            aside = _device_path(device, moved)
            if not os.path.lexists(link) or os.path.lexists(aside):
                raise BadRequest(f"move_existing_to needs something at {body['path']} and nothing at {moved}")
            os.rename(link, aside)
        if os.path.lexists(link):
            raise BadRequest(f"{body['path']} exists: give move_existing_to to replace it by the link")
        drives.make_link(link, target)
    return {"path": body["path"], "target": body["target"], "moved_to": moved}


def storage_state(device: Device) -> dict[str, t.Any]:
    with device.lock:
        return {"free_space_bytes": device.free_space_bytes, "denied_paths": sorted(device.denied_paths),
                "locked_files": sorted(device.locked_files)}


def apply_storage(device: Device, body: t.Any) -> None:
    """Free space, and the files and folders the WinRM account is denied or other programs hold open."""
    body = _require_object(body)
    _check_fields(body, ("free_space_bytes", "denied_paths", "locked_files"))
    if "free_space_bytes" in body:
        free = body["free_space_bytes"]
        if isinstance(free, bool) or not isinstance(free, int) or free < 0:
            raise BadRequest("free_space_bytes must be a whole number of bytes")
    paths: dict[str, set[str]] = {}
    for key in ("denied_paths", "locked_files"):
        if key in body:
            value = body[key]
            if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
                raise BadRequest(f"{key} must be a list of Windows paths")
            for entry in value:
                _device_path(device, entry)  # an absolute Windows path of this device
            paths[key] = {entry.replace("/", "\\").rstrip("\\").lower() for entry in value}
    with device.lock:
        if "free_space_bytes" in body:
            device.free_space_bytes = body["free_space_bytes"]
        if "denied_paths" in paths:
            device.denied_paths = paths["denied_paths"]
        if "locked_files" in paths:
            device.locked_files = paths["locked_files"]


def _registry_value(value: t.Any) -> t.Any:
    # Binary values travel as {"base64": ...}; everything else as JSON (str, int, list of str).
    return {"base64": base64.b64encode(value).decode("ascii")} if isinstance(value, bytes) else value


def read_registry(device: Device, path: str | None) -> dict[str, t.Any] | None:
    if not path:
        raise BadRequest("the path query parameter (e.g. HKLM:\\SOFTWARE\\RemoteSupport) is required")
    with device.lock:
        device.sync_agent_registry()
        if not device.registry.key_exists(path) and not device.registry.subkeys(path):
            return None
        values = device.registry.get_values(path)
        return {"path": path, "values": {k: _registry_value(v) for k, v in values.items()},
                "subkeys": device.registry.subkeys(path)}


def write_registry(device: Device, body: t.Any) -> None:
    body = _require_object(body)
    _check_fields(body, ("path", "name", "value"))
    path, name, value = body.get("path"), body.get("name"), body.get("value")
    if not isinstance(path, str) or not path or not isinstance(name, str):
        raise BadRequest("path and name are required strings")
    if isinstance(value, dict) and set(value) == {"base64"}:
        value = base64.b64decode(value["base64"])
    elif isinstance(value, bool) or not (isinstance(value, (str, int)) or
                                         (isinstance(value, list) and all(isinstance(v, str) for v in value))):
        raise BadRequest("value must be a string, a whole number, a list of strings or {\"base64\": ...}")
    with device.lock:
        device.registry.set(path, name, value)


def delete_registry(device: Device, path: str | None, name: str | None) -> None:
    """Removes a key (with what is below it) or, given a name, one value."""
    if not path:
        raise BadRequest("the path query parameter is required")
    with device.lock:
        if name is None:
            device.registry.delete_key(path)
        else:
            device.registry.delete_value(path, name)


# Remote Desktop ------------------------------------------------------------------------------------------------------
def apply_remote_desktop(device: Device, body: t.Any) -> None:
    """The firewall rule a shadow connection needs, and who is connected over Remote Desktop (servers only: a
    Windows client edition has one interactive session at a time)."""
    body = _require_object(body)
    _check_fields(body, ("shadow_firewall_rule_enabled", "remote_sessions"))
    if "shadow_firewall_rule_enabled" in body and not isinstance(body["shadow_firewall_rule_enabled"], bool):
        raise BadRequest("shadow_firewall_rule_enabled must be true or false")
    sessions: list[remote_desktop.LogonSession] | None = None
    if "remote_sessions" in body:
        if not isinstance(body["remote_sessions"], list):
            raise BadRequest("remote_sessions must be a list of {user, session_id, station, state}")
        if body["remote_sessions"] and device.hardware.os_product_type == 1:
            raise BadRequest(f"{device.name} runs a client edition of Windows, which allows one interactive session "
                             "at a time (the console user's)")
        sessions = []
        taken = set() if device.interactive_user is None else {device.interactive_user.session_id}
        for item in body["remote_sessions"]:
            if not isinstance(item, dict):
                raise BadRequest("each remote session must be an object")
            _check_fields(item, ("user", "session_id", "station", "state"))
            user, session_id = item.get("user"), item.get("session_id")
            if not isinstance(user, str) or "\\" not in user:
                raise BadRequest("user must be DOMAIN\\name")
            if isinstance(session_id, bool) or not isinstance(session_id, int) or session_id < 1 or session_id in taken:
                raise BadRequest("session_id must be a positive whole number no other session has")
            taken.add(session_id)
            if item.get("state", "Active") not in ("Active", "Disconnected"):
                raise BadRequest("state must be Active or Disconnected")
            station = item.get("station", f"RDP-Tcp#{len(sessions)}")
            sessions.append(remote_desktop.LogonSession(user, session_id, station, item.get("state", "Active")))
    with device.lock:
        if "shadow_firewall_rule_enabled" in body:
            device.remote_desktop.shadow_firewall_rule_enabled = body["shadow_firewall_rule_enabled"]
        if sessions is not None:
            device.remote_desktop.sessions = sessions


def shadow_request(device: Device, body: t.Any) -> dict[str, t.Any]:
    """mstsc /shadow:session_id [/control] [/noConsentPrompt], run by a specialist logged on as account."""
    body = _require_object(body)
    _check_fields(body, ("account", "session_id", "control", "no_consent_prompt"))
    account, session_id = body.get("account"), body.get("session_id")
    if not isinstance(account, str) or "\\" not in account:
        raise BadRequest("account must be DOMAIN\\name")
    if isinstance(session_id, bool) or not isinstance(session_id, int):
        raise BadRequest("session_id must be a whole number")
    for key in ("control", "no_consent_prompt"):
        if not isinstance(body.get(key, False), bool):
            raise BadRequest(f"{key} must be true or false")
    return remote_desktop.shadow(device, account, session_id, bool(body.get("control", False)),
                                 bool(body.get("no_consent_prompt", False)))
