# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""remote_control's core against a lab device in process: its Remote Desktop state, accounts, logged-on sessions and
support session, with every input and answer checked against the device scripts' contracts by the lab."""

from __future__ import annotations

import datetime

import pytest
from winrm_lab import remote_desktop as lab_rdp
from winrm_lab.device import InteractiveUser
from winrm_lab.emulation import remote_control as lab_rc
from winrm_lab.emulation import session as lab_session

from ansible_collections.remote_support.windows.plugins.module_utils import remote_control
from ansible_collections.remote_support.windows.plugins.module_utils import session_state as sm

SPECIALIST = "CONTOSO\\jdoe"


def rc_device(lab, state="authorized", confirmation_required=True, user=True, active=True, server=False):
    """A lab device with a support session in `state` (None: none) and the given policy, user, agent and edition."""
    device = lab("active" if user else "no_user_logged_on")
    lab_device = device.device
    if not confirmation_required:
        lab_device.registry.set(lab_session.POLICY_KEY, "ConfirmationRequired", 0)
    if server:
        lab_device.hardware.os_caption = "Microsoft Windows Server 2022 Standard"
        lab_device.hardware.os_product_type = 3
    if not active:
        agent = lab_device.agent
        agent.running = False
        agent.stopped_last_checkin = device.now() - datetime.timedelta(days=1)
        lab_device.sync_agent_registry()
    if state is not None:
        lab_session.write_record(lab_device, session_record(device, state, confirmation_required))
    return device


def session_record(device, state, confirmation_required):
    """A session requested a minute ago, answered (or not) ten seconds later by the user logged on."""
    now, user = device.now(), device.device.interactive_user
    record = sm.request(None, now - datetime.timedelta(seconds=60), requested_by="jdoe", reason="INC-4711",
                        confirmation_required=confirmation_required)
    if record.state == "pending_confirmation" and state != "pending_confirmation":
        if state == "denied":
            return sm.deny(record, now - datetime.timedelta(seconds=50), confirmed_by=user.name).to_dict()
        record = sm.accept(record, now - datetime.timedelta(seconds=50), confirmed_by=user.name)
    if state == "deauthorized":
        record = sm.deauthorize(record, now - datetime.timedelta(seconds=10), ended_by="ana").record
    return record.to_dict()


def user_of(device):
    return device.device.interactive_user.name


def record_of(device):
    return lab_session.read_record(device.device)


def grant_of(device):
    return lab_rc.read_grant(device.device)


def shadow_policy(device):
    return lab_rdp.shadow_policy(device.device)


def set_policy(device, name, value):
    """A value of the registry key Windows' Remote Desktop group policy writes (Shadow, fDenyTSConnections)."""
    device.device.registry.set(lab_rdp.TERMINAL_SERVICES_POLICY_KEY, name, value)


def end_task(device):
    """When the scheduled task that ends the grant starts (None: no such task)."""
    task = device.device.tasks.get(lab_rc.END_TASK)
    if task is None or not task.time_triggers:
        return None
    return lab_session.stamp(task.time_triggers[0].start_boundary)


def task_scripts(device):
    folder = device.device.windows_path(lab_session.SCRIPTS_FOLDER)
    return {path.stem for path in folder.iterdir()} if folder.is_dir() else set()


def events(device):
    return device.events(lab_session.EVENT_SOURCE)


def names(device):
    return [name for name, _input in device.calls]


def run(device, check_mode=False, **options):
    base = {"state": "started", "mode": "control", "account": SPECIALIST, "target_user": None, "connect_host": None,
            "requested_by": "jdoe", "idle_after": 900}
    base.update(options)
    return remote_control.run(device, base, check_mode=check_mode, controller_now=device.now)


