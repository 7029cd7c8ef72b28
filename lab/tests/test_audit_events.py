"""The device's event log as Windows keeps it (record ids, times, a maximum size, the oldest overwritten) and
read_audit_events.ps1 through real WinRM against it, checked against the script's contract."""

from __future__ import annotations

import datetime
import json
import typing as t

import pytest

from lab_fixtures import module_lab, protocol_for, run_checked, run_device_script
from winrm_lab.control import ControlError
from winrm_lab.emulation.powershell import device_scripts_dir
from winrm_lab.event_log import EventLog, EventLogEntry

SCRIPTS = device_scripts_dir()
assert SCRIPTS is not None
SOURCE = "RemoteSupport.Windows"
CONTRACT = json.loads((SCRIPTS / "read_audit_events.contract.json").read_text(encoding="utf-8"))
SCRIPT = (SCRIPTS / "read_audit_events.ps1").read_text(encoding="utf-8")
T0 = datetime.datetime(2026, 11, 24, 8, 0, tzinfo=datetime.timezone.utc)


def entry(message: str, seconds: int = 0, source: str = SOURCE) -> EventLogEntry:
    return EventLogEntry("Application", source, 1000, "Information", message, T0 + datetime.timedelta(seconds=seconds))


# --- the event log alone ------------------------------------------------------------------------------------------------
def test_records_are_numbered_from_one_and_never_renumbered() -> None:
    log = EventLog("Application")
    for index in range(5):
        assert log.write(entry(f"event {index}", index))
    assert [each.record_id for each in log.records] == [1, 2, 3, 4, 5]
    assert log.information()["oldest_record_id"] == 1
    assert log.information()["record_count"] == 5


def test_a_full_circular_log_overwrites_its_oldest_events() -> None:
    log = EventLog("Application", maximum_size_bytes=64 * 1024)
    one = entry("x" * 1000).size_bytes
    for index in range(200):
        log.write(entry("x" * 1000, index))
    kept = log.information()
    assert kept["file_size_bytes"] <= 64 * 1024
    assert kept["record_count"] == (64 * 1024) // one
    # The newest are kept, the ids go on where they were.
    assert log.records[-1].record_id == 200
    assert kept["oldest_record_id"] == 200 - kept["record_count"] + 1
    assert kept["oldest_time_created"] == T0 + datetime.timedelta(seconds=200 - kept["record_count"])


def test_a_full_log_set_to_retain_refuses_new_events() -> None:
    log = EventLog("Application", maximum_size_bytes=64 * 1024, log_mode="Retain")
    written = [log.write(entry("x" * 1000, index)) for index in range(200)]
    assert written.count(True) == len(log.records) and written[-1] is False
    assert log.records[0].record_id == 1


def test_clearing_starts_the_numbering_again() -> None:
    log = EventLog("Application")
    log.write(entry("a"))
    log.clear()
    log.write(entry("b"))
    assert [(each.record_id, each.message) for each in log.records] == [(1, "b")]


# --- read_audit_events through WinRM ---------------------------------------------------------------------------------
lab = module_lab("audit", devices=3, seed=5, slot=91)


def read(lab: t.Any, device: dict[str, t.Any], script_input: dict[str, t.Any]) -> dict[str, t.Any]:
    return run_checked(protocol_for(device, lab.manifest["ca_file"]), "read_audit_events", script_input)


def test_reads_only_the_audit_source_since_a_time_oldest_first(lab: t.Any) -> None:
    device = lab.devices[0]
    name = device["name"]
    lab.control.write_events(name, SOURCE, 1040, "before")
    lab.control.write_events(name, "Some.Other.Application", 1000, "not ours")
    lab.control.advance_clock(name, 3600)
    since = lab.control.advance_clock(name, 0)["device_time"]
    lab.control.write_events(name, SOURCE, 1001, "first", entry_type="Information")
    lab.control.write_events(name, SOURCE, 1002, "second", entry_type="Warning")
    lab.control.write_events(name, SOURCE, 1032, "third", entry_type="Error")
    answer = read(lab, device, {"since": since, "max_events": 100})
    assert answer["computer_name"] == name and answer["since"] == since
    assert [(e["event_id"], e["level"], e["message"]) for e in answer["events"]] == [
        (1001, "Information", "first"), (1002, "Warning", "second"), (1032, "Error", "third")]
    ids = [e["record_id"] for e in answer["events"]]
    assert ids == sorted(ids)
    # The control surface's view of the same log: the same record ids and times.
    stored = {e["record_id"]: e for e in lab.control.events(name, log="Application")}
    for event in answer["events"]:
        assert stored[event["record_id"]]["time_generated"] == event["time_created"]
        assert stored[event["record_id"]]["message"] == event["message"]
    # last_seconds counts back from the device's clock, not the controller's.
    assert [e["message"] for e in read(lab, device, {"last_seconds": 600, "max_events": 100})["events"]] == [
        "first", "second", "third"]
    assert not answer["truncated"]
    assert answer["log"]["oldest_record_id"] == 1 and answer["log"]["log_mode"] == "Circular"


def test_more_than_max_events_is_said(lab: t.Any) -> None:
    device = lab.devices[1]
    lab.control.write_events(device["name"], SOURCE, 1030, "transfer", count=5)
    answer = read(lab, device, {"last_seconds": 3600, "max_events": 3})
    assert len(answer["events"]) == 3 and answer["truncated"]


def test_a_flooded_log_shows_it_wrapped(lab: t.Any) -> None:
    """Any local user may write to the Application log: a flood overwrites the audit trail, and the log says so."""
    device = lab.devices[2]
    name = device["name"]
    lab.control.set_event_log(name, maximum_size_bytes=64 * 1024)
    since = lab.control.advance_clock(name, 0)["device_time"]
    lab.control.write_events(name, SOURCE, 1001, "the session that gets overwritten")
    lab.control.advance_clock(name, 60)
    lab.control.write_events(name, "Flood", 1, "y" * 500, count=200)
    answer = read(lab, device, {"since": since, "max_events": 100})
    assert answer["events"] == []
    assert answer["log"]["oldest_record_id"] > 1
    assert answer["log"]["oldest_time_created"] > since
    assert answer["log"]["maximum_size_bytes"] == 64 * 1024


def test_bad_input_is_refused(lab: t.Any) -> None:
    with pytest.raises(ControlError):
        lab.control.set_event_log(lab.devices[0]["name"], maximum_size_bytes=100)
    outcome = run_device_script(protocol_for(lab.devices[0], lab.manifest["ca_file"]), SCRIPT,
                                {"since": "yesterday", "max_events": 5})
    assert outcome.exit_code == 1
