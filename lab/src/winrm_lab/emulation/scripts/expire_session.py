"""Emulation of expire_session.ps1, version 1: the grant lapses on the device at expires_at, no controller needed."""

from __future__ import annotations

import typing as t

from ...device import Device
from .. import session

VERSION = 2


def run(device: Device, script_input: t.Any) -> dict[str, t.Any]:
    expired_event = session.audit_events("expire_session")["expired"]
    registry = device.registry
    result = session.change_result(VERSION)
    with device.lock:  # the mutex Global\RemoteSupport.Session
        now = session.stamp_now(device, result)
        if registry.get(session.SESSION_KEY, "Id") is None:
            return result
        state = str(registry.get(session.SESSION_KEY, "State"))
        version = int(registry.get(session.SESSION_KEY, "Version"))
        expires_at = session.parse_stamp(registry.get(session.SESSION_KEY, "ExpiresAt"))
        # The record decides, not the task: a session renewed meanwhile has a later expires_at.
        if state == "authorized" and expires_at is not None and expires_at <= now:
            state, version = "expired", version + 1
            registry.set(session.SESSION_KEY, "State", state)
            registry.set(session.SESSION_KEY, "ChangedBy", session.TIMER)
            registry.set(session.SESSION_KEY, "ChangedAt", session.stamp(now))
            registry.set(session.SESSION_KEY, "Version", version)
            session.clear_renewal(device)
            # A renewal still waiting lapses with the grant: its prompt closes, its keys go.
            if registry.get(session.CONSENT_REQUEST_KEY, "SessionId") == registry.get(session.SESSION_KEY, "Id"):
                session.withdraw_consent_route(device)
            session.end_activities(device)
            record = {"id": registry.get(session.SESSION_KEY, "Id"),
                      "requested_by": registry.get(session.SESSION_KEY, "RequestedBy"),
                      "reason": registry.get(session.SESSION_KEY, "Reason") or ""}
            session.audit(device, expired_event, "Information",
                          session.audit_message(record, "expired", session.TIMER, session.stamp(now)))
            result["outcome"] = "expired"
        result.update(session_id=str(registry.get(session.SESSION_KEY, "Id")), state=state, version=version)
    return result
