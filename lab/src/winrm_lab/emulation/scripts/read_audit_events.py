"""Emulation of read_audit_events.ps1, version 1: the Application log's RemoteSupport.Windows events since a time,
answered from the device's event log (event_log.py: record ids, times, a maximum size, the oldest overwritten)."""

from __future__ import annotations

import datetime
import typing as t

from ...device import Device
from .. import session
from . import DeviceScriptError

VERSION = 1

LOG_NAME = "Application"
LEVELS = {"Error": "Error", "Warning": "Warning"}  # classic entry types; anything else reads as Information


def run(device: Device, script_input: dict[str, t.Any]) -> dict[str, t.Any]:
    with device.lock:
        now = device.clock.now()
        if script_input.get("since") is not None:
            since = session.parse_stamp(script_input["since"])
            if since is None:
                raise DeviceScriptError(f"since '{script_input['since']}' is not a YYYY-MM-DDTHH:MM:SSZ timestamp.")
        else:
            since = now - datetime.timedelta(seconds=script_input["last_seconds"])
        since = since.replace(microsecond=0)
        with device.event_log.lock:
            log = device.event_log.log(LOG_NAME)
            information = log.information()
            # Get-WinEvent -FilterHashtable @{LogName; ProviderName; StartTime}: TimeCreated >= StartTime.
            matching = [entry for entry in log.records
                        if entry.source.lower() == session.EVENT_SOURCE.lower() and entry.time_generated >= since]
    limit = script_input["max_events"]
    oldest = information["oldest_time_created"]
    return {
        "script_version": VERSION,
        "device_time": session.stamp(now),
        "computer_name": device.name,
        "since": session.stamp(since),
        "log": {
            "name": LOG_NAME,
            "log_mode": information["log_mode"],
            "maximum_size_bytes": information["maximum_size_bytes"],
            "file_size_bytes": information["file_size_bytes"],
            "record_count": information["record_count"],
            "oldest_record_id": information["oldest_record_id"],
            "oldest_time_created": None if oldest is None else session.stamp(oldest),
        },
        "events": [
            {"record_id": entry.record_id, "time_created": session.stamp(entry.time_generated),
             "event_id": entry.event_id, "level": LEVELS.get(entry.entry_type, "Information"),
             "message": entry.message}
            for entry in matching[:limit]
        ],
        "truncated": len(matching) > limit,
    }
