# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The core of the remote_control module: hand a specialist a Remote Desktop shadow connection to the logged-on
user's desktop, only while the support session is authorized. Plain Python: the clock and the device shell are
passed in.

`state: started` runs two commands in one WinRM shell: the session gate's read (is the device active, does the state
machine allow remote_control?), then start_remote_control, which checks the session again under the
device's session lock, grants the specialist's account the right to shadow for this authorization only and arms the
device-side end of that grant at expires_at. `state: stopped` runs stop_remote_control alone.
"""

from __future__ import annotations

import datetime
import re
import typing as t

from ansible_collections.remote_support.windows.plugins.module_utils import device_info, device_script, session_gate
from ansible_collections.remote_support.windows.plugins.module_utils.device_info import parse_utc
from ansible_collections.remote_support.windows.plugins.module_utils.errors import DeviceError

ARGUMENT_SPEC: dict[str, dict[str, t.Any]] = {
    "state": {"type": "str", "default": "started", "choices": ["started", "stopped"]},
    "mode": {"type": "str", "default": "control", "choices": ["control", "view"]},
    "account": {"type": "str"},
    "target_user": {"type": "str"},
    "connect_host": {"type": "str"},
    "requested_by": {"type": "str"},
    "idle_after": {"type": "int", "default": device_info.DEFAULT_IDLE_AFTER},
}
REQUIRED_IF = [("state", "started", ("account",))]

# The scripts the device's end task runs without a controller (shipped with every start).
TASK_SCRIPTS = ("stop_remote_control",)
# RDP's port when the listener sets none.
DEFAULT_RDP_PORT = 3389
# DOMAIN\name as Windows writes it; the characters Windows forbids in account names are refused here already.
ACCOUNT_PATTERN = re.compile(r'^[^\\/\x00-\x1f"\[\]:;|=+*?<>@]+\\[^\\/\x00-\x1f"\[\]:;|=+*?<>@]+$')
# The specialist's account may also be a user principal name, name@dns.domain (the device resolves both).
UPN_PATTERN = re.compile(r'^[^\\/\x00-\x1f"\[\]:;|=+*?<>@]+@[A-Za-z0-9][A-Za-z0-9.-]*$')
# A host name, an IPv4 address or an IPv6 address: what mstsc's /v: and an .rdp file's full address take.
HOST_PATTERN = re.compile(r"^[A-Za-z0-9._:-]+$")

# How to call what an account is, for refusals (SID_NAME_USE as start_remote_control reports it).
KIND_WORDS = {
    "group": "a group", "alias": "a local group (alias)", "well_known_group": "a well-known principal",
    "domain": "a domain", "computer": "a computer account", "deleted": "a deleted account",
}

SHADOW_FIREWALL_RULE = "Remote Desktop - Shadow (TCP-In)"
ENABLED_SOURCES = {
    "policy": "the Group Policy 'Allow users to connect remotely by using Remote Desktop Services'",
    "local": "the device's own setting",
    "default": "Windows' default (no setting at all)",
}


def validate_options(options: t.Mapping[str, t.Any]) -> str | None:
    """What is wrong with the options, or None."""
    problem = device_info.idle_after_problem(options["idle_after"])
    if problem:
        return problem
    account = options.get("account")
    if account is not None and not (ACCOUNT_PATTERN.match(account) or UPN_PATTERN.match(account)):
        return ("account must be the specialist's Windows user account written DOMAIN\\name (the NetBIOS domain, or "
                f"the computer's name for a local account) or name@dns.domain, not {account!r}")
    target_user = options.get("target_user")
    if target_user is not None and not ACCOUNT_PATTERN.match(target_user):
        return (f"target_user must be a Windows account written DOMAIN\\name (the NetBIOS domain, or the computer's "
                f"name for a local account), not {target_user!r}")
    host = options.get("connect_host")
    if host is not None and not HOST_PATTERN.match(host):
        return f"connect_host must be a host name or an IP address, not {host!r}"
    return None


# --- what the specialist gets ---------------------------------------------------------------------------------------
def mstsc_arguments(interactive_session_id: int, mode: str, user_prompted: bool) -> list[str]:
    """mstsc's shadow switches. /noConsentPrompt only where the device's policy lets a connection skip the user's
    permission: elsewhere Windows would refuse the connection anyway."""
    arguments = [f"/shadow:{interactive_session_id}"]
    if mode == "control":
        arguments.append("/control")
    if not user_prompted:
        arguments.append("/noConsentPrompt")
    return arguments


def rdp_address(host: str, port: int) -> str:
    address = f"[{host}]" if ":" in host else host
    return address if port == DEFAULT_RDP_PORT else f"{address}:{port}"


def rdp_file(address: str, account: str) -> str:
    """An .rdp file with the connection settings. A connection file cannot ask for a shadow connection (there is no
    such setting): mstsc takes the file and the /shadow switches together (see `connection`)."""
    lines = [
        f"full address:s:{address}",
        f"username:s:{account}",
        "prompt for credentials:i:1",
        "authentication level:i:2",
        "enablecredsspsupport:i:1",
        "negotiate security layer:i:1",
        "screen mode id:i:1",
        "smart sizing:i:1",
        "redirectclipboard:i:0",
        "redirectdrives:i:0",
        "redirectprinters:i:0",
    ]
    return "\r\n".join(lines) + "\r\n"


def connection(host: str, port: int, device_name: str, grant: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    address = rdp_address(host, port)
    shadow = mstsc_arguments(grant["interactive_session_id"], grant["mode"], grant["user_prompted"])
    file_name = f"{device_name or 'device'}-remote-control.rdp"
    return {
        "mstsc_command": " ".join(["mstsc.exe", f"/v:{address}", *shadow]),
        "mstsc_arguments": [f"/v:{address}", *shadow],
        "rdp_file": rdp_file(address, grant["account"]),
        "rdp_file_name": file_name,
        "rdp_file_command": " ".join(["mstsc.exe", file_name, *shadow]),
    }


# --- why the device refused -----------------------------------------------------------------------------------------
def _sessions_text(sessions: list[dict[str, t.Any]]) -> str:
    if not sessions:
        return "nobody has an active session"
    return ", ".join(f"{s['user']} in session {s['session_id']} ({s['station']})" for s in sessions)


def refusal_message(answer: t.Mapping[str, t.Any], options: t.Mapping[str, t.Any],
                    consenting_user: str | None) -> str:
    reason = answer["refused_reason"]
    desktop = answer["remote_desktop"]
    if reason == "session_changed":
        state = answer.get("session_state") or "gone"
        return (f"The support session changed on the device while remote control was being started (it is now "
                f"{state}); nothing was granted. Read it with support_session state=query and request authorization "
                "again if needed.")
    if reason == "mode_not_allowed":
        mode = answer["remote_control_mode"]
        if mode == "none":
            return ("The device's support policy does not allow remote control (RemoteControlMode is none). Change "
                    "it with support_policy (remote_control_mode) if the device should allow it.")
        return (f"The device's support policy allows remote control in view mode only (RemoteControlMode is {mode}); "
                "ask for mode: view, or change the policy with support_policy (remote_control_mode).")
    if reason == "edition_unsupported":
        return (f"{desktop['edition']} has no Remote Desktop host, so its desktop cannot be shadowed; remote control "
                "needs a Pro, Enterprise, Education or Server edition of Windows.")
    if reason == "rdp_disabled":
        return (f"Remote Desktop is disabled on the device (fDenyTSConnections is not 0, set by "
                f"{ENABLED_SOURCES[desktop['enabled_source']]}), and shadowing a session needs it. Enable Remote "
                "Desktop on the device (Settings > System > Remote Desktop, or that policy) and try again.")
    if reason == "shadow_firewall_rule_disabled":
        return (f"The Windows Firewall rule '{SHADOW_FIREWALL_RULE}' (RemoteDesktop-Shadow-In-TCP) is disabled or "
                "missing on the device, so a shadow connection cannot reach it. Enable it (Enable-NetFirewallRule "
                "-Name RemoteDesktop-Shadow-In-TCP, or by Group Policy) and try again.")
    if reason == "no_interactive_user":
        return ("Nobody is logged on at the device with an active session, so there is no desktop to join. Ask the "
                "user to log on (or to reconnect to their session) and try again.")
    if reason == "user_not_logged_on":
        wanted = options.get("target_user") or consenting_user
        if consenting_user:
            return (f"The support session was accepted by {consenting_user}, who has no active session on the device "
                    f"now ({_sessions_text(desktop['sessions'])}); remote control joins only the desktop of the "
                    "person who accepted. Request authorization again so that the person at the device can decide.")
        return (f"{wanted} has no active session on the device ({_sessions_text(desktop['sessions'])}); name a "
                "user who is logged on (target_user), or ask them to reconnect to their session.")
    if reason == "several_users":
        return (f"{len(desktop['sessions'])} users have active sessions on this server "
                f"({_sessions_text(desktop['sessions'])}); say whose desktop to join with target_user: DOMAIN\\name.")
    if reason == "account_unknown":
        return (f"The device cannot resolve the account {options['account']} to a security identifier. Give the "
                "specialist's Windows account as DOMAIN\\name, one the device knows (an account of its domain, or a "
                "local account).")
    if reason == "account_not_a_user":
        found = answer.get("account") or {}
        kind = KIND_WORDS.get(found.get("kind"), "not a user account")
        return (f"{found.get('name') or options['account']} is {kind} on the device ({found.get('sid')}); remote "
                "control is handed to one person only. Give the specialist's own user account (DOMAIN\\name or "
                "name@dns.domain).")
    if reason == "account_built_in":
        found = answer.get("account") or {}
        return (f"{found.get('name') or options['account']} is a built-in account of the device or its domain "
                f"({found.get('sid')}), not a person's; remote control is handed to one named person only. Give the "
                "specialist's own user account.")
    if reason == "listener_entry_conflict":
        return (f"{options['account']} has its own entry on the device's RDP-Tcp listener that does not allow Remote "
                "Control (or denies it). The module only changes what it can take back exactly: remove that entry, "
                "or give it the Remote Control permission, and try again.")
    if reason == "granted_to_another_account":
        grant = answer["grant"]
        return (f"Remote control of this support session is granted to {grant['account']} (by {grant['granted_by']} "
                f"until {grant['expires_at']}); stop it first (state: stopped) to hand it to {options['account']}.")
    return f"The device refused to start remote control ({reason})."


# --- the task -------------------------------------------------------------------------------------------------------
class RemoteControlTask:
    """One remote_control task on one device."""

    def __init__(self, shell: t.Any, options: t.Mapping[str, t.Any], *, check_mode: bool, host: str,
                 controller_now: t.Callable[[], datetime.datetime]) -> None:
        self.shell = shell
        self.options = options
        self.check_mode = check_mode
        self.host = options.get("connect_host") or host
        self.controller_now = controller_now
        self.who = options["requested_by"]

    def run(self) -> dict[str, t.Any]:
        if self.options["state"] == "stopped":
            return self.stop()
        return self.start()

    # --- state: started ----------------------------------------------------------------------------------------
    def start(self) -> dict[str, t.Any]:
        gate = session_gate.open_gate(self.shell, "remote_control", self.options["idle_after"], self.controller_now)
        refusal = gate.refusal()
        if refusal is not None:
            return refusal
        facts, view, record, base = gate.facts, gate.view, gate.record, gate.summary()
        # With the client's confirmation, the person who accepted is the one whose desktop may be joined.
        consenting_user = record.confirmed_by if record.confirmation_required else None
        wanted_user = self.options.get("target_user")
        if consenting_user and wanted_user and wanted_user.lower() != consenting_user.lower():
            return dict(base, changed=False, failed=True,
                        msg=(f"The support session was accepted by {consenting_user}; remote control joins only the "
                             f"desktop of the person who accepted. Request authorization again so that {wanted_user} "
                             "can decide."))
        user_prompted = bool(view.policy["confirmation_required"])
        request = {
            "check_only": self.check_mode,
            "support_session_id": record.id,
            "account": self.options["account"],
            "mode": self.options["mode"],
            "prompt_user": user_prompted,
            "user": consenting_user or wanted_user,
            "requested_by": self.who,
            "task_scripts": {name: device_script.load(name).text for name in TASK_SCRIPTS},
        }
        answer = self.shell.run(device_script.load("start_remote_control"), request)
        base["device_time"] = answer["device_time"]
        base["remote_desktop"] = answer["remote_desktop"]
        base["remote_control_mode"] = answer["remote_control_mode"]
        if answer["refused_reason"] is not None:
            return dict(base, changed=False, failed=True, refused_reason=answer["refused_reason"],
                        msg=refusal_message(answer, self.options, consenting_user))

        grant = answer["grant"]
        now = parse_utc(answer["device_time"])
        expires_at = parse_utc(grant["expires_at"])
        remaining = max(0, int((expires_at - now).total_seconds()))
        prompt = ("the user is asked to allow the connection" if grant["user_prompted"]
                  else "the user is not asked (the device's policy allows connecting without permission)")
        what = "view" if grant["mode"] == "view" else "control"
        if answer["changed"]:
            verb = "Would grant" if self.check_mode else "Granted"
            msg = (f"{verb} {grant['account']} remote control ({what}) of the desktop of {grant['user']} (session "
                   f"{grant['interactive_session_id']}) until {grant['expires_at']}; {prompt}")
        else:
            msg = (f"{grant['account']} already has remote control ({what}) of the desktop of {grant['user']} "
                   f"(session {grant['interactive_session_id']}) until {grant['expires_at']}; {prompt}")
        result = dict(base, changed=answer["changed"], msg=msg, support_session_id=grant["support_session_id"],
                      mode=grant["mode"], interactive_user=grant["user"],
                      interactive_session_id=grant["interactive_session_id"],
                      user_will_be_prompted=grant["user_prompted"], grant=grant, expires_at=grant["expires_at"],
                      remaining_seconds=remaining)
        result.update(connection(self.host, answer["remote_desktop"]["port"], facts.get("computer_name", ""), grant))
        return result

    # --- state: stopped ----------------------------------------------------------------------------------------
    def stop(self) -> dict[str, t.Any]:
        answer = self.shell.run(device_script.load("stop_remote_control"),
                                {"check_only": self.check_mode, "ended_by": self.who, "reason": "stopped"})
        grant = answer["grant"]
        if answer["outcome"] == "stopped":
            what = "remote control" if grant is None else (
                f"{grant['account']}'s remote control of the desktop of {grant['user']} "
                f"(session {grant['interactive_session_id']})")
            msg = f"{'Would end' if self.check_mode else 'Ended'} {what}"
        elif answer["changed"]:
            verb = "Would remove" if self.check_mode else "Removed"
            msg = f"{verb} a leftover end task; no remote control was granted"
        else:
            msg = "No remote control is granted on the device"
        return {
            "changed": answer["changed"],
            "msg": msg,
            "grant": grant,
            "shadow_connections_ended": answer["shadow_connections_ended"],
            "listener_entry_removed": answer["listener_entry_removed"],
            "shadow_policy_restored": answer["shadow_policy_restored"],
            "device_time": answer["device_time"],
        }


def run(client: t.Any, options: t.Mapping[str, t.Any], *, check_mode: bool,
        controller_now: t.Callable[[], datetime.datetime]) -> dict[str, t.Any]:
    """The remote_control task on one device; never raises for a device-side failure."""
    problem = validate_options(options)
    if problem:
        return {"changed": False, "failed": True, "msg": problem}
    host = getattr(getattr(client, "settings", None), "host", "") or ""
    try:
        with client.shell() as shell:
            return RemoteControlTask(shell, options, check_mode=check_mode, host=host,
                                     controller_now=controller_now).run()
    except DeviceError as error:
        return session_gate.unreachable(error)
    except session_gate.SessionError as error:
        return {"changed": False, "failed": True, "msg": str(error)}
