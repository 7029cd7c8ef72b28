# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""remote_control's core against an in-memory device whose every input and answer is checked against the device
scripts' written contracts, with the clock injected."""

from __future__ import annotations

import datetime
import json
import os
import types

import jsonschema
import pytest

from ansible_collections.remote_support.windows.plugins.module_utils import device_script, remote_control
from ansible_collections.remote_support.windows.plugins.module_utils import session_state as sm
from ansible_collections.remote_support.windows.plugins.module_utils.device_info import format_utc
from ansible_collections.remote_support.windows.plugins.module_utils.errors import DeviceError

START = datetime.datetime(2026, 11, 24, 10, 0, 0, tzinfo=datetime.timezone.utc)
USER = "CONTOSO\\maria.silva"
SPECIALIST = "CONTOSO\\jdoe"
SCRIPTS = ("get_device_facts", "get_support_session", "start_remote_control", "stop_remote_control")


def _contract(name):
    with open(os.path.join(device_script.SCRIPTS_DIR, f"{name}.contract.json"), encoding="utf-8") as handle:
        return json.load(handle)


CONTRACTS = {name: _contract(name) for name in SCRIPTS}


@pytest.fixture(autouse=True)
def scripts_by_name(monkeypatch):
    """The fake device dispatches on the script's name; the real texts are what travels as task scripts."""
    monkeypatch.setattr(remote_control.device_script, "load",
                        lambda name: types.SimpleNamespace(name=name, text=f"# device-script: {name}\n"))


def shadow_value(mode, prompt):
    return {("control", True): 1, ("control", False): 2, ("view", True): 3, ("view", False): 4}[(mode, prompt)]


