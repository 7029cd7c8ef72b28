"""Emulation of apply_consent.ps1, version 1: the client's answer or the time-out, applied by compare-and-set."""

from __future__ import annotations

import datetime
import typing as t

from ...device import Device
from .. import session

VERSION = 2


def run(device: Device, script_input: t.Any) -> dict[str, t.Any]:
    events = session.audit_events("apply_consent")
    registry = device.registry
    result = session.change_result(VERSION)
    with device.lock:  # the mutex Global\RemoteSupport.Session
        now = session.stamp_now(device, result)
        record = session.read_record(device)
        pending = (record is not None
                   and (record["state"] == "pending_confirmation" or session.renewal_waiting(record))
                   and registry.key_exists(session.CONSENT_REQUEST_KEY)
                   and registry.get(session.CONSENT_REQUEST_KEY, "SessionId") == record["id"])
        if pending:
            assert record is not None  # pending needs a record
            outcome = _settle(device, record, now, events)
            if outcome is not None:
                result["outcome"] = outcome
        if record is not None:
            result.update(session_id=record["id"], state=record["state"], version=record["version"])
    return result


def _settle(device: Device, record: dict[str, t.Any], now: datetime.datetime, events: dict[str, int]) -> str | None:
    """Applies the answer or the time-out; returns the outcome, or None when there is nothing to settle yet."""
    registry = device.registry
    renewal = session.renewal_waiting(record)
    deadline = session.consent_deadline(record)
    # The name SYSTEM recorded for the request is who answered: only that user may write the Consent key.
    prompted_user = str(registry.get(session.CONSENT_REQUEST_KEY, "UserName"))
    answer = None
    if registry.key_exists(session.CONSENT_KEY) and registry.get(session.CONSENT_KEY, "SessionId") == record["id"]:
        given = str(registry.get(session.CONSENT_KEY, "Answer", "")).lower()
        answered_at = session.parse_stamp(registry.get(session.CONSENT_KEY, "AnsweredAt"))
        if given in ("accept", "deny") and answered_at is not None and answered_at <= deadline:
            answer = given  # an answer after the deadline does not count: the request had timed out
    if renewal and answer is not None:
        # Answered: the renewal's request is now the session's.
        record.update(requested_by=record["renewal_requested_by"], reason=record["renewal_reason"],
                      requested_at=record["renewal_requested_at"])
    if answer == "accept":
        record.update(state="authorized", confirmed_by=prompted_user, authorized_at=session.stamp(now),
                      expires_at=session.stamp(now + datetime.timedelta(seconds=record["ttl_seconds"])))
        who, what = prompted_user, "authorized"
        event_id = events["renewed"] if renewal else events["authorized"]
    elif answer == "deny":
        record.update(state="denied", confirmed_by=prompted_user)
        who, what, event_id = prompted_user, "denied", events["denied"]
    elif now >= deadline:
        if not renewal:
            record.update(state="timed_out")  # a renewal nobody answered leaves the grant to run out
        who, what, event_id = session.TIMER, "timed_out", events["timed_out"]
    else:
        return None  # started early (an unrelated event 1010): nothing to settle yet
    if renewal:
        record.update(dict.fromkeys(session.RENEWAL_FIELDS))
    record.update(version=record["version"] + 1, changed_by=who, changed_at=session.stamp(now))
    session.write_record(device, record)
    if record["state"] == "authorized":
        session.arm_expiry(device, session.required_stamp(record["expires_at"]))
    if record["state"] == "denied":
        # A denied renewal ends the session now, not at the old expires_at (the end task waits for the lock).
        session.end_activities(device)
    # Settled: close a window still open, take back the user's grant on the Consent key.
    session.remove_task(device, session.PROMPT_TASK)
    registry.delete_key(session.CONSENT_KEY)
    registry.delete_key(session.CONSENT_REQUEST_KEY)
    entry_type = "Information" if what == "authorized" else "Warning"
    session.audit(device, event_id, entry_type,
                  session.audit_message(record, ("renewal " if renewal else "") + what, who, record["changed_at"]))
    return f"renewal_{what}" if renewal else what
