"""Emulation of set_support_session.ps1, version 1: compare-and-set of the session record, the consent route, the
expiry task, ending activities and the audit entry, in the script's order."""

from __future__ import annotations

import typing as t

from ...device import Device
from .. import session
from . import DeviceScriptError

VERSION = 2

_TIMESTAMPS = ("requested_at", "authorized_at", "expires_at", "ended_at", "changed_at", "renewal_requested_at")
_FREE_TEXT = ("requested_by", "reason", "renewal_requested_by", "renewal_reason")


def _check(script_input: dict[str, t.Any]) -> None:
    """Assert-Input: what the contract's schema cannot say."""
    record, expected = script_input["session"], script_input["expected_version"]
    if record["version"] <= expected:
        raise DeviceScriptError(f"session.version ({record['version']}) must be greater than expected_version "
                                f"({expected}).")
    for field in _TIMESTAMPS:
        if record.get(field) is not None and session.parse_stamp(record[field]) is None:
            raise DeviceScriptError(f"session.{field} is '{record[field]}', not a YYYY-MM-DDTHH:MM:SSZ timestamp.")
    for field in _FREE_TEXT:
        text = str(record.get(field) or "")
        if session.has_invisible_characters(text) or len(text) > session.FREE_TEXT_LIMIT:
            raise DeviceScriptError(f"session.{field} must be at most {session.FREE_TEXT_LIMIT} characters without "
                                    "control, format or line-separator characters.")
    if not str(record["reason"]).strip() or not str(record["requested_by"]).strip():
        raise DeviceScriptError("session.requested_by and session.reason must not be blank: the person at the device "
                                "is shown them.")
    if script_input["expiry_task"] and record["expires_at"] is None:
        raise DeviceScriptError("expiry_task needs session.expires_at.")
    if (script_input["consent_prompt"] and record["state"] != "pending_confirmation"
            and not session.renewal_waiting(record)):
        raise DeviceScriptError("consent_prompt needs a pending request or a renewal waiting "
                                "(session.renewal_requested_at).")


def run(device: Device, script_input: dict[str, t.Any], io: t.Any = None) -> dict[str, t.Any]:
    _check(script_input)
    # [WindowsIdentity]::GetCurrent().Name: the account that authenticated over WinRM.
    account = io.identity.user if io is not None and io.identity is not None else None
    if account is None:
        raise DeviceScriptError("the lab ran set_support_session without an identity: a WinRS command always has one")
    record = {**dict.fromkeys(session.RENEWAL_FIELDS), **script_input["session"]}
    arms_tasks = script_input["consent_prompt"] or script_input["expiry_task"]
    with device.lock:  # the mutex Global\RemoteSupport.Session, from the read to the write
        current = session.read_record(device)
        current_version = 0 if current is None else current["version"]
        refused = None
        user = None
        if current_version != script_input["expected_version"]:
            refused = "version_conflict"
        elif script_input["consent_prompt"]:
            user = session.interactive_user(device)
            if user is None:
                refused = "no_interactive_user"
        if refused is None:
            if script_input.get("task_scripts") is not None:
                session.install_task_scripts(device, script_input["task_scripts"])
            elif arms_tasks:
                session.assert_task_scripts_installed(device)
            session.write_record(device, record)
            try:
                if script_input["consent_prompt"]:
                    assert user is not None  # consent_prompt without an interactive user was refused above
                    session.arm_consent_route(device, record, user, account)
                else:
                    session.withdraw_consent_route(device)
                if script_input["expiry_task"]:
                    session.arm_expiry(device, session.required_stamp(record["expires_at"]))
                else:
                    session.remove_task(device, session.EXPIRE_TASK)
                if script_input["end_activities"]:
                    session.end_activities(device)
                audit = script_input["audit"]
                message = session.limit_event_message(audit["message"]) + \
                    f"\r\nAuthenticated account: {session.current_account(io)}"
                session.audit(device, audit["event_id"], audit["entry_type"], message)
            except Exception:
                session.restore_record(device, current)  # no pending request without its prompt
                raise
        stored = session.read_record(device)
        device_time = session.stamp(device.clock.now())
    return {"script_version": VERSION, "applied": refused is None, "refused_reason": refused,
            "device_time": device_time, "session": stored}