# --- started -------------------------------------------------------------------------------------------------------
def test_started_while_authorized_with_confirmation_prompts_the_user_and_never_skips_consent(lab):
    device = rc_device(lab)
    result = run(device)
    assert result["changed"] is True and "failed" not in result
    assert result["state"] == "authorized"
    assert result["interactive_user"] == user_of(device) and result["interactive_session_id"] == 1
    assert result["user_will_be_prompted"] is True
    assert result["mstsc_command"] == "mstsc.exe /v:10.20.0.15 /shadow:1 /control"
    assert "/noConsentPrompt" not in result["mstsc_arguments"]
    assert "full address:s:10.20.0.15\r\n" in result["rdp_file"] and f"username:s:{SPECIALIST}" in result["rdp_file"]
    assert result["rdp_file_command"] == f"mstsc.exe {device.device.name}-remote-control.rdp /shadow:1 /control"
    assert result["expires_at"] == record_of(device)["expires_at"] and result["remaining_seconds"] == 3550
    assert shadow_policy(device) == 1 and end_task(device) == record_of(device)["expires_at"]
    assert grant_of(device)["account"] == SPECIALIST and events(device) == [1020]
    assert task_scripts(device) == {"stop_remote_control"}
    # One shell, three commands: facts, the session read, the start.
    assert names(device) == ["get_support_session", "start_remote_control"]


def test_started_twice_is_unchanged_and_changing_the_mode_is_a_change(lab):
    device = rc_device(lab)
    run(device)
    again = run(device)
    assert again["changed"] is False and "already has remote control" in again["msg"]
    assert events(device) == [1020]
    view = run(device, mode="view")
    assert view["changed"] is True
    assert view["mstsc_arguments"] == ["/v:10.20.0.15", "/shadow:1"]
    assert shadow_policy(device) == 3 and grant_of(device)["mode"] == "view"


@pytest.mark.parametrize("mode, value, switches", [("control", 2, ["/shadow:1", "/control", "/noConsentPrompt"]),
                                                   ("view", 4, ["/shadow:1", "/noConsentPrompt"])])
def test_without_the_confirmation_policy_the_user_is_not_asked(lab, mode, value, switches):
    device = rc_device(lab, confirmation_required=False)
    result = run(device, mode=mode)
    assert result["user_will_be_prompted"] is False
    assert result["mstsc_arguments"][1:] == switches
    assert shadow_policy(device) == value
    assert "not asked" in result["msg"]


@pytest.mark.parametrize("state, words", [
    (None, "request authorization first"),
    ("pending_confirmation", "waiting for the client to confirm"),
    ("denied", "denied the session"),
    ("deauthorized", "ended by ana"),
])
def test_refused_unless_authorized_with_the_state_and_what_to_do(lab, state, words):
    device = rc_device(lab, state=state)
    result = run(device)
    assert result["failed"] is True and result["changed"] is False
    assert words in result["msg"]
    expected = "not_authorized" if state is None else state
    assert result["state"] == expected
    assert "start_remote_control" not in names(device) and grant_of(device) is None


def test_refused_once_the_device_clock_passed_expiry(lab):
    device = rc_device(lab)
    device.advance(3600)
    result = run(device)
    assert result["failed"] is True and result["state"] == "expired"
    assert "expired at" in result["msg"] and "request authorization again" in result["msg"]


def test_refused_on_an_idle_device_with_the_seed_message(lab):
    device = rc_device(lab, active=False)
    result = run(device)
    assert result["failed"] is True and result["state"] == "unavailable"
    assert result["msg"].startswith("Unable to connect to the device: the device's support agent last checked in")
    # The device answered: revoking the authorized session stays possible, as support_session reports it.
    assert result["allowed_actions"] == ["deauthorize"]


def test_unreachable_device_fails_as_unavailable(lab):
    device = lab("port_closed")
    for state in ("started", "stopped"):
        result = run(device, state=state)
        assert result["failed"] is True and result["connection"]["reason"] == "refused"
        assert result["msg"].startswith("Unable to connect to the device: ")
        assert "refused the connection. Check that the device is on" in result["msg"]


def test_nobody_logged_on_says_so(lab):
    device = rc_device(lab, confirmation_required=False, user=None)
    result = run(device)
    assert result["failed"] is True and result["refused_reason"] == "no_interactive_user"
    assert "Nobody is logged on" in result["msg"] and grant_of(device) is None


