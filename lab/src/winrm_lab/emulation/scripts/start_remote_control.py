"""Emulation of start_remote_control.ps1, version 1: grant one account the right to shadow the interactive user's
session for the current authorization, and arm the device-side end of the grant at expires_at."""

from __future__ import annotations

import re
import typing as t

from ... import remote_desktop as rd
from ...device import Device
from .. import remote_control as rc
from .. import session

VERSION = 2


def account_refusal(found: rd.AccountLookup) -> str | None:
    """Remote control is for one person: a user account (SID_NAME_USE SidTypeUser) of a domain or of the device, with
    a relative id of 1000 or more (below are the built-in Administrator, Guest and the like), never a computer."""
    if found.kind != rd.SID_TYPE_USER:
        return "account_not_a_user"
    if not re.fullmatch(r"S-1-5-21-\d+-\d+-\d+-\d+", found.sid) or found.relative_id < 1000 or \
            found.name.endswith("$"):
        return "account_built_in"
    return None


def run(device: Device, script_input: dict[str, t.Any]) -> dict[str, t.Any]:
    started_event = session.audit_events("start_remote_control")["started"]
    account = script_input["account"]
    prompt_user = script_input["prompt_user"]
    required = rc.shadow_policy_value(script_input["mode"], prompt_user)
    registry = device.registry
    result: dict[str, t.Any] = {
        "script_version": VERSION, "device_time": None, "applied": False, "changed": False, "refused_reason": None,
        "session_state": None, "remote_control_mode": None, "remote_desktop": None, "interactive_user": None,
        "shadow_policy": {"current": None, "required": required}, "grant": None, "replaced_grant": None,
        "account": None,
    }
    with device.lock:  # the mutex Global\RemoteSupport.Session
        now, now_text = rc.now_stamp(device)
        result["device_time"] = now_text
        desktop = rc.remote_desktop_state(device)
        result["remote_desktop"] = desktop
        current_shadow = rc.current_shadow_policy(device)
        result["shadow_policy"]["current"] = current_shadow
        policy_mode = rc.remote_control_mode(device)
        result["remote_control_mode"] = policy_mode
        allowed_modes = {"control": ("control", "view"), "view": ("view",), "none": ()}[policy_mode]

        # The session must still be the authorized one the controller read.
        stored_id = registry.get(session.SESSION_KEY, "Id")
        stored_state = registry.get(session.SESSION_KEY, "State")
        expires_at = session.parse_stamp(registry.get(session.SESSION_KEY, "ExpiresAt"))
        refused = None
        if (stored_id is None or str(stored_id) != script_input["support_session_id"] or stored_state != "authorized"
                or expires_at is None or expires_at <= now):
            refused = "session_changed"
            if stored_state:
                lapsed = stored_state == "authorized" and expires_at is not None and expires_at <= now
                result["session_state"] = "expired" if lapsed else str(stored_state)
        elif script_input["mode"] not in allowed_modes:
            refused = "mode_not_allowed"
        elif re.search(r"\bHome\b", desktop["edition"], re.IGNORECASE):  # -match is case-insensitive
            refused = "edition_unsupported"
        elif not desktop["enabled"]:
            refused = "rdp_disabled"
        elif not desktop["shadow_firewall_rule_enabled"]:
            refused = "shadow_firewall_rule_disabled"

        target = None
        if refused is None:
            sessions = desktop["sessions"]
            if script_input["user"] is not None:
                wanted = script_input["user"].lower()
                target = next((s for s in sessions if s["user"].lower() == wanted), None)
                if target is None:
                    refused = "user_not_logged_on"
            elif not sessions:
                refused = "no_interactive_user"
            elif len(sessions) > 1:
                refused = "several_users"
            else:
                target = sessions[0]
        result["interactive_user"] = target

        sid = entry = None
        if refused is None:
            found = rd.lookup_account(device, account)
            if found is None:
                refused = "account_unknown"
            else:
                result["account"] = {"name": found.name, "sid": found.sid, "kind": found.kind}
                refused = account_refusal(found)
                sid, account = found.sid, found.name  # the grant names the account as Windows does
        if refused is None and sid is not None:  # with no refusal the account was found
            entry = rd.listener_entry(device, sid)
            if entry is not None and (entry.denied & rd.WINSTATION_SHADOW or not entry.allowed & rd.WINSTATION_SHADOW):
                refused = "listener_entry_conflict"

        current = rc.read_grant(device)
        stale = None
        if current is not None:
            current_expires = session.parse_stamp(current["expires_at"])
            if (current["support_session_id"] != script_input["support_session_id"] or current_expires is None
                    or current_expires <= now):
                stale, current = current, None
            elif refused is None and current["account_sid"] != sid:
                refused = "granted_to_another_account"
                result["grant"] = current

        if refused is not None:
            result["refused_reason"] = refused
            return result
        assert target is not None and sid is not None and expires_at is not None  # no refusal: each was found

        undo_account_added = int(registry.get(rc.UNDO_KEY, "AccountAdded", 0) or 0)
        wanted_grant = {
            "support_session_id": script_input["support_session_id"], "account": account, "account_sid": sid,
            "mode": script_input["mode"], "user": target["user"], "interactive_session_id": target["session_id"],
            "user_prompted": prompt_user, "shadow_policy": required,
            "granted_by": current["granted_by"] if current else script_input["requested_by"],
            "granted_at": current["granted_at"] if current else now_text, "expires_at": session.stamp(expires_at),
        }
        needs_entry = entry is None
        needs_policy = current_shadow != required
        needs_grant = not rc.same_grant(current, wanted_grant)
        needs_task = not rc.end_task_armed_at(device, wanted_grant["expires_at"])
        if needs_grant:
            wanted_grant.update(granted_at=now_text, granted_by=script_input["requested_by"])
        changed = stale is not None or needs_entry or needs_policy or needs_grant or needs_task
        result.update(changed=changed, replaced_grant=stale, grant=wanted_grant)
        if script_input["check_only"]:
            return result

        if stale is not None:
            rc.end_grant(device, stale)
            undo_account_added = 0
            entry = rd.listener_entry(device, sid)
            needs_entry = entry is None
            current_shadow = rc.current_shadow_policy(device)
            needs_policy = current_shadow != required
        rc.install_task_script(device, script_input["task_scripts"]["stop_remote_control"])
        if needs_entry:
            # Recorded first: an end that comes while this is half done still takes the entry back.
            registry.set(rc.UNDO_KEY, "Account", account)
            registry.set(rc.UNDO_KEY, "AccountSid", sid)
            registry.set(rc.UNDO_KEY, "AccountAdded", 1)
            # AddAccount (preset WINSTATION_GUEST_ACCESS), then ModifyPermissions(WINSTATION_SHADOW, allow).
            device.remote_desktop.listener.append(
                rd.ListenerEntry(account, sid, rd.GUEST_ACCESS | rd.WINSTATION_SHADOW))
        elif undo_account_added != 1:
            registry.set(rc.UNDO_KEY, "AccountAdded", 0)
        if needs_policy:
            if int(registry.get(rc.UNDO_KEY, "ShadowPolicyChanged", 0) or 0) != 1:
                if current_shadow is None:
                    registry.delete_value(rc.UNDO_KEY, "ShadowPolicyPrevious")
                else:
                    registry.set(rc.UNDO_KEY, "ShadowPolicyPrevious", current_shadow)
                registry.set(rc.UNDO_KEY, "ShadowPolicyChanged", 1)
            registry.set(rc.UNDO_KEY, "ShadowPolicySetTo", required)
            registry.set(rd.TERMINAL_SERVICES_POLICY_KEY, "Shadow", required)
        if needs_grant:
            rc.write_grant(device, wanted_grant)
        if needs_task:
            rc.arm_end_task(device, wanted_grant["expires_at"])
        if changed:
            prompt = "the user is asked to allow each connection" if prompt_user else "the user is not asked"
            g = wanted_grant
            session.audit(device, started_event, "Information",
                          f"Support session {g['support_session_id']}: remote control ({g['mode']}) of the session of "
                          f"{g['user']} (session {g['interactive_session_id']}) granted to {account} by "
                          f"{script_input['requested_by']} at {now_text} until {g['expires_at']}; {prompt}.")
        result["applied"] = True
        result["shadow_policy"]["current"] = required
    return result
