"""The support session as the device keeps it: registry layout, record, policy, the consent route's tasks and keys.

What the session scripts (set_support_session.ps1 and the three task scripts) do to a device, in one place, for
their emulations in emulation/scripts/. Each function does what the PowerShell does, against `Device.registry`,
`Device.tasks` and `Device.event_log`; the layout is the scripts' (docs/consent-route.md):

    HKLM:\\SOFTWARE\\RemoteSupport\\Session          the record (one session per device)
    HKLM:\\SOFTWARE\\RemoteSupport\\Policy           ConfirmationRequired, ConfirmationTimeoutSeconds, SessionTtlSeconds
    HKLM:\\SOFTWARE\\RemoteSupport\\ConsentRequest   SessionId, UserName, UserSid, Deadline (written as SYSTEM/admin)
    HKLM:\\SOFTWARE\\RemoteSupport\\Consent          the prompted user's answer (the one key that user may write)

Callers hold `device.lock`, which stands for the scripts' mutex Global\\RemoteSupport.Session: everything an
emulation does between reading and writing the record is one step for every other writer.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import typing as t
import unicodedata

from ..device import Device
from ..tasks import EventTrigger, ScheduledTask, TimeTrigger
from . import layout
from .scripts import DeviceScriptError

SESSION_KEY = layout.REGISTRY["session"]
POLICY_KEY = layout.REGISTRY["policy"]
CONSENT_REQUEST_KEY = layout.REGISTRY["consent_request"]
CONSENT_KEY = layout.REGISTRY["consent"]

EVENT_SOURCE = layout.EVENT_SOURCE
TIMER = "timer"

PROMPT_TASK = layout.TASKS["consent_prompt"]
APPLY_CONSENT_TASK = layout.TASKS["apply_consent"]
EXPIRE_TASK = layout.TASKS["expire_session"]
# Remote control ends itself through this task (stop_remote_control) once the session is no longer authorized.
END_REMOTE_CONTROL_TASK = layout.TASKS["end_remote_control"]
TASK_SCRIPT_NAMES = ("consent_prompt", "apply_consent", "expire_session")
SCRIPTS_FOLDER = layout.SCRIPTS_FOLDER
POWERSHELL = r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe"

DEFAULT_POLICY = {"confirmation_required": True, "confirmation_timeout_seconds": 300, "session_ttl_seconds": 3600}

# Record field -> (registry value, kind): text is REG_SZ, numbers and the flag REG_DWORD; a null field has no value.
RECORD_VALUES = (
    ("id", "Id", "text"), ("state", "State", "text"), ("requested_by", "RequestedBy", "text"),
    ("reason", "Reason", "text"), ("requested_at", "RequestedAt", "text"),
    ("confirmation_required", "ConfirmationRequired", "flag"), ("confirmed_by", "ConfirmedBy", "text"),
    ("authorized_at", "AuthorizedAt", "text"), ("expires_at", "ExpiresAt", "text"), ("ended_by", "EndedBy", "text"),
    ("ended_at", "EndedAt", "text"), ("version", "Version", "number"), ("ttl_seconds", "TtlSeconds", "number"),
    ("confirmation_timeout_seconds", "ConfirmationTimeoutSeconds", "number"), ("changed_by", "ChangedBy", "text"),
    ("changed_at", "ChangedAt", "text"), ("renewal_requested_by", "RenewalRequestedBy", "text"),
    ("renewal_reason", "RenewalReason", "text"), ("renewal_requested_at", "RenewalRequestedAt", "text"),
)
RENEWAL_FIELDS = ("renewal_requested_by", "renewal_reason", "renewal_requested_at")
OPTIONAL_FIELDS = frozenset(("confirmed_by", "authorized_at", "expires_at", "ended_by", "ended_at", *RENEWAL_FIELDS))

# The requester's free text, as the scripts check and show it: one limit, no control, format or line-separator
# characters (.NET's \p{Cc}, \p{Cf}, \p{Zl}, \p{Zp}).
FREE_TEXT_LIMIT = 300
INVISIBLE_CATEGORIES = frozenset(("Cc", "Cf", "Zl", "Zp"))

STAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


# Time -----------------------------------------------------------------------------------------------------------------
def stamp(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).strftime(STAMP_FORMAT)


def parse_stamp(text: t.Any) -> datetime.datetime | None:
    try:
        return datetime.datetime.strptime(str(text), STAMP_FORMAT).replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return None


def required_stamp(text: t.Any) -> datetime.datetime:
    """A stamp the scripts read back and cannot go on without ([datetime]::ParseExact throws on anything else)."""
    moment = parse_stamp(text)
    if moment is None:
        raise DeviceScriptError('Exception calling "ParseExact" with "3" argument(s): "String was not recognized as '
                                'a valid DateTime."')
    return moment


def device_now(device: Device) -> datetime.datetime:
    """The device's clock in whole seconds, the resolution records are kept in."""
    return device.clock.now().replace(microsecond=0)


