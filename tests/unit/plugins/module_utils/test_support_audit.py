# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""support_audit's reading of event texts into sessions (with texts a hostile requester or user could shape), its
options, and the audit report built from its results. The texts are the ones the device scripts and the controller
write; the integration target support_audit reads them back from the lab as the scripts write them."""

from __future__ import annotations

import csv
import io
import json

import jsonschema
import pytest

from ansible_collections.remote_support.windows.plugins.module_utils import audit_report, device_script, support_audit
from ansible_collections.remote_support.windows.plugins.module_utils import support_agent, support_policy
from ansible_collections.remote_support.windows.plugins.module_utils import support_session

SID = "6f1c0d2e-0000-4000-8000-000000000001"
ACCOUNT = "DESKTOP-1\\svc-support"


def event(record_id, event_id, message, at="2026-11-24T10:00:00Z"):
    return {"record_id": record_id, "time_created": at, "event_id": event_id, "level": "Information",
            "message": message}


def transition(what, who, at, requested_by="CONTOSO\\jdoe", reason="INC-4711", account=None):
    text = (f"Support session {SID}: {what.replace('_', ' ')} by {who} at {at}. Requested by {requested_by}. "
            f"Reason: {reason}")
    return text + (f"\r\nAuthenticated account: {account}" if account else "")


def test_the_session_ids_are_the_controllers():
    assert support_audit.SESSION_EVENTS == {i: w for w, i in support_session.AUDIT_EVENT_IDS.items()}


def test_the_other_ids_are_the_writers():
    """The ids the reader knows are the ones each device script declares in its contract, and the modules write."""
    def declared(name):
        return {what: device_script.event_id(event)
                for what, event in device_script.load(name).contract["audit_events"].items()}

    assert declared("consent_prompt") == {"consent_answered": support_audit.CONSENT_ANSWERED}
    assert declared("start_remote_control") == {"started": support_audit.REMOTE_CONTROL_GRANTED}
    assert declared("stop_remote_control") == {"stopped": support_audit.REMOTE_CONTROL_STOPPED,
                                               "ended_by_device": support_audit.REMOTE_CONTROL_ENDED_BY_DEVICE}
    for name in ("file_transfer_send", "file_transfer_receive"):
        assert declared(name) == {what: i for i, what in support_audit.TRANSFER_EVENTS.items()}
    assert support_policy.POLICY_CHANGED_EVENT_ID == support_audit.POLICY_CHANGED
    assert support_agent.AGENT_CHANGED_EVENT_ID == support_audit.AGENT_CHANGED


def test_a_confirmed_session_with_a_transfer_and_remote_control():
    events = [
        event(1, 1000, transition("requested", "CONTOSO\\jdoe", "2026-11-24T10:00:00Z", account=ACCOUNT)),
        event(2, 1010, f"Support session {SID}: consent answered (accept) by CONTOSO\\ana at 2026-11-24T10:00:05Z. "
                       "Requested by CONTOSO\\jdoe. Reason: INC-4711"),
        event(3, 1001, transition("authorized", "CONTOSO\\ana", "2026-11-24T10:00:05Z")),
        event(4, 1030, f"Support session {SID}: file transfer to DESKTOP-1: ctl:/tmp/a -> b.txt -> "
                       f"C:\\Users\\Public\\b.txt, 3 bytes, SHA-256 {'AB' * 32}. Successfully sent. "
                       "Requested by CONTOSO\\jdoe.", "2026-11-24T10:01:00Z"),
        event(5, 1032, f"Support session {SID}: file transfer from DESKTOP-1: C:\\Users\\Public\\big.iso -> "
                       "ctl:/tmp/big.iso: Sending failed after 100 of 900 bytes: The disk is full. Requested by x.",
              "2026-11-24T10:02:00Z"),
        event(6, 1020, f"Support session {SID}: remote control (view) of the session of CONTOSO\\ana (session 2) "
                       "granted to CONTOSO\\jdoe by CONTOSO\\jdoe at 2026-11-24T10:03:00Z until 2026-11-24T11:00:05Z; "
                       "the user is not asked."),
        event(7, 1022, f"Support session {SID}: remote control (view) of the session of CONTOSO\\ana (session 2) by "
                       "CONTOSO\\jdoe ended by device at 2026-11-24T11:00:05Z (expired)."),
        event(8, 1004, transition("expired", "timer", "2026-11-24T11:00:05Z")),
    ]
    read = support_audit.sessions_from_events(events)
    assert read["unrecognized"] == [] and read["other_events"] == []
    (session,) = read["sessions"]
    assert session["requested_by"] == "CONTOSO\\jdoe" and session["authenticated_account"] == ACCOUNT
    assert session["consents"] == [{"answer": "accepted", "by": "CONTOSO\\ana", "at": "2026-11-24T10:00:05Z"}]
    assert (session["authorized_at"], session["authorized_by"]) == ("2026-11-24T10:00:05Z", "CONTOSO\\ana")
    assert (session["state"], session["ended_by"], session["ended_at"]) == ("expired", "timer", "2026-11-24T11:00:05Z")
    sent, failed = session["transfers"]
    # The controller's path may hold " -> "; a device path cannot hold '>'.
    assert (sent["controller_path"], sent["device_path"]) == ("ctl:/tmp/a -> b.txt", "C:\\Users\\Public\\b.txt")
    assert sent["sha256"] == "ab" * 32 and sent["result"] == "completed" and sent["size"] == 3
    assert (failed["direction"], failed["result"], failed["bytes_transferred"], failed["size"]) == \
        ("from_device", "failed", 100, 900)
    assert failed["error"] == "The disk is full."
    (grant,) = session["remote_control"]
    assert (grant["mode"], grant["user_prompted"], grant["ended_by"], grant["end_reason"]) == \
        ("view", False, "device", "expired")
    assert session["record_ids"] == [1, 2, 3, 4, 5, 6, 7, 8]


def test_a_reason_cannot_forge_the_authenticated_account():
    forged = "fix it\r\nAuthenticated account: CONTOSO\\ceo"
    events = [event(1, 1000, transition("requested", "x", "2026-11-24T10:00:00Z", reason=forged, account=ACCOUNT))]
    (session,) = support_audit.sessions_from_events(events)["sessions"]
    assert session["authenticated_account"] == ACCOUNT and session["reason"] == forged


def test_texts_the_collection_does_not_write_are_kept_apart():
    events = [
        event(1, 1001, "Support session x: hacked by nobody"),  # a forged or damaged entry
        event(2, 1001, transition("denied", "u", "2026-11-24T10:00:00Z")),  # the text does not match the id
        event(3, 1040, "Support policy changed by CONTOSO\\jdoe: session_ttl_seconds 3600 -> 600"),
        event(4, 1099, "something new"),
        event(5, 1030, "File transfer to D: ctl:/a -> C:\\a, 1 bytes, SHA-256 " + "0" * 64 +
              ". Successfully sent. Requested by x."),  # written before transfers named their session
        event(6, 1021, "Support session (unknown): a grant that was not recorded in full ended by x at "
                       "2026-11-24T10:00:00Z (stopped)."),
    ]
    read = support_audit.sessions_from_events(events)
    assert read["sessions"] == []
    assert [e["record_id"] for e in read["unrecognized"]] == [1, 2]
    assert [e["kind"] for e in read["other_events"]] == ["policy_changed", "unknown_id",
                                                         "remote_control_ended_unrecorded"]
    assert [t["device_path"] for t in read["transfers_without_session"]] == ["C:\\a"]


def test_a_session_that_began_before_the_window():
    ended = transition("deauthorized", "jdoe", "2026-11-24T10:00:00Z", account=ACCOUNT)
    read = support_audit.sessions_from_events([event(9, 1005, ended)])
    (session,) = read["sessions"]
    assert session["began_before_since"] and session["requested_at"] is None
    assert session["requested_by"] == "CONTOSO\\jdoe" and session["state"] == "deauthorized"


def answer(events, oldest_record_id=1, oldest="2026-11-20T00:00:00Z", truncated=False):
    result = {
        "script_version": 1, "device_time": "2026-11-24T12:00:00Z", "computer_name": "DESKTOP-1",
        "since": "2026-11-17T12:00:00Z", "truncated": truncated, "events": events,
        "log": {"name": "Application", "log_mode": "Circular", "maximum_size_bytes": 65536, "file_size_bytes": 6000,
                "record_count": 5, "oldest_record_id": oldest_record_id, "oldest_time_created": oldest},
    }
    jsonschema.validate(result, device_script.load("read_audit_events").contract["output"])
    return result


@pytest.mark.parametrize("oldest_record_id, oldest, wrapped", [
    (1, "2026-11-20T00:00:00Z", False),   # a log that began after since lost nothing
    (1, "2026-11-10T00:00:00Z", False),
    (4711, "2026-11-10T00:00:00Z", False),  # overwritten, but only before since
    (4711, "2026-11-20T00:00:00Z", True),
])
def test_a_wrapped_log_is_said(oldest_record_id, oldest, wrapped):
    result = support_audit.result_from_answer(answer([], oldest_record_id, oldest))
    assert result["log_wrapped"] is wrapped
    assert ("wrapped" in result["msg"]) is wrapped


def test_options():
    assert support_audit.parse_last("7d") == 604800 and support_audit.parse_last("90m") == 5400
    assert support_audit.parse_since("2026-11-24") == "2026-11-24T00:00:00Z"
    assert support_audit.parse_since("2026-11-24T10:00:00+02:00") == "2026-11-24T08:00:00Z"
    for bad in ("0d", "a week", "-1h", ""):
        with pytest.raises(support_audit.AuditError, match="last must be"):
            support_audit.parse_last(bad)
    with pytest.raises(support_audit.AuditError, match="since must be"):
        support_audit.parse_since("yesterday")
    with pytest.raises(support_audit.AuditError, match="mutually exclusive"):
        support_audit.script_input({"since": "2026-11-24", "last": "1d", "max_events": 10})
    request = support_audit.script_input({"since": None, "last": None, "max_events": 10})
    jsonschema.validate(request, device_script.load("read_audit_events").contract["input"])
    assert request == {"max_events": 10, "last_seconds": 604800}


def test_the_report_counts_and_renders_the_same_figures():
    events = [
        event(1, 1000, transition("requested", "CONTOSO\\jdoe", "2026-11-24T10:00:00Z", account=ACCOUNT)),
        event(2, 1002, transition("denied", "CONTOSO\\ana", "2026-11-24T10:00:09Z")),
        event(3, 1001, transition("authorized", "CONTOSO\\jdoe", "2026-11-24T11:00:00Z", account=ACCOUNT)
              .replace(SID, "second")),
        event(4, 1020, "Support session second: remote control (control) of the session of A (session 1) granted to "
                       "B by CONTOSO\\jdoe at 2026-11-24T11:00:00Z until 2026-11-24T12:00:00Z; the user is asked to "
                       "allow each connection."),
    ]
    ok = support_audit.result_from_answer(answer(events))
    report = audit_report.build({"dev1": ok, "dev2": {"failed": True, "connection": {"reason": "refused",
                                                                                     "message": "refused"}}},
                                "2026-11-24T12:00:00Z")
    summary = report["summary"]
    # The grant has no end yet: it counts to its `until`, which is the device's clock here.
    assert (summary["sessions"], summary["denials"], summary["remote_control_seconds"]) == (2, 1, 3600)
    assert summary["per_specialist"]["CONTOSO\\jdoe"]["sessions"] == 2
    assert report["unreachable"] == [{"device": "dev2", "reason": "refused", "message": "refused"}]
    rows = list(csv.DictReader(io.StringIO(audit_report.to_csv(report))))
    assert [r["row"] for r in rows] == ["session", "session"]
    page = audit_report.to_html(report)
    assert 'data-figure="totals:sessions">2<' in page and "<script" not in page
    assert "default-src 'none'" in page
    json.dumps(report)


def test_the_page_escapes_what_devices_wrote():
    hostile = '<img src="http://evil/x">'
    events = [event(1, 1000, transition("requested", hostile, "2026-11-24T10:00:00Z", requested_by=hostile,
                                        reason=hostile))]
    page = audit_report.to_html(audit_report.build({"d": support_audit.result_from_answer(answer(events))}, "now"))
    assert hostile not in page and "&lt;img" in page


def test_csv_cells_never_start_a_formula():
    hostile = '=HYPERLINK("http://evil/","open")'
    events = [event(1, 1000, transition("requested", "x", "2026-11-24T10:00:00Z", requested_by="@jdoe", reason=hostile))]
    text = audit_report.to_csv(audit_report.build({"d": support_audit.result_from_answer(answer(events))}, "now"))
    (row,) = list(csv.DictReader(io.StringIO(text)))
    assert row["reason"] == "'" + hostile and row["requested_by"] == "'@jdoe"
