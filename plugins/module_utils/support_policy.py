# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The device-side support policy: where it is kept, what each value means, its defaults and bounds, and the core of
the support_policy module (read, compare, write only what differs). Plain Python: the device shell is passed in.

This module is the one place that names the policy's registry values. Every reader (support_session's
get_support_session.ps1, remote_control, file_transfer) follows the rules below; docs/support-policy.md says the
same for people.

    HKLM:\\SOFTWARE\\RemoteSupport\\Policy
        ConfirmationRequired         REG_DWORD    1 / 0
        ConfirmationTimeoutSeconds   REG_DWORD    seconds the client has to answer a prompt
        SessionTtlSeconds            REG_DWORD    seconds an authorization lasts
        RemoteControlMode            REG_SZ       control | view | none
        FileTransferAllowedRoots     REG_MULTI_SZ absolute folders transfers may read from and write to
        FileTransferMaxSizeBytes     REG_QWORD    largest file a transfer may move
        ChangedBy, ChangedAt         REG_SZ       who last changed the policy through this module, and when
    HKLM:\\SOFTWARE\\Policies\\Microsoft\\Windows NT\\Terminal Services
        Shadow                       REG_DWORD    the RDP shadow rule that matches mode and confirmation
"""

from __future__ import annotations

import dataclasses
import re
import typing as t

from ansible_collections.remote_support.windows.plugins.module_utils import device_info, device_script
from ansible_collections.remote_support.windows.plugins.module_utils.errors import DeviceError

# --- where the policy lives -------------------------------------------------------------------------------------------
POLICY_KEY = device_script.layout()["registry"]["policy"]
SHADOW_KEY = "HKLM:\\SOFTWARE\\Policies\\Microsoft\\Windows NT\\Terminal Services"
SHADOW_VALUE = "Shadow"

CONFIRMATION_REQUIRED_VALUE = "ConfirmationRequired"
CONFIRMATION_TIMEOUT_VALUE = "ConfirmationTimeoutSeconds"
SESSION_TTL_VALUE = "SessionTtlSeconds"
REMOTE_CONTROL_MODE_VALUE = "RemoteControlMode"
FILE_TRANSFER_ALLOWED_ROOTS_VALUE = "FileTransferAllowedRoots"
FILE_TRANSFER_MAX_SIZE_VALUE = "FileTransferMaxSizeBytes"
CHANGED_BY_VALUE = "ChangedBy"
CHANGED_AT_VALUE = "ChangedAt"

# --- defaults (what every reader assumes where a value is absent or unusable) and bounds (what this module writes) ----
DEFAULT_CONFIRMATION_REQUIRED = True
DEFAULT_CONFIRMATION_TIMEOUT = 300
DEFAULT_SESSION_TTL = 3600
DEFAULT_REMOTE_CONTROL_MODE = "control"
DEFAULT_FILE_TRANSFER_ALLOWED_ROOTS = ("C:\\Users",)
DEFAULT_FILE_TRANSFER_MAX_SIZE = 4 * 1024 ** 3

CONFIRMATION_TIMEOUT_BOUNDS = (10, 3600)  # time to read a prompt; no longer than a grant lasts by default
SESSION_TTL_BOUNDS = (60, 28800)  # one minute to one working day (8 h)
FILE_TRANSFER_MAX_SIZE_BOUNDS = (1, 1024 ** 4)  # 1 byte to 1 TiB
MAX_ALLOWED_ROOTS = 32
MAX_ROOT_LENGTH = 248  # the longest folder path Windows creates without the \\?\ prefix (MAX_PATH minus 8.3 name)

# --- remote control: the modes, what each allows, and the matching RDP shadow rule --------------------------------------
REMOTE_CONTROL_MODES = ("control", "view", "none")
REMOTE_CONTROL_ALLOWED = {"control": ("control", "view"), "view": ("view",), "none": ()}
# HKLM\SOFTWARE\Policies\Microsoft\Windows NT\Terminal Services\Shadow ("Set rules for remote control of Remote
# Desktop Services user sessions"): (mode, confirmation required) -> value.
SHADOW_RULES = {
    ("none", True): 0,
    ("none", False): 0,
    ("control", True): 1,
    ("control", False): 2,
    ("view", True): 3,
    ("view", False): 4,
}
SHADOW_MEANINGS = {
    0: "no remote control allowed",
    1: "full control with the user's permission",
    2: "full control without the user's permission",
    3: "view session with the user's permission",
    4: "view session without the user's permission",
}
WINDOWS_DEFAULT_SHADOW = 1  # what Windows does where the policy value is absent

# Application event log id of a policy change (device_layout.json).
POLICY_CHANGED_EVENT_ID = device_script.event_id("policy_changed")

# Number-kinded values: a DWORD and a QWORD holding the same number read the same to every reader.
NUMBER_KINDS = ("DWord", "QWord")

ARGUMENT_SPEC: dict[str, dict[str, t.Any]] = {
    "state": {"type": "str", "default": "present", "choices": ["present", "query"]},
    "confirmation_required": {"type": "bool"},
    "confirmation_timeout": {"type": "int"},
    "session_ttl": {"type": "int"},
    "remote_control_mode": {"type": "str", "choices": list(REMOTE_CONTROL_MODES)},
    "file_transfer_allowed_roots": {"type": "list", "elements": "str"},
    "file_transfer_max_size": {"type": "int"},
    "manage_shadow_policy": {"type": "bool", "default": True},
    "changed_by": {"type": "str"},
}

# Task option -> (policy field, registry value, kind written).
SETTINGS = (
    ("confirmation_required", "confirmation_required", CONFIRMATION_REQUIRED_VALUE, "DWord"),
    ("confirmation_timeout", "confirmation_timeout_seconds", CONFIRMATION_TIMEOUT_VALUE, "DWord"),
    ("session_ttl", "session_ttl_seconds", SESSION_TTL_VALUE, "DWord"),
    ("remote_control_mode", "remote_control_mode", REMOTE_CONTROL_MODE_VALUE, "String"),
    ("file_transfer_allowed_roots", "file_transfer_allowed_roots", FILE_TRANSFER_ALLOWED_ROOTS_VALUE, "MultiString"),
    ("file_transfer_max_size", "file_transfer_max_size_bytes", FILE_TRANSFER_MAX_SIZE_VALUE, "QWord"),
)


class PolicyError(ValueError):
    """An option the policy cannot take; the message says which and why."""


# --- folders ---------------------------------------------------------------------------------------------------------------
_DRIVE_ABSOLUTE = re.compile(r"^[A-Za-z]:\\")
_UNC = re.compile(r"^\\\\[^\\]+\\[^\\]+")
_FORBIDDEN = re.compile(r'[<>"|?*\x00-\x1f]')


def normalize_root(path: t.Any) -> str:
    """An allowed root as it is stored: an absolute Windows folder (C:\\x or \\\\server\\share\\x), backslashes, drive
    letter upper case, no trailing backslash but on a drive root. Raises PolicyError for anything else."""
    if not isinstance(path, str) or not path.strip():
        raise PolicyError("an allowed root is empty; give an absolute Windows folder such as C:\\Users")
    text = path.strip().replace("/", "\\")
    if _FORBIDDEN.search(text):
        raise PolicyError(f"allowed root {path!r} contains a character Windows does not allow in a path")
    if _DRIVE_ABSOLUTE.match(text):
        text = text[0].upper() + text[1:]
        rest = text[3:]
    elif _UNC.match(text):
        rest = text[2:]
    else:
        raise PolicyError(f"allowed root {path!r} is not an absolute Windows path (C:\\folder or \\\\server\\share)")
    if ":" in rest:
        raise PolicyError(f"allowed root {path!r} has a ':' after the drive (an alternate data stream or a typo)")
    parts = [part for part in rest.split("\\") if part]
    if any(part.strip(" ") in (".", "..") for part in parts) or "\\\\" in rest.rstrip("\\"):
        raise PolicyError(f"allowed root {path!r} must not contain '.', '..' or empty folder names")
    text = text.rstrip("\\")
    if len(text) == 2:  # C:
        text += "\\"
    if len(text) > MAX_ROOT_LENGTH:
        raise PolicyError(f"allowed root {path!r} is longer than {MAX_ROOT_LENGTH} characters")
    return text


def normalize_roots(paths: t.Iterable[t.Any]) -> list[str]:
    """Each root normalized, duplicates (Windows compares paths case-insensitively) left out, order kept."""
    roots: list[str] = []
    seen: set[str] = set()
    for path in paths:
        root = normalize_root(path)
        if root.lower() not in seen:
            seen.add(root.lower())
            roots.append(root)
    if len(roots) > MAX_ALLOWED_ROOTS:
        raise PolicyError(f"at most {MAX_ALLOWED_ROOTS} allowed roots, not {len(roots)}")
    return roots


def validate_options(options: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """The desired settings (only the options given), checked against the bounds; raises PolicyError."""
    desired: dict[str, t.Any] = {}

    def bounded(name: str, bounds: tuple[int, int], unit: str) -> None:
        value = options.get(name)
        if value is None:
            return
        low, high = bounds
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise PolicyError(f"{name} must be {low} to {high} {unit}, not {value!r}")
        desired[name] = value

    if options.get("confirmation_required") is not None:
        desired["confirmation_required"] = bool(options["confirmation_required"])
    bounded("confirmation_timeout", CONFIRMATION_TIMEOUT_BOUNDS, "seconds")
    bounded("session_ttl", SESSION_TTL_BOUNDS, "seconds")
    mode = options.get("remote_control_mode")
    if mode is not None:
        if mode not in REMOTE_CONTROL_MODES:
            raise PolicyError(f"remote_control_mode must be one of {', '.join(REMOTE_CONTROL_MODES)}, not {mode!r}")
        desired["remote_control_mode"] = mode
    if options.get("file_transfer_allowed_roots") is not None:
        desired["file_transfer_allowed_roots"] = normalize_roots(options["file_transfer_allowed_roots"])
    bounded("file_transfer_max_size", FILE_TRANSFER_MAX_SIZE_BOUNDS, "bytes")
    return desired


# --- reading what is stored --------------------------------------------------------------------------------------------------
def _number(value: dict[str, t.Any] | None) -> int | None:
    """A value as a whole number the way the readers take it ([int]::TryParse of its text); None when it is not one."""
    if value is None or value.get("data") is None or value.get("kind") in ("MultiString", "Binary"):
        return None
    text = str(value["data"]).strip()
    if not re.fullmatch(r"[+-]?\d+", text):
        return None
    return int(text)


def _value(values: t.Mapping[str, t.Any], name: str) -> dict[str, t.Any] | None:
    """Registry value names are case-insensitive."""
    for key, value in values.items():
        if key.lower() == name.lower():
            return value
    return None


def effective_policy(stored: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """The policy every reader sees in what get_support_policy answered: stored values where usable, defaults where a
    value is absent, of the wrong kind or out of range (the same rules get_support_session.ps1 applies)."""
    values = stored.get("values") or {}
    policy: dict[str, t.Any] = {
        "confirmation_required": DEFAULT_CONFIRMATION_REQUIRED,
        "confirmation_timeout_seconds": DEFAULT_CONFIRMATION_TIMEOUT,
        "session_ttl_seconds": DEFAULT_SESSION_TTL,
        "remote_control_mode": DEFAULT_REMOTE_CONTROL_MODE,
        "file_transfer_allowed_roots": list(DEFAULT_FILE_TRANSFER_ALLOWED_ROOTS),
        "file_transfer_max_size_bytes": DEFAULT_FILE_TRANSFER_MAX_SIZE,
    }
    required = _number(_value(values, CONFIRMATION_REQUIRED_VALUE))
    if required is not None:
        policy["confirmation_required"] = required != 0
    for field, name in (("confirmation_timeout_seconds", CONFIRMATION_TIMEOUT_VALUE),
                        ("session_ttl_seconds", SESSION_TTL_VALUE),
                        ("file_transfer_max_size_bytes", FILE_TRANSFER_MAX_SIZE_VALUE)):
        number = _number(_value(values, name))
        if number is not None and number >= 1:
            policy[field] = number
    mode = _value(values, REMOTE_CONTROL_MODE_VALUE)
    if mode is not None and mode.get("kind") in ("String", "ExpandString") and \
            str(mode.get("data") or "").strip().lower() in REMOTE_CONTROL_MODES:
        policy["remote_control_mode"] = str(mode["data"]).strip().lower()
    roots = _value(values, FILE_TRANSFER_ALLOWED_ROOTS_VALUE)
    if roots is not None and roots.get("kind") == "MultiString":
        # Present: exactly these (an empty list allows no folder). Entries that are not absolute folders are ignored.
        usable = []
        for root in roots.get("data") or []:
            try:
                usable.append(normalize_root(root))
            except PolicyError:
                continue
        policy["file_transfer_allowed_roots"] = usable
    policy["remote_control_allowed"] = list(REMOTE_CONTROL_ALLOWED[policy["remote_control_mode"]])
    policy["source"] = "device" if stored.get("policy_key_exists") else "default"
    changed_by = _value(values, CHANGED_BY_VALUE)
    changed_at = _value(values, CHANGED_AT_VALUE)
    policy["changed_by"] = None if changed_by is None else changed_by.get("data")
    policy["changed_at"] = None if changed_at is None else changed_at.get("data")
    return policy


def shadow_state(stored: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """The RDP shadow rule as stored (None when absent or not a number) and what Windows does with it."""
    value = stored.get("shadow")
    number = _number(value) if value is not None and value.get("kind") in NUMBER_KINDS else None
    effective = number if number in SHADOW_MEANINGS else WINDOWS_DEFAULT_SHADOW
    return {"value": number, "effective": effective, "meaning": SHADOW_MEANINGS[effective]}


def shadow_for(mode: str, confirmation_required: bool) -> int:
    return SHADOW_RULES[(mode, bool(confirmation_required))]


# --- comparing and planning ------------------------------------------------------------------------------------------------------
def _stored_as(value: dict[str, t.Any] | None, kind: str, data: t.Any) -> bool:
    """Whether the stored value already is `data` of `kind` (any number kind for numbers)."""
    if value is None:
        return False
    if kind in NUMBER_KINDS:
        return value.get("kind") in NUMBER_KINDS and value.get("data") == data
    if kind == "MultiString":
        return value.get("kind") == "MultiString" and list(value.get("data") or []) == list(data)
    return value.get("kind") == kind and value.get("data") == data


@dataclasses.dataclass(frozen=True)
class Plan:
    """What support_policy will write: registry writes, the shadow rule, and the policy before and after."""

    writes: list[dict[str, t.Any]]
    shadow: dict[str, t.Any] | None
    changes: list[str]
    before: dict[str, t.Any]
    after: dict[str, t.Any]

    @property
    def changed(self) -> bool:
        return bool(self.writes) or self.shadow is not None


def _data(field: str, value: t.Any) -> t.Any:
    if field == "confirmation_required":
        return 1 if value else 0
    return value


def plan(stored: t.Mapping[str, t.Any], desired: t.Mapping[str, t.Any], manage_shadow_policy: bool) -> Plan:
    """Compares what is stored with what is wanted. Only values that differ (in data or kind) are written."""
    values = stored.get("values") or {}
    writes: list[dict[str, t.Any]] = []
    changes: list[str] = []
    for option, field, name, kind in SETTINGS:
        if option not in desired:
            continue
        data = _data(option, desired[option])
        if not _stored_as(_value(values, name), kind, data):
            writes.append({"name": name, "kind": kind, "data": data})
            changes.append(field)
    after_values = dict(values)
    for write in writes:
        for key in [k for k in after_values if k.lower() == write["name"].lower()]:
            del after_values[key]
        after_values[write["name"]] = {"kind": write["kind"], "data": write["data"]}
    after_stored = {"policy_key_exists": stored.get("policy_key_exists") or bool(writes), "values": after_values,
                    "shadow": stored.get("shadow")}
    before = effective_policy(stored)
    after = effective_policy(after_stored)
    shadow_write = None
    before_shadow = shadow_state(stored)
    after_shadow = dict(before_shadow)
    if manage_shadow_policy:
        wanted = shadow_for(after["remote_control_mode"], after["confirmation_required"])
        if not _stored_as(stored.get("shadow"), "DWord", wanted):
            shadow_write = {"kind": "DWord", "data": wanted}
            changes.append("shadow")
            after_shadow = shadow_state({"shadow": shadow_write})
    before = _comparable(before, before_shadow)
    after = _comparable(after, after_shadow)
    return Plan(writes, shadow_write, changes, before, after)


def _comparable(policy: dict[str, t.Any], shadow: dict[str, t.Any]) -> dict[str, t.Any]:
    """The policy as the diff shows it: the settings and the shadow rule, without who changed it when."""
    shown = {key: value for key, value in policy.items() if key not in ("changed_by", "changed_at", "source")}
    shown["shadow"] = shadow["value"]
    return shown


def audit_message(changes: list[str], before: dict[str, t.Any], after: dict[str, t.Any], who: str) -> str:
    parts = [f"{field} {before.get(field)!r} -> {after.get(field)!r}" for field in changes]
    return f"Support policy changed by {who}: " + "; ".join(parts)


# --- the task ---------------------------------------------------------------------------------------------------------------------
def result_from(stored: t.Mapping[str, t.Any], *, changed: bool, changes: list[str], msg: str,
                diff: dict[str, t.Any] | None = None, manage_shadow_policy: bool = True) -> dict[str, t.Any]:
    shadow = shadow_state(stored)
    shadow["managed"] = manage_shadow_policy
    result = {
        "changed": changed,
        "changes": changes,
        "policy": effective_policy(stored),
        "shadow_policy": shadow,
        "device_time": stored.get("device_time"),
        "device_status": "reachable",
        "connection": {"valid": True, "reason": None, "message": "WinRM connection and device script succeeded"},
        "msg": msg,
    }
    if diff is not None:
        result["diff"] = diff
    return result


def run(client: t.Any, options: t.Mapping[str, t.Any], *, check_mode: bool, diff: bool) -> dict[str, t.Any]:
    """The support_policy task on one device; never raises for a device-side failure."""
    try:
        desired = validate_options(options) if options.get("state", "present") == "present" else {}
    except PolicyError as error:
        return {"changed": False, "failed": True, "msg": str(error)}
    manage_shadow = bool(options.get("manage_shadow_policy", True))
    try:
        with client.shell() as shell:
            stored = shell.run(device_script.load("get_support_policy"))
            if options.get("state", "present") == "query":
                return result_from(stored, changed=False, changes=[], msg="Read the support policy",
                                   manage_shadow_policy=manage_shadow)
            work = plan(stored, desired, manage_shadow)
            shown = {"before": work.before, "after": work.after} if diff else None
            if not work.changed:
                return result_from(stored, changed=False, changes=[], msg="The support policy is as wanted",
                                   diff=shown, manage_shadow_policy=manage_shadow)
            if check_mode:
                result = result_from(stored, changed=True, changes=work.changes,
                                     msg=f"Would change: {', '.join(work.changes)}", diff=shown,
                                     manage_shadow_policy=manage_shadow)
                return result
            who = options.get("changed_by") or "unknown"
            request = {
                "values": work.writes,
                "shadow": work.shadow,
                "changed_by": who,
                "audit": {"event_id": POLICY_CHANGED_EVENT_ID, "entry_type": "Information",
                          "message": audit_message(work.changes, work.before, work.after, who)},
            }
            written = shell.run(device_script.load("set_support_policy"), request)
            return result_from(written, changed=True, changes=work.changes, msg=f"Changed: {', '.join(work.changes)}",
                               diff=shown, manage_shadow_policy=manage_shadow)
    except DeviceError as error:
        return failure(error)


def failure(error: DeviceError) -> dict[str, t.Any]:
    """The result for a device that could not be read or written: unreachable, or a script that failed on it."""
    record = device_info.unreachable_record(error)
    msg = record["msg"] if error.reason != "script" else error.message
    return {"changed": False, "failed": True, "device_status": "unreachable", "connection": record["connection"],
            "msg": msg}