def test_the_person_who_accepted_must_still_be_the_one_logged_on(lab):
    device = rc_device(lab)
    accepted_by = user_of(device)
    device.device.interactive_user = InteractiveUser("CONTOSO\\ana", session_id=2)  # another person logged on
    result = run(device)
    assert result["failed"] is True and result["refused_reason"] == "user_not_logged_on"
    assert f"accepted by {accepted_by}" in result["msg"] and "CONTOSO\\ana in session 2" in result["msg"]
    named = run(device, target_user="CONTOSO\\ana")
    assert named["failed"] is True and "only the desktop of the person who accepted" in named["msg"]
    assert names(device)[-1] == "get_support_session"  # refused at the gate: start_remote_control never ran


def test_a_server_with_several_users_needs_to_be_told_whose_desktop(lab):
    device = rc_device(lab, confirmation_required=False, server=True)
    device.device.remote_desktop.sessions.append(lab_rdp.LogonSession("CONTOSO\\ana", 3, "RDP-Tcp#0"))
    result = run(device)
    assert result["failed"] is True and result["refused_reason"] == "several_users"
    assert "2 users have active sessions on this server" in result["msg"] and "target_user: DOMAIN\\name" in result["msg"]
    chosen = run(device, target_user="contoso\\ANA")
    assert chosen["changed"] is True and chosen["interactive_session_id"] == 3
    assert chosen["mstsc_arguments"][1] == "/shadow:3"


def test_rdp_disabled_and_the_firewall_rule_are_named(lab):
    device = rc_device(lab)
    set_policy(device, "fDenyTSConnections", 1)
    result = run(device)
    assert result["refused_reason"] == "rdp_disabled"
    assert "fDenyTSConnections" in result["msg"] and "Allow users to connect remotely" in result["msg"]
    set_policy(device, "fDenyTSConnections", 0)
    device.device.remote_desktop.shadow_firewall_rule_enabled = False
    result = run(device)
    assert result["refused_reason"] == "shadow_firewall_rule_disabled"
    assert "Remote Desktop - Shadow (TCP-In)" in result["msg"]


def test_the_devices_support_policy_has_the_last_word_on_the_mode(lab):
    device = rc_device(lab)
    device.device.registry.set(lab_session.POLICY_KEY, "RemoteControlMode", "view")
    refused = run(device)
    assert refused["refused_reason"] == "mode_not_allowed" and "view mode only" in refused["msg"]
    assert run(device, mode="view")["changed"] is True
    device.device.registry.set(lab_session.POLICY_KEY, "RemoteControlMode", "none")
    none = run(device, mode="view")
    assert none["failed"] is True and "does not allow remote control" in none["msg"]
    assert none["remote_control_mode"] == "none"


def test_an_account_the_device_does_not_know_is_refused(lab):
    # A domain the device is not a member of: LookupAccountName finds no one there.
    result = run(rc_device(lab), account="FABRIKAM\\nobody")
    assert result["refused_reason"] == "account_unknown" and "FABRIKAM\\nobody" in result["msg"]


@pytest.mark.parametrize("account, reason, words", [
    ("CONTOSO\\Helpdesk", "account_not_a_user", "CONTOSO\\Helpdesk is a group on the device"),
    ("BUILTIN\\Administrators", "account_not_a_user", "is a local group (alias) on the device"),
    ("CONTOSO\\Administrator", "account_built_in", "is a built-in account of the device or its domain"),
])
def test_remote_control_is_handed_to_one_person_only(lab, account, reason, words):
    device = rc_device(lab)
    result = run(device, account=account)
    assert result["failed"] is True and result["refused_reason"] == reason
    assert words in result["msg"] and "one" in result["msg"] and grant_of(device) is None


def test_a_user_principal_name_is_granted_under_the_name_windows_gives(lab):
    device = rc_device(lab)
    result = run(device, account="jdoe@contoso.com")
    assert result["changed"] is True and result["grant"]["account"] == "CONTOSO\\jdoe"
    assert "username:s:CONTOSO\\jdoe\r\n" in result["rdp_file"]


def test_another_specialists_grant_is_not_taken_over(lab):
    device = rc_device(lab)
    run(device, account="CONTOSO\\ana")
    result = run(device)
    assert result["failed"] is True and result["refused_reason"] == "granted_to_another_account"
    assert "granted to CONTOSO\\ana" in result["msg"] and "state: stopped" in result["msg"]
    assert grant_of(device)["account"] == "CONTOSO\\ana"


