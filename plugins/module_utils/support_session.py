# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The core of the support_session module: read the session on the device, let the state machine decide, write by
compare-and-set, and wait for the client. Plain Python: the clocks and the device shell are passed in.

Everything runs in one WinRM shell: the session gate's read (the device's facts: is it active?, and the session), at
most one write, and the wait for the client's answer (which runs on the device, a minute at most per command) each
take one command.
"""

from __future__ import annotations

import datetime
import math
import typing as t

from ansible_collections.remote_support.windows.plugins.module_utils import device_info, device_script, session_gate
from ansible_collections.remote_support.windows.plugins.module_utils import session_state as sm
from ansible_collections.remote_support.windows.plugins.module_utils.device_info import format_utc
from ansible_collections.remote_support.windows.plugins.module_utils.errors import DeviceError
from ansible_collections.remote_support.windows.plugins.module_utils.session_gate import (
    DeviceView,
    SessionError,
    read_view,
    view_of,
)

ARGUMENT_SPEC: dict[str, dict[str, t.Any]] = {
    "state": {"type": "str", "required": True, "choices": ["authorized", "deauthorized", "query"]},
    "reason": {"type": "str"},
    "requested_by": {"type": "str"},
    "wait": {"type": "bool", "default": True},
    "wait_timeout": {"type": "int", "default": 300},
    "renew_before": {"type": "int", "default": sm.DEFAULT_RENEW_BEFORE_SECONDS},
    "poll_interval": {"type": "int", "default": 1},
    "idle_after": {"type": "int", "default": device_info.DEFAULT_IDLE_AFTER},
}
REQUIRED_IF = [("state", "authorized", ("reason",))]

# The longest one command waits on the device for the client's answer; a longer wait takes several such commands, so
# that the controller reads the session at least once a minute, as its polls did.
MAX_DEVICE_WAIT = 60

# Application event log ids of the audit trail, by transition (device_layout.json). The device-side tasks write the
# client's answer (authorized/denied), time-outs and expiry with the same ids.
AUDIT_EVENT_IDS: dict[str, int] = dict(device_script.layout()["events"]["session"])


# Device-side scripts the session's scheduled tasks run (see docs/consent-route.md).
TASK_SCRIPTS = ("consent_prompt", "apply_consent", "expire_session")


def audit_entry(what: str, record: sm.SessionRecord, who: str) -> dict[str, t.Any]:
    """The event-log entry for a transition: who, what, when and the session id."""
    requested_by, reason, told = record.requested_by, record.reason, what.replace("_", " ")
    if record.renewal_pending:
        requested_by, reason, told = record.renewal_requested_by, record.renewal_reason, f"renewal {told}"
    message = (f"Support session {record.id}: {told} by {who} at {format_utc(record.changed_at)}. "
               f"Requested by {requested_by}. Reason: {reason or '(none given)'}")
    entry_type = "Warning" if what in ("denied", "timed_out") else "Information"
    return {"event_id": AUDIT_EVENT_IDS[what], "entry_type": entry_type, "message": message}


def write_record(shell: t.Any, view: DeviceView, record: sm.SessionRecord, what: str, who: str,
                 end_activities: bool = False) -> DeviceView:
    """Compare-and-set of `record` over the version just read; arms or withdraws the device-side tasks."""
    expected_version = 0 if view.record is None else view.record.version
    request = {
        "expected_version": expected_version,
        "session": record.to_dict(),
        "audit": audit_entry(what, record, who),
        # A first request, or a renewal of the authorized session: both ask the person at the device.
        "consent_prompt": record.state == "pending_confirmation" or record.renewal_pending,
        "expiry_task": record.state == "authorized",
        "end_activities": end_activities,
    }
    if request["consent_prompt"] or request["expiry_task"]:
        # The device's scheduled tasks run these scripts without any controller: ship the versions this
        # collection expects with every arming, so a device never runs stale ones.
        request["task_scripts"] = {name: device_script.load(name).text for name in TASK_SCRIPTS}
    answer = shell.run(device_script.load("set_support_session"), request)
    stored = view_of(answer["device_time"], view.policy, view.interactive_user, answer["session"])
    if answer["refused_reason"] == "version_conflict":
        raise SessionError(str(sm.SessionConflict(expected_version, stored.record)))
    if answer["refused_reason"] == "no_interactive_user":
        raise SessionError(NO_USER_MESSAGE)
    return stored


NO_USER_MESSAGE = ("Nobody is logged on at the device, so nobody can confirm the request while the client-confirmation "
                   "policy is on. Ask the user to log on and try again.")


class SessionTask:
    """One support_session task on one device."""

    def __init__(self, shell: t.Any, options: t.Mapping[str, t.Any], *, check_mode: bool,
                 controller_now: t.Callable[[], datetime.datetime], monotonic: t.Callable[[], float]) -> None:
        self.shell = shell
        self.options = options
        self.check_mode = check_mode
        self.controller_now = controller_now
        self.monotonic = monotonic
        self.who = options["requested_by"]

    def run(self) -> dict[str, t.Any]:
        state = self.options["state"]
        action = "deauthorize" if state == "deauthorized" else "request_authorization"
        gate = session_gate.open_gate(self.shell, action, self.options["idle_after"], self.controller_now)
        view, status, device_active = gate.view, gate.status, gate.device_active
        if state == "query":
            return self.result(view, device_active, status, changed=False, msg="")
        if state == "deauthorized":
            # Revoking needs a valid connection only, which the device just gave: idle or not, it ends the session.
            return self.deauthorize(view, status, device_active)
        if not device_active:
            return self.result(view, False, status, changed=False, msg=gate.message, failed=True,
                               detail=status.get("detail"))
        return self.authorize(view, status)

    # --- state: authorized -------------------------------------------------------------------------------------
    def authorize(self, view: DeviceView, status: dict[str, t.Any]) -> dict[str, t.Any]:
        policy = view.policy
        before = sm.settle(view.record, view.device_time)
        change = sm.renew(view.record, view.device_time, requested_by=self.who, reason=self.options["reason"],
                          confirmation_required=policy["confirmation_required"],
                          ttl_seconds=policy["session_ttl_seconds"],
                          confirmation_timeout_seconds=policy["confirmation_timeout_seconds"],
                          renew_before=self.options["renew_before"])
        changed = change.changed
        if changed:
            new = change.record
            asks_client = new.state == "pending_confirmation" or new.renewal_pending
            if asks_client and view.interactive_user is None:
                raise SessionError(NO_USER_MESSAGE)
            if self.check_mode:
                return self.result(view, True, status, changed=True, msg=f"Would have: {change.message}")
            renewing = sm.effective_state(view.record, view.device_time) == "authorized"
            what = "requested" if asks_client else ("renewed" if renewing else "authorized")
            view = write_record(self.shell, view, new, what, self.who)
        if self.options["wait"] and _waiting(view):
            if self.check_mode:
                return self.result(view, True, status, changed=changed, msg=change.message)
            view = self.wait_for_client(view)
        return self.outcome(view, status, changed, change.message, before)

    def wait_for_client(self, view: DeviceView) -> DeviceView:
        """Waits on the device until the client answers, the confirmation times out, or wait_timeout passes."""
        session_id = view.record.id
        deadline = self.monotonic() + self.options["wait_timeout"]
        while True:
            settled = sm.settle(view.record, view.device_time)
            if settled is None or settled.id != session_id or not _waiting_record(settled):
                if settled is not None and settled.version != view.record.version and _waiting_record(view.record):
                    # The deadline (or the expiry) passed by the device's clock but no device-side task has
                    # recorded it yet: record it, so every controller sees the same state.
                    what = "timed_out" if settled.state in ("timed_out", "authorized") else settled.state
                    view = write_record(self.shell, view, settled, what, sm.TIMER)
                return view
            lapse = settled.renewal_deadline if settled.renewal_pending else settled.confirmation_deadline
            if self.monotonic() >= deadline:
                meanwhile = (f"; the current authorization holds until {format_utc(settled.expires_at)} meanwhile"
                             if settled.renewal_pending else "")
                raise SessionError(
                    f"The client has not answered after {self.options['wait_timeout']} s (wait_timeout). The request "
                    f"stays pending until {format_utc(lapse)} by the device's clock{meanwhile}; run "
                    "again with state=query to see the answer, or deauthorize to cancel it.")
            # One command that waits on the device until the record changes, the device's own deadline passes (a
            # second later, so that the next read settles it), or this task's wait_timeout would: no poll per
            # poll_interval over the network.
            until_lapse = (lapse - view.device_time).total_seconds() + 1 if lapse is not None else MAX_DEVICE_WAIT
            seconds = math.ceil(min(deadline - self.monotonic(), until_lapse, MAX_DEVICE_WAIT))
            view = read_view(self.shell, wait={"session_id": session_id, "version": view.record.version,
                                               "seconds": max(1, seconds),
                                               "every_seconds": min(self.options["poll_interval"], MAX_DEVICE_WAIT)})

    def outcome(self, view: DeviceView, status: dict[str, t.Any], changed: bool, message: str,
                before: sm.SessionRecord | None) -> dict[str, t.Any]:
        state = sm.effective_state(view.record, view.device_time)
        settled = sm.settle(view.record, view.device_time)
        asked_renewal = changed and before is not None and before.state == "authorized" and settled is not None \
            and settled.id == before.id and settled.authorized_at == before.authorized_at
        if state == "authorized" and asked_renewal and not settled.renewal_pending:
            # The renewal was asked and nobody answered in time: the old grant runs on to its own expiry.
            left = sm.remaining_seconds(view.record, view.device_time)
            return self.result(view, True, status, changed=changed, failed=True, msg=(
                f"The client did not answer the renewal in time; the session was not extended and its authorization "
                f"ends at {format_utc(settled.expires_at)} ({left} s left). Request authorization again to extend "
                "it."))
        if state == "authorized" and settled.renewal_pending:  # wait: false
            return self.result(view, True, status, changed=changed, msg=message)
        if state == "authorized":
            left = sm.remaining_seconds(view.record, view.device_time)
            msg = f"Authorized until {format_utc(view.record.expires_at)} ({left} s left)" if changed else message
            return self.result(view, True, status, changed=changed, msg=msg)
        if state == "pending_confirmation":  # wait: false
            return self.result(view, True, status, changed=changed, msg=message)
        refusal = sm.decide("remote_control", view.record, view.device_time, device_active=True).message
        return self.result(view, True, status, changed=changed, msg=refusal, failed=True)

    # --- state: deauthorized -----------------------------------------------------------------------------------
    def deauthorize(self, view: DeviceView, status: dict[str, t.Any], device_active: bool) -> dict[str, t.Any]:
        change = sm.deauthorize(view.record, view.device_time, ended_by=self.who)
        if change.changed and not self.check_mode:
            what = "cancelled" if sm.effective_state(view.record, view.device_time) == "pending_confirmation" \
                else "deauthorized"
            view = write_record(self.shell, view, change.record, what, self.who, end_activities=True)
        msg = change.message if not self.check_mode or not change.changed else f"Would have: {change.message}"
        if change.changed and not device_active:
            msg += f" on a device that answers although it is {status['status']}"
        return self.result(view, device_active, status, changed=change.changed, msg=msg)

    # --- the result every state returns ------------------------------------------------------------------------
    def result(self, view: DeviceView, device_active: bool, status: dict[str, t.Any], *, changed: bool, msg: str,
               failed: bool = False, detail: str | None = None) -> dict[str, t.Any]:
        record = sm.settle(view.record, view.device_time)
        result = {
            "changed": changed,
            "state": sm.effective_state(view.record, view.device_time, device_active),
            "session": None if record is None else record.to_dict(),
            "remaining_seconds": sm.remaining_seconds(view.record, view.device_time),
            # Reaching the device at all means the connection is valid: revoking stays possible on an idle device.
            "allowed_actions": sm.allowed_actions(view.record, view.device_time, device_active,
                                                  connection_valid=status["connection"]["valid"]),
            "policy": view.policy,
            "interactive_user": None if view.interactive_user is None else view.interactive_user["name"],
            "device_time": format_utc(view.device_time),
            "clock_skew_seconds": status.get("clock_skew_seconds"),
            "device_status": status["status"],
            "connection": status["connection"],
            "msg": msg,
        }
        if failed:
            result["failed"] = True
        if detail:
            result["detail"] = detail
        return result


def _waiting_record(record: sm.SessionRecord | None) -> bool:
    """A question is with the client: a pending request, or a renewal of the authorized session."""
    return record is not None and (record.state == "pending_confirmation" or record.renewal_pending)


def _waiting(view: DeviceView) -> bool:
    return _waiting_record(sm.settle(view.record, view.device_time))


def check_options(options: t.Mapping[str, t.Any]) -> tuple[dict[str, t.Any], str | None]:
    """The options with the requester's free text cleaned (session_state.clean_free_text), or what is wrong."""
    cleaned = dict(options)
    problem = device_info.idle_after_problem(options.get("idle_after", device_info.DEFAULT_IDLE_AFTER))
    if problem:
        return cleaned, f"{problem}."
    try:
        cleaned["requested_by"] = sm.check_free_text("requested_by", options["requested_by"])
        if options["state"] == "authorized":
            cleaned["reason"] = sm.check_free_text("reason", options.get("reason"))
    except ValueError as error:
        return cleaned, f"{error}."
    return cleaned, None


def run(client: t.Any, options: t.Mapping[str, t.Any], *, check_mode: bool,
        controller_now: t.Callable[[], datetime.datetime], monotonic: t.Callable[[], float]) -> dict[str, t.Any]:
    """The support_session task on one device; never raises for a device-side failure."""
    options, problem = check_options(options)
    if problem:
        return {"changed": False, "failed": True, "msg": problem}
    try:
        with client.shell() as shell:
            return SessionTask(shell, options, check_mode=check_mode, controller_now=controller_now,
                               monotonic=monotonic).run()
    except DeviceError as error:
        # A query reports an unreachable device as its answer; the other states fail.
        return dict(session_gate.unreachable(error), failed=options["state"] != "query")
    except SessionError as error:
        return {"changed": False, "failed": True, "msg": str(error)}
