# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The core of the support_audit module: read the device's audit events (read_audit_events) and turn them into
sessions. Plain Python: the device shell is passed in.

The events are the ones the device scripts and the controller already write (docs/audit.md lists each id and its
text). They are read back from their text, which is what a real device's log holds, including events written long
before this reader existed. Whatever cannot be placed is returned as such, never dropped: events of no session
(`other_events`), events in the collection's ranges whose text is not one the collection writes (`unrecognized`),
and a log that no longer holds everything since `since` (`log_wrapped`).
"""

from __future__ import annotations

import datetime
import re
import typing as t

from ansible_collections.remote_support.windows.plugins.module_utils import device_script
from ansible_collections.remote_support.windows.plugins.module_utils.device_info import format_utc, unreachable_record
from ansible_collections.remote_support.windows.plugins.module_utils.errors import DeviceError

ARGUMENT_SPEC: dict[str, dict[str, t.Any]] = {
    "since": {"type": "str"},
    "last": {"type": "str"},
    "max_events": {"type": "int", "default": 20000},
}

DEFAULT_LAST = "7d"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_STAMP = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z"

# The ids, by what they record (docs/audit.md). Session transitions carry "what" in their text.
SESSION_EVENTS = {event_id: what for what, event_id in device_script.layout()["events"]["session"].items()}
CONSENT_ANSWERED = device_script.event_id("consent_answered")
REMOTE_CONTROL_GRANTED = device_script.event_id("remote_control.granted")
REMOTE_CONTROL_STOPPED = device_script.event_id("remote_control.stopped")
REMOTE_CONTROL_ENDED_BY_DEVICE = device_script.event_id("remote_control.ended_by_device")
TRANSFER_EVENTS = {event_id: what for what, event_id in device_script.layout()["events"]["transfer"].items()}
POLICY_CHANGED, AGENT_CHANGED = device_script.event_id("policy_changed"), device_script.event_id("agent.changed")
# States a session ends in, and the transition that ends it.
ENDING = {"denied", "timed_out", "expired", "deauthorized", "cancelled"}

_SESSION_RE = re.compile(
    rf"^Support session (?P<session>[^\s:]+): (?P<what>[a-z ]+?) by (?P<who>.*?) at (?P<at>{_STAMP})\. "
    r"Requested by (?P<requested_by>.*?)\. Reason: (?P<reason>.*?)"
    r"(?:\r?\nAuthenticated account: (?P<account>[^\r\n]*))?$", re.DOTALL)
_CONSENT_RE = re.compile(
    rf"^Support session (?P<session>[^\s:]+): consent answered \((?P<answer>[^)]*)\) by (?P<who>.*?) at "
    rf"(?P<at>{_STAMP})\. Requested by ", re.DOTALL)
_GRANT_RE = re.compile(
    r"^Support session (?P<session>[^\s:]+): remote control \((?P<mode>[a-z]+)\) of the session of (?P<user>.*?) "
    r"\(session (?P<interactive_session>\d+)\) granted to (?P<account>.*?) by (?P<by>.*?) at "
    rf"(?P<at>{_STAMP}) until (?P<until>{_STAMP}); (?P<prompt>.*)\.$", re.DOTALL)
_GRANT_END_RE = re.compile(
    r"^Support session (?P<session>[^\s:]+): (?:remote control \((?P<mode>[a-z]+)\) of the session of (?P<user>.*?) "
    r"\(session (?P<interactive_session>\d+)\) by (?P<account>.*?)|a grant that was not recorded in full) ended by "
    rf"(?P<by>.*?) at (?P<at>{_STAMP}) \((?P<reason>[^)]*)\)\.$", re.DOTALL)
# Transfers. A device path cannot hold '>' (Windows forbids it in names), so " -> " splits the two paths even when the
# controller's path holds one. Events written before transfers named their session have no "Support session" part.
_TRANSFER_PREFIX = r"^(?:Support session (?P<session>[^\s:]+): )?[Ff]ile transfer "
_SENT_RE = re.compile(
    _TRANSFER_PREFIX + r"to (?P<computer>[^:]*): (?P<controller_path>.*) -> (?P<device_path>[^>]*?)"
    r"(?:, (?P<size>\d+) bytes, SHA-256 (?P<sha256>[0-9a-fA-F]{64})\. Successfully sent\."
    r"|: Sending failed after (?P<done>\d+) of (?P<total>\d+) bytes: (?P<error>.*)) Requested by (?P<by>.*)\.$",
    re.DOTALL)
_RECEIVED_RE = re.compile(
    _TRANSFER_PREFIX + r"from (?P<computer>[^:]*): (?P<device_path>[^>]*?) -> (?P<controller_path>.*?)"
    r"(?:, (?P<size>\d+) bytes, SHA-256 (?P<sha256>[0-9a-fA-F]{64})\. Successfully received\."
    r"|: Sending failed after (?P<done>\d+) of (?P<total>\d+) bytes: (?P<error>.*)) Requested by (?P<by>.*)\.$",
    re.DOTALL)


class AuditError(Exception):
    """Bad options: the message says what is wrong and what to give instead."""


def parse_last(text: str) -> int:
    """'7d', '24h', '90m', '3600s', '2w' (or a plain number of seconds) -> seconds."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw]?)\s*", str(text).lower())
    if not match or int(match.group(1)) == 0:
        raise AuditError(f"last must be a positive duration such as 7d, 24h, 90m or 3600s, not {text!r}")
    return int(match.group(1)) * _UNITS[match.group(2) or "s"]


