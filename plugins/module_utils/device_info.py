# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Can this device be supported right now, and what is it? The core of the device_info module.

A session can be authorized only when the device is active (the agent checked in recently) and the connection is
valid; otherwise the specialist gets "Unable to connect to the device". The device's own clock decides whether the
check-in is recent; the controller's clock is only compared with it to report skew.
"""

from __future__ import annotations

import datetime
import typing as t

from ansible_collections.remote_support.windows.plugins.module_utils import device_script
from ansible_collections.remote_support.windows.plugins.module_utils.errors import UNABLE_TO_CONNECT, DeviceError

DEFAULT_IDLE_AFTER = 900

ARGUMENT_SPEC: dict[str, dict[str, t.Any]] = {
    "idle_after": {"type": "int", "default": DEFAULT_IDLE_AFTER},
    "require_active": {"type": "bool", "default": False},
}

DEVICE_FIELDS = ("name", "serial_number", "last_activity", "operating_system", "os_version", "model", "device_type")


def parse_utc(text: str | None) -> datetime.datetime | None:
    """A device timestamp (yyyy-MM-ddTHH:mm:ssZ) as an aware UTC datetime; None when absent or unreadable."""
    if not text:
        return None
    try:
        return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return None


def format_utc(moment: datetime.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def empty_record() -> dict[str, t.Any]:
    return {
        "status": "unreachable",
        "connection": {"valid": False, "reason": None, "message": None},
        "device": dict.fromkeys(DEVICE_FIELDS),
        "device_time": None,
        "clock_skew_seconds": None,
        "checkin_age_seconds": None,
    }


def unable_to_connect(why: str) -> str:
    """The seed's words, then why, in the same message: what the operator reads first says what to fix."""
    return f"{UNABLE_TO_CONNECT}: {why[:1].lower() + why[1:] if why.startswith('The ') else why}"


def idle_after_problem(idle_after: t.Any) -> str | None:
    """What is wrong with idle_after, or None. Every module that judges active or idle takes it, checked here."""
    if isinstance(idle_after, bool) or not isinstance(idle_after, int) or idle_after <= 0:
        return f"idle_after is {idle_after!r}; it must be a positive number of seconds (the default is " \
               f"{DEFAULT_IDLE_AFTER})"
    return None


def age_text(seconds: int) -> str:
    """A check-in age as a person says it: 45 s, 12 minutes, 5 hours, 3 days."""
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def unreachable_record(error: DeviceError) -> dict[str, t.Any]:
    record = empty_record()
    record["connection"] = error.as_connection()
    record["msg"] = unable_to_connect(error.message)
    return record


def record_from_facts(facts: t.Mapping[str, t.Any], idle_after: int,
                      controller_now: datetime.datetime) -> dict[str, t.Any]:
    """The device_info record for a device that answered: active or idle, the six facts, the clocks."""
    device_time = parse_utc(facts.get("device_time"))
    last_checkin = parse_utc(facts.get("last_checkin"))
    record = empty_record()
    record["connection"] = {"valid": True, "reason": None, "message": "WinRM connection and device script succeeded"}
    record["device"] = {
        "name": facts.get("computer_name"),
        "serial_number": facts.get("serial_number"),
        "last_activity": format_utc(last_checkin),
        "operating_system": facts.get("os_caption"),
        "os_version": facts.get("os_version"),
        "model": facts.get("model"),
        "device_type": facts.get("device_type"),
    }
    record["device_time"] = format_utc(device_time)
    if device_time is not None:
        record["clock_skew_seconds"] = round((device_time - controller_now).total_seconds())

    reference = device_time or controller_now
    if last_checkin is None:
        record["status"] = "idle"
        record["detail"] = ("The device's support agent has never checked in. Check on the device that the agent is "
                            "installed and its check-in task RemoteSupport-Heartbeat runs (the support_agent module or "
                            "the client_confirmation role installs it).")
        record["msg"] = unable_to_connect(record["detail"])
        return record
    age = round((reference - last_checkin).total_seconds())
    record["checkin_age_seconds"] = age
    if age > idle_after:
        record["status"] = "idle"
        record["detail"] = (f"The device's support agent last checked in {age_text(age)} ago (at "
                            f"{format_utc(last_checkin)} by the device's clock; idle_after is {idle_after} s). Check "
                            "on the device that the agent's check-in task RemoteSupport-Heartbeat runs (the "
                            "support_agent module reinstalls it).")
        record["msg"] = unable_to_connect(record["detail"])
        return record
    record["status"] = "active"
    return record


def probe(client: t.Any, idle_after: int, controller_now: t.Callable[[], datetime.datetime]) -> dict[str, t.Any]:
    """Runs the facts script on one device and returns its record; never raises for a device-side failure."""
    try:
        facts = client.run_script(device_script.load("get_device_facts"))
    except DeviceError as error:
        return unreachable_record(error)
    return record_from_facts(facts, idle_after, controller_now())