def change_result(version: int) -> dict[str, t.Any]:
    """What apply_consent and expire_session answer before they know anything: nothing to do yet."""
    return {"script_version": version, "device_time": None, "outcome": "nothing_to_do", "session_id": None,
            "state": None, "version": None}


def stamp_now(device: Device, result: dict[str, t.Any]) -> datetime.datetime:
    """The device's time, stamped on a script's result as device_time, as the scripts do once they hold the lock."""
    now = device_now(device)
    result["device_time"] = stamp(now)
    return now


def has_invisible_characters(text: str) -> bool:
    return any(unicodedata.category(char) in INVISIBLE_CATEGORIES for char in text)


def format_free_text(text: str) -> str:
    """consent_prompt.ps1's Format-FreeText: invisible characters become spaces, runs of white space one space,
    trimmed, then the one limit."""
    kept = "".join(" " if unicodedata.category(char) in INVISIBLE_CATEGORIES else char for char in text)
    return re.sub(r"\s+", " ", kept).strip()[:FREE_TEXT_LIMIT]


def renewal_waiting(record: t.Mapping[str, t.Any] | None) -> bool:
    """An authorized session with a renewal waiting for the client (its grant holds meanwhile)."""
    return record is not None and record["state"] == "authorized" and record.get("renewal_requested_at") is not None


def consent_deadline(record: t.Mapping[str, t.Any]) -> datetime.datetime:
    """A first request waits confirmation_timeout_seconds from requested_at; a renewal as long from when it was
    asked, but never past the expires_at of the authorization it would extend."""
    timeout = datetime.timedelta(seconds=int(record["confirmation_timeout_seconds"]))
    if record["state"] == "authorized":
        asked = parse_stamp(record["renewal_requested_at"])
        expires_at = parse_stamp(record["expires_at"])
        assert asked is not None and expires_at is not None  # checked with the input
        return min(asked + timeout, expires_at)
    requested_at = parse_stamp(record["requested_at"])
    assert requested_at is not None  # checked with the input
    return requested_at + timeout


# Audit events: each device-side script's contract names the events it writes ("audit_events"), the layout their ids --
def audit_events(script_name: str) -> dict[str, int]:
    from .powershell import _read_text, device_scripts_dir

    directory = device_scripts_dir()
    text = _read_text(directory / f"{script_name}.contract.json") if directory else None
    if text is None:
        raise DeviceScriptError(f"the lab cannot find {script_name}.contract.json")
    return {what: layout.event_id(name) for what, name in json.loads(text).get("audit_events", {}).items()}


def audit_message(record: dict[str, t.Any], what: str, who: str, when: str) -> str:
    """Who, what, when and the session id, in the controller's wording (support_session.audit_entry)."""
    return (f"Support session {record['id']}: {what.replace('_', ' ')} by {who} at {when}. "
            f"Requested by {record['requested_by']}. Reason: {record['reason'] or '(none given)'}")


# An event's message holds at most 31,839 characters: the scripts cut longer ones (a long reason) here.
EVENT_MESSAGE_LIMIT = 31000


def limit_event_message(message: str) -> str:
    return message[:EVENT_MESSAGE_LIMIT]


def audit(device: Device, event_id: int, entry_type: str, message: str) -> None:
    device.write_event(EVENT_SOURCE, event_id, entry_type, limit_event_message(message))


def current_account(io: t.Any) -> str:
    """[WindowsIdentity]::GetCurrent().Name: a scheduled task's principal, or the WinRM caller a WinRS command runs
    as (DOMAIN\\user; a local account's domain is the computer's name, as in its USERDOMAIN)."""
    identity = getattr(io, "identity", None)
    if identity is not None:
        return identity.user
    environment = getattr(io, "environment", None) or {}
    return f"{environment.get('USERDOMAIN', '')}\\{environment.get('USERNAME', '')}"