class FakeDevice:
    """A device with a support session, Remote Desktop state and the remote-control scripts, as their contracts say."""

    def __init__(self, state="authorized", confirmation_required=True, user=USER, active=True, server=False):
        self.now = START
        self.active = active
        self.settings = types.SimpleNamespace(host="10.20.0.15")
        self.policy = {"confirmation_required": confirmation_required, "confirmation_timeout_seconds": 300,
                       "session_ttl_seconds": 3600, "source": "device"}
        self.sessions = [] if user is None else [{"user": user, "session_id": 1, "station": "Console",
                                                  "console": True}]
        self.server = server
        self.rdp = {"deny": 0, "source": "local", "port": 3389, "firewall": True,
                    "edition": "Microsoft Windows Server 2022 Standard" if server else "Microsoft Windows 11 Pro"}
        self.known_accounts = {SPECIALIST: "S-1-5-21-1-2-3-1105", "CONTOSO\\ana": "S-1-5-21-1-2-3-1106"}
        self.listener = {}  # sid -> {"allowed": mask, "denied": mask}
        self.shadow_policy = None
        self.policy_mode = "control"  # the support policy's RemoteControlMode
        self.grant = None
        self.undo = None
        self.end_task = None  # start boundary
        self.task_scripts = {}
        self.events = []
        self.calls = []
        self.before_start = None  # something that happens on the device between the read and the start
        self.record = None
        if state is not None:
            self.record = self._record(state, confirmation_required)

    def _record(self, state, confirmation_required):
        record = sm.request(None, self.now - datetime.timedelta(seconds=60), requested_by="jdoe", reason="INC-4711",
                            confirmation_required=confirmation_required)
        if record.state == "pending_confirmation" and state != "pending_confirmation":
            if state == "denied":
                return sm.deny(record, self.now - datetime.timedelta(seconds=50), confirmed_by=USER).to_dict()
            record = sm.accept(record, self.now - datetime.timedelta(seconds=50), confirmed_by=USER)
        if state == "deauthorized":
            record = sm.deauthorize(record, self.now - datetime.timedelta(seconds=10), ended_by="ana").record
        return record.to_dict()

    # the device shell
    def shell(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    # Accounts looked up by other names or of other kinds than a plain DOMAIN\\name user (lower-case key).
    directory = {
        "jdoe@contoso.com": ("CONTOSO\\jdoe", "S-1-5-21-1-2-3-1104", "user"),
        "contoso\\helpdesk": ("CONTOSO\\Helpdesk", "S-1-5-21-1-2-3-1210", "group"),
        "builtin\\administrators": ("BUILTIN\\Administrators", "S-1-5-32-544", "alias"),
        "contoso\\administrator": ("CONTOSO\\Administrator", "S-1-5-21-1-2-3-500", "user"),
    }

    def run(self, script, script_input=None):
        contract = CONTRACTS[script.name]
        jsonschema.validate(script_input if script_input is not None else {}, contract["input"])
        self.calls.append(script.name)
        answer = getattr(self, script.name)(script_input if script_input is not None else {})
        jsonschema.validate(answer, contract["output"])
        return answer

    # --- the scripts ---------------------------------------------------------------------------------------------
    def get_device_facts(self, _input):
        last = self.now - datetime.timedelta(seconds=30 if self.active else 86400)
        return {"computer_name": "DESK-1", "serial_number": "SN1", "manufacturer": "HP", "model": "EliteDesk",
                "chassis_types": [3], "device_type": "server" if self.server else "desktop",
                "os_caption": self.rdp["edition"], "os_version": "10.0.22631",
                "os_product_type": 3 if self.server else 1,
                "last_checkin": format_utc(last), "device_time": format_utc(self.now), "script_version": 1}

    def get_support_session(self, _input):
        console = next((s for s in self.sessions if s["console"]), None)
        return {"script_version": 2, "device_time": format_utc(self.now), "policy": self.policy,
                "interactive_user": None if console is None else {"name": console["user"], "session_id": 1},
                "session": self.record}

    def remote_desktop(self):
        return {"enabled": self.rdp["deny"] == 0, "enabled_source": self.rdp["source"], "port": self.rdp["port"],
                "edition": self.rdp["edition"], "server": self.server,
                "shadow_firewall_rule_enabled": self.rdp["firewall"], "sessions": [dict(s) for s in self.sessions]}

    def start_remote_control(self, request):
        if self.before_start:
            self.before_start()
            self.before_start = None
        required = shadow_value(request["mode"], request["prompt_user"])
        answer = {"script_version": 2, "device_time": format_utc(self.now), "applied": False, "changed": False,
                  "refused_reason": None, "session_state": None, "remote_control_mode": self.policy_mode,
                  "remote_desktop": self.remote_desktop(),
                  "interactive_user": None, "shadow_policy": {"current": self.shadow_policy, "required": required},
                  "grant": None, "replaced_grant": None}
        record = None if self.record is None else sm.settle(sm.SessionRecord.from_dict(self.record), self.now)

        def refuse(reason):
            answer["refused_reason"] = reason
            return answer

        if record is None or record.id != request["support_session_id"] or record.state != "authorized":
            answer["session_state"] = None if record is None else record.state
            return refuse("session_changed")
        if request["mode"] not in {"control": ("control", "view"), "view": ("view",), "none": ()}[self.policy_mode]:
            return refuse("mode_not_allowed")
        if not answer["remote_desktop"]["enabled"]:
            return refuse("rdp_disabled")
        if not self.rdp["firewall"]:
            return refuse("shadow_firewall_rule_disabled")
        if request["user"] is not None:
            target = next((s for s in self.sessions if s["user"].lower() == request["user"].lower()), None)
            if target is None:
                return refuse("user_not_logged_on")
        elif not self.sessions:
            return refuse("no_interactive_user")
        elif len(self.sessions) > 1:
            return refuse("several_users")
        else:
            target = self.sessions[0]
        answer["interactive_user"] = dict(target)
        # LookupAccountName: the name Windows gives back, the SID and what kind of principal it is.
        found = self.directory.get(request["account"].lower())
        sid = self.known_accounts.get(request["account"])
        if found is None and sid is None:
            return refuse("account_unknown")
        if found is not None:
            answer["account"] = {"name": found[0], "sid": found[1], "kind": found[2]}
            if found[2] != "user":
                return refuse("account_not_a_user")
            if int(found[1].rsplit("-", 1)[1]) < 1000:
                return refuse("account_built_in")
            request = dict(request, account=found[0])
            sid = found[1]
        current = self.grant
        stale = None
        lapsed = current is not None and current["expires_at"] <= format_utc(self.now)
        if current is not None and (current["support_session_id"] != record.id or lapsed):
            stale, current = current, None
        elif current is not None and current["account_sid"] != sid:
            answer["grant"] = current
            return refuse("granted_to_another_account")
        wanted = {"support_session_id": record.id, "account": request["account"], "account_sid": sid,
                  "mode": request["mode"], "user": target["user"], "interactive_session_id": target["session_id"],
                  "user_prompted": request["prompt_user"], "shadow_policy": required,
                  "granted_by": request["requested_by"], "granted_at": format_utc(self.now),
                  "expires_at": format_utc(record.expires_at)}
        same = current is not None and all(current[k] == wanted[k] for k in wanted
                                           if k not in ("granted_at", "granted_by"))
        if same:
            wanted.update(granted_at=current["granted_at"], granted_by=current["granted_by"])
        changed = (stale is not None or sid not in self.listener or self.shadow_policy != required or not same
                   or self.end_task != wanted["expires_at"])
        answer.update(changed=changed, grant=wanted, replaced_grant=stale)
        if request["check_only"]:
            return answer
        if sid not in self.listener:
            self.listener[sid] = {"allowed": 0x30, "denied": 0}
            self.undo = dict(self.undo or {}, account_sid=sid, account_added=True)
        if self.shadow_policy != required:
            if self.undo is None or "set_to" not in self.undo:
                self.undo = dict(self.undo or {}, previous=self.shadow_policy)  # what the end puts back
            self.undo["set_to"] = required
            self.shadow_policy = required
        self.grant = wanted
        self.end_task = wanted["expires_at"]
        self.task_scripts.update(request["task_scripts"])
        if changed:
            self.events.append(1020)
        answer.update(applied=True, shadow_policy={"current": required, "required": required})
        return answer

    def stop_remote_control(self, request):
        answer = {"script_version": 2, "device_time": format_utc(self.now), "outcome": "nothing_to_do",
                  "applied": False, "changed": False, "reason": None, "grant": self.grant,
                  "shadow_connections_ended": 0, "listener_entry_removed": False, "shadow_policy_restored": False}
        if self.grant is None and self.undo is None:
            if self.end_task is not None:
                answer["changed"] = True
                if not request["check_only"]:
                    self.end_task = None
                    answer["applied"] = True
            return answer
        answer.update(outcome="stopped", changed=True, reason=request["reason"])
        if request["check_only"]:
            return answer
        if self.undo and self.undo.get("account_added"):
            self.listener.pop(self.undo["account_sid"], None)
            answer["listener_entry_removed"] = True
        if self.undo and "set_to" in self.undo and self.shadow_policy == self.undo["set_to"]:
            self.shadow_policy = self.undo["previous"]
            answer["shadow_policy_restored"] = True
        self.grant = self.undo = self.end_task = None
        self.events.append(1021)
        answer["applied"] = True
        return answer


def run(device, check_mode=False, **options):
    base = {"state": "started", "mode": "control", "account": SPECIALIST, "target_user": None, "connect_host": None,
            "requested_by": "jdoe", "idle_after": 900}
    base.update(options)
    return remote_control.run(device, base, check_mode=check_mode, controller_now=lambda: device.now)


# --- started -------------------------------------------------------------------------------------------------------
def test_started_while_authorized_with_confirmation_prompts_the_user_and_never_skips_consent():
    device = FakeDevice()
    result = run(device)
    assert result["changed"] is True and "failed" not in result
    assert result["state"] == "authorized"
    assert result["interactive_user"] == USER and result["interactive_session_id"] == 1
    assert result["user_will_be_prompted"] is True
    assert result["mstsc_command"] == "mstsc.exe /v:10.20.0.15 /shadow:1 /control"
    assert "/noConsentPrompt" not in result["mstsc_arguments"]
    assert "full address:s:10.20.0.15\r\n" in result["rdp_file"] and f"username:s:{SPECIALIST}" in result["rdp_file"]
    assert result["rdp_file_command"] == "mstsc.exe DESK-1-remote-control.rdp /shadow:1 /control"
    assert result["expires_at"] == device.record["expires_at"] and result["remaining_seconds"] == 3550
    assert device.shadow_policy == 1 and device.end_task == device.record["expires_at"]
    assert device.grant["account"] == SPECIALIST and device.events == [1020]
    assert set(device.task_scripts) == {"stop_remote_control"}
    # One shell, three commands: facts, the session read, the start.
    assert device.calls == ["get_device_facts", "get_support_session", "start_remote_control"]


def test_started_twice_is_unchanged_and_changing_the_mode_is_a_change():
    device = FakeDevice()
    run(device)
    again = run(device)
    assert again["changed"] is False and "already has remote control" in again["msg"]
    assert device.events == [1020]
    view = run(device, mode="view")
    assert view["changed"] is True
    assert view["mstsc_arguments"] == ["/v:10.20.0.15", "/shadow:1"]
    assert device.shadow_policy == 3 and device.grant["mode"] == "view"


@pytest.mark.parametrize("mode, value, switches", [("control", 2, ["/shadow:1", "/control", "/noConsentPrompt"]),
                                                   ("view", 4, ["/shadow:1", "/noConsentPrompt"])])
def test_without_the_confirmation_policy_the_user_is_not_asked(mode, value, switches):
    device = FakeDevice(confirmation_required=False)
    result = run(device, mode=mode)
    assert result["user_will_be_prompted"] is False
    assert result["mstsc_arguments"][1:] == switches
    assert device.shadow_policy == value
    assert "not asked" in result["msg"]


@pytest.mark.parametrize("state, words", [
    (None, "request authorization first"),
    ("pending_confirmation", "waiting for the client to confirm"),
    ("denied", "denied the session"),
    ("deauthorized", "ended by ana"),
])
def test_refused_unless_authorized_with_the_state_and_what_to_do(state, words):
    device = FakeDevice(state=state)
    result = run(device)
    assert result["failed"] is True and result["changed"] is False
    assert words in result["msg"]
    expected = "not_authorized" if state is None else state
    assert result["state"] == expected
    assert "start_remote_control" not in device.calls and device.grant is None


def test_refused_once_the_device_clock_passed_expiry():
    device = FakeDevice()
    device.now += datetime.timedelta(seconds=3600)
    result = run(device)
    assert result["failed"] is True and result["state"] == "expired"
    assert "expired at" in result["msg"] and "request authorization again" in result["msg"]


def test_refused_on_an_idle_device_with_the_seed_message():
    device = FakeDevice(active=False)
    result = run(device)
    assert result["failed"] is True and result["state"] == "unavailable"
    assert result["msg"].startswith("Unable to connect to the device: the device's support agent last checked in")
    # The device answered: revoking the authorized session stays possible, as support_session reports it.
    assert result["allowed_actions"] == ["deauthorize"]


def test_unreachable_device_fails_as_unavailable():
    class Unreachable:
        settings = types.SimpleNamespace(host="x")

        def shell(self):
            raise DeviceError("refused", "refused")

    for state in ("started", "stopped"):
        result = remote_control.run(Unreachable(), {"state": state, "mode": "control", "account": SPECIALIST,
                                                    "target_user": None, "connect_host": None, "requested_by": "jdoe",
                                                    "idle_after": 900},
                                    check_mode=False, controller_now=lambda: START)
        assert result["failed"] is True and result["connection"]["reason"] == "refused"
        assert result["msg"] == "Unable to connect to the device: refused"


def test_nobody_logged_on_says_so():
    device = FakeDevice(confirmation_required=False, user=None)
    result = run(device)
    assert result["failed"] is True and result["refused_reason"] == "no_interactive_user"
    assert "Nobody is logged on" in result["msg"] and device.grant is None


def test_the_person_who_accepted_must_still_be_the_one_logged_on():
    device = FakeDevice()
    device.sessions = [{"user": "CONTOSO\\ana", "session_id": 2, "station": "Console", "console": True}]
    result = run(device)
    assert result["failed"] is True and result["refused_reason"] == "user_not_logged_on"
    assert f"accepted by {USER}" in result["msg"] and "CONTOSO\\ana in session 2" in result["msg"]
    named = run(device, target_user="CONTOSO\\ana")
    assert named["failed"] is True and "only the desktop of the person who accepted" in named["msg"]
    assert "start_remote_control" not in device.calls[-2:]


def test_a_server_with_several_users_needs_to_be_told_whose_desktop():
    device = FakeDevice(confirmation_required=False, server=True)
    device.sessions.append({"user": "CONTOSO\\ana", "session_id": 3, "station": "RDP-Tcp#0", "console": False})
    result = run(device)
    assert result["failed"] is True and result["refused_reason"] == "several_users"
    assert "2 users have active sessions on this server" in result["msg"] and "target_user: DOMAIN\\name" in result["msg"]
    chosen = run(device, target_user="contoso\\ANA")
    assert chosen["changed"] is True and chosen["interactive_session_id"] == 3
    assert chosen["mstsc_arguments"][1] == "/shadow:3"


def test_rdp_disabled_and_the_firewall_rule_are_named():
    device = FakeDevice()
    device.rdp.update(deny=1, source="policy")
    result = run(device)
    assert result["refused_reason"] == "rdp_disabled"
    assert "fDenyTSConnections" in result["msg"] and "Allow users to connect remotely" in result["msg"]
    device.rdp.update(deny=0, firewall=False)
    result = run(device)
    assert result["refused_reason"] == "shadow_firewall_rule_disabled"
    assert "Remote Desktop - Shadow (TCP-In)" in result["msg"]


def test_the_devices_support_policy_has_the_last_word_on_the_mode():
    device = FakeDevice()
    device.policy_mode = "view"
    refused = run(device)
    assert refused["refused_reason"] == "mode_not_allowed" and "view mode only" in refused["msg"]
    assert run(device, mode="view")["changed"] is True
    device.policy_mode = "none"
    none = run(device, mode="view")
    assert none["failed"] is True and "does not allow remote control" in none["msg"]
    assert none["remote_control_mode"] == "none"


def test_an_account_the_device_does_not_know_is_refused():
    result = run(FakeDevice(), account="CONTOSO\\nobody")
    assert result["refused_reason"] == "account_unknown" and "CONTOSO\\nobody" in result["msg"]


@pytest.mark.parametrize("account, reason, words", [
    ("CONTOSO\\Helpdesk", "account_not_a_user", "CONTOSO\\Helpdesk is a group on the device"),
    ("BUILTIN\\Administrators", "account_not_a_user", "is a local group (alias) on the device"),
    ("CONTOSO\\Administrator", "account_built_in", "is a built-in account of the device or its domain"),
])
def test_remote_control_is_handed_to_one_person_only(account, reason, words):
    device = FakeDevice()
    result = run(device, account=account)
    assert result["failed"] is True and result["refused_reason"] == reason
    assert words in result["msg"] and "one" in result["msg"] and device.grant is None


def test_a_user_principal_name_is_granted_under_the_name_windows_gives():
    device = FakeDevice()
    result = run(device, account="jdoe@contoso.com")
    assert result["changed"] is True and result["grant"]["account"] == "CONTOSO\\jdoe"
    assert "username:s:CONTOSO\\jdoe\r\n" in result["rdp_file"]


def test_another_specialists_grant_is_not_taken_over():
    device = FakeDevice()
    run(device, account="CONTOSO\\ana")
    result = run(device)
    assert result["failed"] is True and result["refused_reason"] == "granted_to_another_account"
    assert "granted to CONTOSO\\ana" in result["msg"] and "state: stopped" in result["msg"]
    assert device.grant["account"] == "CONTOSO\\ana"


def test_deauthorized_between_the_read_and_the_start_grants_nothing():
    device = FakeDevice()

    def deauthorize():
        record = sm.SessionRecord.from_dict(device.record)
        device.record = sm.deauthorize(record, device.now, ended_by="ana").record.to_dict()

    device.before_start = deauthorize
    result = run(device)
    assert result["failed"] is True and result["refused_reason"] == "session_changed"
    assert "now deauthorized" in result["msg"] and device.grant is None


def test_check_mode_reports_the_connection_and_changes_nothing():
    device = FakeDevice()
    result = run(device, check_mode=True)
    assert result["changed"] is True and result["msg"].startswith("Would grant")
    assert result["mstsc_command"] == "mstsc.exe /v:10.20.0.15 /shadow:1 /control"
    assert device.grant is None and device.shadow_policy is None and device.events == []


@pytest.mark.parametrize("host, port, address", [("desk-1.contoso.com", 3389, "desk-1.contoso.com"),
                                                 ("10.0.0.9", 3390, "10.0.0.9:3390"),
                                                 ("fd00::9", 3389, "[fd00::9]")])
def test_the_address_uses_connect_host_and_a_custom_port(host, port, address):
    device = FakeDevice()
    device.rdp["port"] = port
    result = run(device, connect_host=host)
    assert result["mstsc_arguments"][0] == f"/v:{address}"
    assert f"full address:s:{address}\r\n" in result["rdp_file"]


@pytest.mark.parametrize("option, value", [("account", "jdoe"), ("account", "CONTOSO\\a;b"), ("target_user", "x"),
                                           ("account", "jdoe@"), ("account", "a@b@contoso.com"),
                                           ("target_user", "jdoe@contoso.com"),
                                           ("connect_host", "host name"), ("idle_after", 0)])
def test_bad_options_fail_before_the_device_is_reached(option, value):
    device = FakeDevice()
    result = run(device, **{option: value})
    assert result["failed"] is True and option in result["msg"]
    assert device.calls == []


# --- stopped -------------------------------------------------------------------------------------------------------
def test_stopped_removes_the_grant_and_puts_back_what_it_changed_idempotently():
    device = FakeDevice()
    device.shadow_policy = 2  # what the device had before
    run(device)
    assert device.shadow_policy == 1
    stopped = run(device, state="stopped")
    assert stopped["changed"] is True and stopped["msg"].startswith(f"Ended {SPECIALIST}'s remote control")
    assert stopped["listener_entry_removed"] is True and stopped["shadow_policy_restored"] is True
    assert device.grant is None and device.listener == {} and device.shadow_policy == 2 and device.end_task is None
    assert device.calls[-1] == "stop_remote_control" and device.calls.count("get_device_facts") == 1
    again = run(device, state="stopped")
    assert again["changed"] is False and again["msg"] == "No remote control is granted on the device"
    assert device.events == [1020, 1021]


def test_stopped_in_check_mode_changes_nothing():
    device = FakeDevice()
    run(device)
    result = run(device, state="stopped", check_mode=True)
    assert result["changed"] is True and result["msg"].startswith("Would end")
    assert device.grant is not None


def test_stopped_needs_no_account_and_no_authorized_session():
    device = FakeDevice(state="deauthorized")
    result = run(device, state="stopped", account=None)
    assert result["changed"] is False and "failed" not in result


def test_no_option_shadows_a_connection_option():
    """The task options and the WinRM connection options share one argument spec: a module option named like a
    connection option (user, host) would silently become the connection's."""
    from ansible_collections.remote_support.windows.plugins.module_utils.winrm_settings import WINRM_ARGUMENT_SPEC

    assert not set(remote_control.ARGUMENT_SPEC) & set(WINRM_ARGUMENT_SPEC)