def parse_since(text: str) -> str:
    """An ISO 8601 time (a date alone is midnight UTC; no zone is UTC) -> YYYY-MM-DDTHH:MM:SSZ."""
    value = str(text).strip()
    try:
        moment = datetime.datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    except ValueError:
        raise AuditError(f"since must be a time such as 2026-11-24T08:00:00Z or 2026-11-24, not {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return format_utc(moment.astimezone(datetime.timezone.utc).replace(microsecond=0))


def script_input(options: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    if options.get("max_events") is not None and not 1 <= options["max_events"] <= 100000:
        raise AuditError(f"max_events must be 1 to 100000, not {options['max_events']}")
    if options.get("since") and options.get("last"):
        raise AuditError("since and last are mutually exclusive: give a time (since) or a duration (last)")
    request: dict[str, t.Any] = {"max_events": options.get("max_events") or 20000}
    if options.get("since"):
        request["since"] = parse_since(options["since"])
    else:
        request["last_seconds"] = parse_last(options.get("last") or DEFAULT_LAST)
    return request


# --- from events to sessions ----------------------------------------------------------------------------------------
def _new_session(session_id: str) -> dict[str, t.Any]:
    return {
        "id": session_id, "requested_by": None, "authenticated_account": None, "reason": None, "requested_at": None,
        "began_before_since": True, "consents": [], "authorized_at": None, "authorized_by": None, "renewals": [],
        "state": None, "ended_at": None, "ended_by": None, "transfers": [], "remote_control": [], "record_ids": [],
    }


def _event_ref(event: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    return {"record_id": event["record_id"], "time_created": event["time_created"], "event_id": event["event_id"]}


class _Reader:
    def __init__(self) -> None:
        self.sessions: dict[str, dict[str, t.Any]] = {}
        self.other: list[dict[str, t.Any]] = []
        self.unrecognized: list[dict[str, t.Any]] = []
        self.transfers_without_session: list[dict[str, t.Any]] = []

    def session(self, session_id: str, event: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
        if session_id not in self.sessions:
            self.sessions[session_id] = _new_session(session_id)
        found = self.sessions[session_id]
        found["record_ids"].append(event["record_id"])
        return found

    def read(self, event: t.Mapping[str, t.Any]) -> None:
        event_id, text = event["event_id"], event["message"]
        if event_id in SESSION_EVENTS:
            match = _SESSION_RE.match(text)
            if match and match.group("what").replace(" ", "_") == SESSION_EVENTS[event_id]:
                return self.transition(event, match)
        elif event_id == CONSENT_ANSWERED:
            match = _CONSENT_RE.match(text)
            if match:
                return self.consent_report(event, match)
        elif event_id == REMOTE_CONTROL_GRANTED:
            match = _GRANT_RE.match(text)
            if match:
                return self.grant(event, match)
        elif event_id in (REMOTE_CONTROL_STOPPED, REMOTE_CONTROL_ENDED_BY_DEVICE):
            match = _GRANT_END_RE.match(text)
            if match:
                return self.grant_end(event, match)
        elif event_id in TRANSFER_EVENTS:
            match = _SENT_RE.match(text) or _RECEIVED_RE.match(text)
            if match:
                return self.transfer(event, match)
        elif event_id in (POLICY_CHANGED, AGENT_CHANGED):
            self.other.append({**event, "kind": "policy_changed" if event_id == POLICY_CHANGED else "agent_changed"})
            return None
        else:
            self.other.append({**event, "kind": "unknown_id"})
            return None
        self.unrecognized.append(dict(event))
        return None

    def transition(self, event: t.Mapping[str, t.Any], match: re.Match[str]) -> None:
        what = SESSION_EVENTS[event["event_id"]]
        found = self.session(match.group("session"), event)
        who, at = match.group("who"), match.group("at")
        pending = found["state"] == "pending_confirmation"
        if what in ("requested", "authorized") and found["state"] in (None, "pending_confirmation") \
                and found["requested_at"] is None:
            found.update(requested_by=match.group("requested_by"), reason=match.group("reason"), requested_at=at,
                         began_before_since=False)
        if found["requested_by"] is None:  # a session that began before `since`: its later events say who asked
            found.update(requested_by=match.group("requested_by"), reason=match.group("reason"))
        if match.group("account") and found["authenticated_account"] is None:
            found["authenticated_account"] = match.group("account")
        if what == "requested":
            found["state"] = "pending_confirmation"
        elif what == "authorized":
            if pending:  # the client accepted the request
                found["consents"].append({"answer": "accepted", "by": who, "at": at})
            if found["authorized_at"] is None:
                found.update(authorized_at=at, authorized_by=who)
            else:  # a renewal the client accepted
                found["renewals"].append({"at": at, "by": who})
            found["state"] = "authorized"
        elif what == "renewed":
            found["renewals"].append({"at": at, "by": who})
            found["state"] = "authorized"
        else:
            if what in ("denied", "timed_out"):
                found["consents"].append({"answer": what if what == "timed_out" else "denied", "by": who, "at": at})
            found.update(state=what, ended_at=at, ended_by=who)

    def consent_report(self, event: t.Mapping[str, t.Any], match: re.Match[str]) -> None:
        # The user's own report of the answer (1010); what counts is the transition the device applied after it.
        self.session(match.group("session"), event)

    def grant(self, event: t.Mapping[str, t.Any], match: re.Match[str]) -> None:
        found = self.session(match.group("session"), event)
        for grant in found["remote_control"]:
            if grant["ended_at"] is None and grant["account"] == match.group("account"):
                grant["changes"].append({"at": match.group("at"), "mode": match.group("mode"),
                                         "until": match.group("until")})
                grant.update(mode=match.group("mode"), until=match.group("until"))
                return
        found["remote_control"].append({
            "account": match.group("account"), "mode": match.group("mode"), "user": match.group("user"),
            "interactive_session_id": int(match.group("interactive_session")), "granted_by": match.group("by"),
            "started_at": match.group("at"), "until": match.group("until"), "user_prompted": "asked" in
            match.group("prompt") and "not asked" not in match.group("prompt"), "changes": [], "ended_at": None,
            "ended_by": None, "end_reason": None, "record_id": event["record_id"],
        })

    def grant_end(self, event: t.Mapping[str, t.Any], match: re.Match[str]) -> None:
        session_id = match.group("session")
        if session_id == "(unknown)":
            self.other.append({**event, "kind": "remote_control_ended_unrecorded"})
            return
        found = self.session(session_id, event)
        for grant in found["remote_control"]:
            if grant["ended_at"] is None and grant["account"] == match.group("account"):
                break
        else:  # granted before `since`
            grant = {"account": match.group("account"), "mode": match.group("mode"), "user": match.group("user"),
                     "interactive_session_id": int(match.group("interactive_session")), "granted_by": None,
                     "started_at": None, "until": None, "user_prompted": None, "changes": [], "record_id": None}
            found["remote_control"].append(grant)
        grant.update(ended_at=match.group("at"), ended_by=match.group("by"), end_reason=match.group("reason"))

    def transfer(self, event: t.Mapping[str, t.Any], match: re.Match[str]) -> None:
        result = TRANSFER_EVENTS[event["event_id"]]
        sent = match.re is _SENT_RE
        completed = match.group("sha256") is not None
        record = {
            "direction": "to_device" if sent else "from_device",
            "device_path": match.group("device_path"), "controller_path": match.group("controller_path"),
            "size": int(match.group("size") if completed else match.group("total")),
            "sha256": match.group("sha256").lower() if completed else None,
            "result": result,
            "bytes_transferred": int(match.group("size") if completed else match.group("done")),
            "error": None if completed else match.group("error").strip(),
            "requested_by": match.group("by"), "at": event["time_created"], "record_id": event["record_id"],
        }
        if match.group("session") is None:
            self.transfers_without_session.append(record)
        else:
            self.session(match.group("session"), event)["transfers"].append(record)


def sessions_from_events(events: t.Iterable[t.Mapping[str, t.Any]]) -> dict[str, t.Any]:
    """The events (oldest first) as sessions, with what could not be placed kept apart."""
    reader = _Reader()
    for event in sorted(events, key=lambda each: each["record_id"]):
        reader.read(event)
    return {
        "sessions": list(reader.sessions.values()),
        "transfers_without_session": reader.transfers_without_session,
        "other_events": reader.other,
        "unrecognized": reader.unrecognized,
    }


def log_wrapped(answer: t.Mapping[str, t.Any]) -> bool:
    """The log lost events written since `since`: its oldest record is newer than `since` and is not the first
    record the log ever held (record ids start at 1; a log that simply began after `since` lost nothing)."""
    log = answer["log"]
    oldest = log["oldest_time_created"]
    return oldest is not None and oldest > answer["since"] and (log["oldest_record_id"] or 1) > 1


def run(client: t.Any, options: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """The support_audit task on one device; never raises for a device-side failure."""
    try:
        request = script_input(options)
    except AuditError as error:
        return {"failed": True, "msg": str(error)}
    try:
        with client.shell() as shell:
            answer = shell.run(device_script.load("read_audit_events"), request)
    except DeviceError as error:
        # The same words as every module for a device that cannot be reached; a script failure says what it said.
        msg = unreachable_record(error)["msg"] if error.reason != "script" else \
            f"The audit events could not be read: {error.message}"
        return {"failed": True, "connection": error.as_connection(), "msg": msg}
    return result_from_answer(answer)


def result_from_answer(answer: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    read = sessions_from_events(answer["events"])
    wrapped = log_wrapped(answer)
    log = dict(answer["log"])
    notes = []
    if wrapped:
        notes.append(f"The Application log wrapped: its oldest event is from {log['oldest_time_created']}, after "
                     f"{answer['since']}; events in between were overwritten ({log['log_mode']} log, maximum "
                     f"{log['maximum_size_bytes']} bytes). Forward the events (docs/audit.md) or raise the log's "
                     "maximum size.")
    if answer["truncated"]:
        last = answer["events"][-1]["time_created"] if answer["events"] else answer["since"]
        notes.append(f"More than {len(answer['events'])} events matched; read again with since={last} for the rest.")
    return {
        "changed": False,
        "computer_name": answer["computer_name"],
        "device_time": answer["device_time"],
        "since": answer["since"],
        "log": log,
        "log_wrapped": wrapped,
        "truncated": answer["truncated"],
        "event_count": len(answer["events"]),
        **read,
        "events": list(answer["events"]),
        "msg": " ".join(notes) or f"{len(read['sessions'])} sessions since {answer['since']}",
    }
