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
from ansible_collections.remote_support.windows.plugins.module_utils.errors import DeviceError

UNABLE_TO_CONNECT = "Unable to connect to the device"
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


def unreachable_record(error: DeviceError) -> dict[str, t.Any]:
    record = empty_record()
    record["connection"] = error.as_connection()
    record["msg"] = UNABLE_TO_CONNECT
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
        record["msg"] = UNABLE_TO_CONNECT
        record["detail"] = ("The support agent on the device has never checked in. Check that the agent (the check-in "
                            "task installed by the client_confirmation role) is installed and running.")
        return record
    age = round((reference - last_checkin).total_seconds())
    record["checkin_age_seconds"] = age
    if age > idle_after:
        record["status"] = "idle"
        record["msg"] = UNABLE_TO_CONNECT
        record["detail"] = (f"The device is idle: its agent last checked in at {format_utc(last_checkin)}, {age} s ago "
                            f"by the device's clock, more than idle_after ({idle_after} s). Check that the agent's "
                            "check-in task is running on the device.")
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