# The record and the policy -----------------------------------------------------------------------------------------------
def _as_int(value: t.Any, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        # What PowerShell's [int] cast says about a value that is not a number.
        raise DeviceScriptError(f'Cannot convert value "{value}" to type "System.Int32". Error: "Input string was '
                                f'not in a correct format." ({what})') from None


def read_record(device: Device) -> dict[str, t.Any] | None:
    registry = device.registry
    if registry.get(SESSION_KEY, "Id") is None:
        return None
    record: dict[str, t.Any] = {}
    for field, value_name, kind in RECORD_VALUES:
        raw = registry.get(SESSION_KEY, value_name)
        if raw is None:
            if field not in OPTIONAL_FIELDS:
                raise DeviceScriptError(f"The session record under {SESSION_KEY} has no {value_name} value. Remove "
                                        "the key to start afresh.")
            record[field] = None
        elif kind == "flag":
            record[field] = _as_int(raw, value_name) != 0
        elif kind == "number":
            record[field] = _as_int(raw, value_name)
        else:
            record[field] = str(raw)
    return record


def write_record(device: Device, record: t.Mapping[str, t.Any]) -> None:
    """Every field, every time: a completed write never leaves a mix of two versions."""
    registry = device.registry
    registry.create_key(SESSION_KEY)
    for field, value_name, kind in RECORD_VALUES:
        value = record[field]
        if value is None:
            registry.delete_value(SESSION_KEY, value_name)
        elif kind == "flag":
            registry.set(SESSION_KEY, value_name, int(bool(value)))
        elif kind == "number":
            registry.set(SESSION_KEY, value_name, int(value))
        else:
            registry.set(SESSION_KEY, value_name, str(value))


def restore_record(device: Device, record: dict[str, t.Any] | None) -> None:
    if record is None:
        device.registry.delete_key(SESSION_KEY)
    else:
        write_record(device, record)


def read_policy(device: Device) -> dict[str, t.Any]:
    """The policy, with the defaults for what is absent, not a number, or (for the times) less than one second."""
    policy: dict[str, t.Any] = {**DEFAULT_POLICY, "source": "default"}
    registry = device.registry
    if not registry.key_exists(POLICY_KEY):
        return policy
    policy["source"] = "device"

    def number(name: str) -> int | None:
        try:
            return int(str(registry.get(POLICY_KEY, name)))
        except ValueError:
            return None

    required = number("ConfirmationRequired")
    if required is not None:
        policy["confirmation_required"] = required != 0
    for field, value_name in (("confirmation_timeout_seconds", "ConfirmationTimeoutSeconds"),
                              ("session_ttl_seconds", "SessionTtlSeconds")):
        value = number(value_name)
        if value is not None and value >= 1:
            policy[field] = value
    return policy


# Who is at the console ---------------------------------------------------------------------------------------------------
def interactive_user(device: Device) -> dict[str, t.Any] | None:
    """Win32_ComputerSystem.UserName and the session their shell runs in, as the scripts read them (WMI)."""
    if device.wmi_error:
        raise DeviceScriptError(device.wmi_error)
    user = device.interactive_user
    return None if user is None else {"name": user.name, "session_id": user.session_id}


def user_sid(name: str) -> str:
    """A stable SID for a lab user (a real device reads it from the user's process token)."""
    digest = hashlib.sha256(name.lower().encode("utf-8")).digest()
    parts = [int.from_bytes(digest[i:i + 4], "little") for i in (0, 4, 8)]
    return f"S-1-5-21-{parts[0]}-{parts[1]}-{parts[2]}-{1000 + digest[12]}"


# The task scripts ----------------------------------------------------------------------------------------------------------
def task_script_path(name: str) -> str:
    return f"{SCRIPTS_FOLDER}\\{name}.ps1"


def install_task_scripts(device: Device, texts: t.Mapping[str, str]) -> None:
    """Writes the task scripts where the tasks run them from (UTF-8 with a BOM, as the script writes them)."""
    for name in TASK_SCRIPT_NAMES:
        text = texts[name]
        if not re.search(rf"(?m)^# device-script: {name}\s*$", text):
            raise DeviceScriptError(f"task_scripts.{name} is not the {name} device script (its header does not name "
                                    "it).")
        try:
            path = device.windows_path(task_script_path(name))
        except ValueError:
            raise DeviceScriptError(f"Could not find a part of the path '{task_script_path(name)}'.") from None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))


def assert_task_scripts_installed(device: Device) -> None:
    for name in TASK_SCRIPT_NAMES:
        try:
            present = device.windows_path(task_script_path(name)).is_file()
        except ValueError:
            present = False
        if not present:
            raise DeviceScriptError(f"The task script {name}.ps1 is not installed in {SCRIPTS_FOLDER}; send "
                                    "task_scripts with this request.")


