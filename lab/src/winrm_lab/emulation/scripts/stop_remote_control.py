"""Emulation of stop_remote_control.ps1, version 1: end remote control and put back what the grant changed. With
input: the controller stops it. Without (the end task, started with -File): only when the authorization is over."""

from __future__ import annotations

import typing as t

from ...device import Device
from .. import remote_control as rc
from .. import session

VERSION = 2


def run(device: Device, script_input: dict[str, t.Any] | None) -> dict[str, t.Any]:
    events = session.audit_events("stop_remote_control")
    by_task = script_input is None
    check_only = False if script_input is None else script_input["check_only"]
    ended_by = "device" if script_input is None else script_input["ended_by"]
    reason = "stopped" if script_input is None else script_input["reason"]
    registry = device.registry
    result: dict[str, t.Any] = {
        "script_version": VERSION, "device_time": None, "outcome": "nothing_to_do", "applied": False,
        "changed": False, "reason": None, "grant": None, "shadow_connections_ended": 0,
        "listener_entry_removed": False, "shadow_policy_restored": False,
    }
    with device.lock:  # the mutex Global\RemoteSupport.Session
        now, now_text = rc.now_stamp(device)
        result["device_time"] = now_text
        grant = rc.read_grant(device, strict=False)
        result["grant"] = grant
        has_undo = registry.key_exists(rc.UNDO_KEY)
        task = device.tasks.get(rc.END_TASK)

        end = grant is not None or has_undo
        if by_task and end:
            # The record decides, not the task: only an authorization that is over ends the grant.
            stored_id = registry.get(session.SESSION_KEY, "Id")
            stored_state = registry.get(session.SESSION_KEY, "State")
            session_expires = session.parse_stamp(registry.get(session.SESSION_KEY, "ExpiresAt"))
            grant_expires = None if grant is None else session.parse_stamp(grant["expires_at"])
            expired = ((grant_expires is not None and grant_expires <= now)
                       or (session_expires is not None and session_expires <= now))
            same_session = grant is not None and stored_id is not None and str(stored_id) == grant["support_session_id"]
            if same_session and stored_state == "authorized" and not expired:
                end = False
                result["outcome"] = "kept"
            elif same_session and stored_state == "deauthorized":
                reason = "deauthorized"
            elif same_session and stored_state == "denied":
                reason = "denied"  # the client refused a renewal: the session ended at once
            elif same_session and (expired or stored_state == "expired"):
                reason = "expired"
            else:
                reason = "authorization_ended"

        if end:
            result.update(outcome="stopped", reason=reason, changed=True)
        elif not by_task and task is not None:
            result["changed"] = True  # a task left from a grant something else removed

        if result["changed"] and not check_only:
            ended, listener_removed, policy_restored = rc.end_grant(device, grant) if end else (0, False, False)
            result.update(shadow_connections_ended=ended, listener_entry_removed=listener_removed,
                          shadow_policy_restored=policy_restored)
            if not by_task and task is not None:
                session.remove_task(device, rc.END_TASK)
            if end:
                what, session_id = "a grant that was not recorded in full", "(unknown)"
                if grant is not None:
                    what = (f"remote control ({grant['mode']}) of the session of {grant['user']} (session "
                            f"{grant['interactive_session_id']}) by {grant['account']}")
                    session_id = grant["support_session_id"]
                event_id = events["ended_by_device"] if by_task else events["stopped"]
                session.audit(device, event_id, "Information",
                              f"Support session {session_id}: {what} ended by {ended_by} at {now_text} "
                              f"({reason.replace('_', ' ')}).")
            result["applied"] = True
    return result