def test_deauthorized_between_the_read_and_the_start_grants_nothing(lab):
    device = rc_device(lab)

    def deauthorize():
        record = sm.SessionRecord.from_dict(record_of(device))
        lab_session.write_record(device.device, sm.deauthorize(record, device.now(), ended_by="ana").record.to_dict())

    device.before("start_remote_control", deauthorize)
    result = run(device)
    assert result["failed"] is True and result["refused_reason"] == "session_changed"
    assert "now deauthorized" in result["msg"] and grant_of(device) is None


def test_check_mode_reports_the_connection_and_changes_nothing(lab):
    device = rc_device(lab)
    result = run(device, check_mode=True)
    assert result["changed"] is True and result["msg"].startswith("Would grant")
    assert result["mstsc_command"] == "mstsc.exe /v:10.20.0.15 /shadow:1 /control"
    assert grant_of(device) is None and shadow_policy(device) is None and events(device) == []


@pytest.mark.parametrize("host, port, address", [("desk-1.contoso.com", 3389, "desk-1.contoso.com"),
                                                 ("10.0.0.9", 3390, "10.0.0.9:3390"),
                                                 ("fd00::9", 3389, "[fd00::9]")])
def test_the_address_uses_connect_host_and_a_custom_port(lab, host, port, address):
    device = rc_device(lab)
    device.device.registry.set(lab_rdp.LISTENER_KEY, "PortNumber", port)
    result = run(device, connect_host=host)
    assert result["mstsc_arguments"][0] == f"/v:{address}"
    assert f"full address:s:{address}\r\n" in result["rdp_file"]


@pytest.mark.parametrize("option, value", [("account", "jdoe"), ("account", "CONTOSO\\a;b"), ("target_user", "x"),
                                           ("account", "jdoe@"), ("account", "a@b@contoso.com"),
                                           ("target_user", "jdoe@contoso.com"),
                                           ("connect_host", "host name"), ("idle_after", 0)])
def test_bad_options_fail_before_the_device_is_reached(lab, option, value):
    device = rc_device(lab)
    result = run(device, **{option: value})
    assert result["failed"] is True and option in result["msg"]
    assert names(device) == []


# --- stopped -------------------------------------------------------------------------------------------------------
def test_stopped_removes_the_grant_and_puts_back_what_it_changed_idempotently(lab):
    device = rc_device(lab)
    set_policy(device, "Shadow", 2)  # what the device had before
    run(device)
    assert shadow_policy(device) == 1
    stopped = run(device, state="stopped")
    assert stopped["changed"] is True and stopped["msg"].startswith(f"Ended {SPECIALIST}'s remote control")
    assert stopped["listener_entry_removed"] is True and stopped["shadow_policy_restored"] is True
    sid = lab_rdp.account_sid(device.device, SPECIALIST)
    assert grant_of(device) is None and lab_rdp.listener_entry(device.device, sid) is None
    assert shadow_policy(device) == 2 and end_task(device) is None
    assert names(device)[-1] == "stop_remote_control" and names(device).count("get_support_session") == 1
    again = run(device, state="stopped")
    assert again["changed"] is False and again["msg"] == "No remote control is granted on the device"
    assert events(device) == [1020, 1021]


def test_stopped_in_check_mode_changes_nothing(lab):
    device = rc_device(lab)
    run(device)
    result = run(device, state="stopped", check_mode=True)
    assert result["changed"] is True and result["msg"].startswith("Would end")
    assert grant_of(device) is not None


def test_stopped_needs_no_account_and_no_authorized_session(lab):
    device = rc_device(lab, state="deauthorized")
    result = run(device, state="stopped", account=None)
    assert result["changed"] is False and "failed" not in result


def test_no_option_shadows_a_connection_option():
    """The task options and the WinRM connection options share one argument spec: a module option named like a
    connection option (user, host) would silently become the connection's."""
    from ansible_collections.remote_support.windows.plugins.module_utils.winrm_settings import WINRM_ARGUMENT_SPEC

    assert not set(remote_control.ARGUMENT_SPEC) & set(WINRM_ARGUMENT_SPEC)