# Scheduled tasks -------------------------------------------------------------------------------------------------------------
def _task_arguments(script_name: str) -> str:
    return (f'-NoProfile -NonInteractive -ExecutionPolicy Bypass -WindowStyle Hidden '
            f'-File "{task_script_path(script_name)}"')


def remove_task(device: Device, name: str) -> None:
    """Stop-ScheduledTask (when running), then Unregister-ScheduledTask."""
    task = device.tasks.get(name)
    if task is not None:
        if task.running:
            device.tasks.stop(name)
        device.tasks.unregister(name)


def arm_expiry(device: Device, expires_at: datetime.datetime) -> None:
    device.tasks.register(ScheduledTask(
        name=EXPIRE_TASK, execute=POWERSHELL, arguments=_task_arguments("expire_session"), user_id="SYSTEM",
        logon_type="ServiceAccount", run_level="Highest", time_triggers=[TimeTrigger(expires_at)],
        multiple_instances="IgnoreNew", start_when_available=True, execution_time_limit_seconds=300))


def withdraw_consent_route(device: Device) -> None:
    remove_task(device, PROMPT_TASK)  # closes a prompt still on the screen
    remove_task(device, APPLY_CONSENT_TASK)
    device.registry.delete_key(CONSENT_KEY)
    device.registry.delete_key(CONSENT_REQUEST_KEY)


def arm_consent_route(device: Device, record: t.Mapping[str, t.Any], user: t.Mapping[str, t.Any],
                      account: str) -> None:
    """`account`: who the script runs as (the account that authenticated over WinRM), shown first by the prompt."""
    withdraw_consent_route(device)  # one request at a time
    deadline = consent_deadline(record)
    renewal = record["state"] == "authorized"
    registry = device.registry
    registry.create_key(CONSENT_REQUEST_KEY)
    registry.set(CONSENT_REQUEST_KEY, "SessionId", str(record["id"]))
    registry.set(CONSENT_REQUEST_KEY, "UserName", user["name"])
    registry.set(CONSENT_REQUEST_KEY, "UserSid", user_sid(user["name"]))
    registry.set(CONSENT_REQUEST_KEY, "Deadline", stamp(deadline))
    registry.set(CONSENT_REQUEST_KEY, "Account", account)
    registry.set(CONSENT_REQUEST_KEY, "RequestedBy",
                 str(record["renewal_requested_by"] if renewal else record["requested_by"]))
    registry.set(CONSENT_REQUEST_KEY, "Reason", str(record["renewal_reason"] if renewal else record["reason"]))
    registry.set(CONSENT_REQUEST_KEY, "Renewal", int(renewal))
    registry.create_key(CONSENT_KEY)  # on Windows with the prompted user's grant (ReadKey, SetValue)

    answered = audit_events("consent_prompt")["consent_answered"]
    device.tasks.register(ScheduledTask(
        name=APPLY_CONSENT_TASK, execute=POWERSHELL, arguments=_task_arguments("apply_consent"), user_id="SYSTEM",
        logon_type="ServiceAccount", run_level="Highest", time_triggers=[TimeTrigger(deadline)],
        event_triggers=[EventTrigger("Application", EVENT_SOURCE, answered)], multiple_instances="Queue",
        start_when_available=True, execution_time_limit_seconds=300))
    seconds_left = (deadline - device.clock.now()).total_seconds()
    device.tasks.register(ScheduledTask(
        name=PROMPT_TASK, execute=POWERSHELL, arguments=_task_arguments("consent_prompt"), user_id=user["name"],
        logon_type="Interactive", run_level="Limited", multiple_instances="IgnoreNew", priority=4,
        execution_time_limit_seconds=max(60.0, seconds_left + 60.0)))
    device.tasks.start(PROMPT_TASK)


def clear_renewal(device: Device) -> None:
    for field, value_name, _kind in RECORD_VALUES:
        if field in RENEWAL_FIELDS:
            device.registry.delete_value(SESSION_KEY, value_name)


def end_activities(device: Device) -> None:
    """Starts the remote-control end task when one is registered (it waits for the lock, so it reads the record
    just written). File transfers check the session before every chunk and need nothing here."""
    if device.tasks.get(END_REMOTE_CONTROL_TASK) is not None:
        device.tasks.start(END_REMOTE_CONTROL_TASK)
