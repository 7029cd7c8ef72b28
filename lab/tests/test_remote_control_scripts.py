"""The remote-control device scripts through real WinRM (pywinrm, the bootstrap, the script on stdin), what the grant
lets a specialist do (mstsc /shadow against the device, through the control surface), and how the device takes
the grant back by itself: at expires_at by its own clock, and when the session is deauthorized.

Every input sent and every answer received is checked against the script's written contract.
"""

from __future__ import annotations

import itertools
import json
import time
import typing as t

import jsonschema
import pytest

from lab_fixtures import bootstrap_arguments, module_lab
from test_session_scripts import SessionDevice, contract_of, request_record, text_of
from winrm_lab.control import ControlError

GRANT_KEY = r"HKLM:\SOFTWARE\RemoteSupport\RemoteControl"
UNDO_KEY = r"HKLM:\SOFTWARE\RemoteSupport\RemoteControlUndo"
POLICY_KEY = r"HKLM:\SOFTWARE\Policies\Microsoft\Windows NT\Terminal Services"
TERMINAL_SERVER_KEY = r"HKLM:\SYSTEM\CurrentControlSet\Control\Terminal Server"
END_TASK = "RemoteSupport-EndRemoteControl"
SPECIALIST = "CONTOSO\\jdoe"
STARTED, STOPPED, ENDED_BY_DEVICE = 1020, 1021, 1022


# 40 devices: a desktop of its own for each test (seed 5 has its first server 21st).
lab = module_lab("remote-control", devices=40, seed=5, slot=67)


class RemoteControlDevice(SessionDevice):
    def authorize(self, confirmation_required: bool = False, ttl: int = 3600) -> dict[str, t.Any]:
        """An authorized session, written as support_session writes one (with its expiry task)."""
        view = self.get()
        record = request_record(view["device_time"], confirmation_required=False, ttl=ttl)
        record["confirmation_required"] = confirmation_required
        if confirmation_required:
            record["confirmed_by"] = self.user
        expected = 0 if view["session"] is None else view["session"]["version"]
        record["version"] = expected + 1
        answer = self.set(expected, record, "authorized", expiry_task=True)
        assert answer["applied"], answer
        return record

    def deauthorize(self, record: dict[str, t.Any]) -> None:
        now = self.get()["device_time"]
        ended = dict(record, state="deauthorized", ended_by="ana", ended_at=now, changed_by="ana", changed_at=now,
                     version=record["version"] + 1)
        assert self.set(record["version"], ended, "deauthorized", end_activities=True)["applied"]

    def start(self, record: dict[str, t.Any], *, mode: str = "control", prompt_user: bool = False,
              account: str = SPECIALIST, user: str | None = None, check_only: bool = False) -> dict[str, t.Any]:
        return self.run("start_remote_control", {
            "check_only": check_only, "support_session_id": record["id"], "account": account, "mode": mode,
            "prompt_user": prompt_user, "user": user, "requested_by": "jdoe",
            "task_scripts": {"stop_remote_control": text_of("stop_remote_control")}})

    def stop(self, check_only: bool = False, reason: str = "stopped") -> dict[str, t.Any]:
        return self.run("stop_remote_control", {"check_only": check_only, "ended_by": "jdoe", "reason": reason})

    def grant(self) -> dict[str, t.Any]:
        try:
            return self.control.registry(self.name, GRANT_KEY)["values"]
        except ControlError as error:
            assert error.status == 404
            return {}

    def desktop(self) -> dict[str, t.Any]:
        return self.control.remote_desktop(self.name)

    def shadow(self, session_id: int = 1, control: bool = True, no_consent_prompt: bool = False,
               account: str = SPECIALIST) -> dict[str, t.Any]:
        """mstsc /shadow:session_id [/control] [/noConsentPrompt], as the specialist would run it."""
        return self.control.shadow(self.name, account, session_id, control, no_consent_prompt)

    def wait_until_ended(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while self.grant() or any(e["account"] == SPECIALIST for e in self.desktop()["listener"]):
            assert time.monotonic() < deadline, f"{self.name}: the grant is still there: {self.grant()}"
            time.sleep(0.1)


_next_desktop = itertools.count()


@pytest.fixture
def device(lab) -> RemoteControlDevice:
    """A desktop of its own for each test, its user logged on and answering at once."""
    desktops = [d for d in lab.devices if d["device_type"] != "server"]
    device = RemoteControlDevice(lab, desktops[next(_next_desktop)])
    device.control.log_user_on(device.name, device.user, consent="accept", answer_after_seconds=0)
    return device


# --- start ---------------------------------------------------------------------------------------------------------
def test_start_grants_the_account_for_this_authorization_and_arms_the_end(device):
    record = device.authorize()
    answer = device.start(record)
    assert answer["applied"] and answer["changed"] and answer["refused_reason"] is None
    grant = answer["grant"]
    assert grant["account"] == SPECIALIST and grant["user"] == device.user and grant["interactive_session_id"] == 1
    assert grant["expires_at"] == record["expires_at"] and grant["shadow_policy"] == 2
    assert answer["remote_desktop"]["enabled"] and answer["remote_desktop"]["port"] == 3389
    stored = device.grant()
    assert stored["SessionId"] == record["id"] and stored["AccountSid"] == grant["account_sid"]
    assert device.control.registry(device.name, POLICY_KEY)["values"]["Shadow"] == 2
    entry = next(e for e in device.desktop()["listener"] if e["account"] == SPECIALIST)
    assert entry["allowed"] & 0x10 and entry["sid"] == grant["account_sid"]
    task = device.tasks()[END_TASK]
    assert task["principal"]["user_id"] == "SYSTEM" and task["settings"]["start_when_available"]
    assert task["triggers"][0]["start_boundary"] == record["expires_at"]
    assert task["action"]["arguments"].endswith(r'-File "C:\ProgramData\RemoteSupport\scripts\stop_remote_control.ps1"')
    assert device.control.read_file(device.name, r"C:\ProgramData\RemoteSupport\scripts\stop_remote_control.ps1") \
        .decode("utf-8-sig") == text_of("stop_remote_control")
    assert [e["event_id"] for e in device.audit()].count(STARTED) == 1

    again = device.start(record)
    assert again["changed"] is False and again["grant"] == grant
    assert [e["event_id"] for e in device.audit()].count(STARTED) == 1


def test_what_the_grant_lets_the_specialist_do_follows_mode_and_prompt(device):
    record = device.authorize()
    device.start(record, prompt_user=True)
    assert device.shadow(no_consent_prompt=True)["reason"] == "consent_required"
    connected = device.shadow()
    assert connected["connected"] and connected["prompted"]
    prompt = device.control.prompts(device.name)[-1]
    assert prompt["title"] == "Remote Control Request" and SPECIALIST in prompt["text"] and prompt["result"] == "yes"
    assert device.shadow(account="CONTOSO\\eve")["reason"] == "access_denied"

    view = device.start(record, mode="view", prompt_user=True)
    assert view["changed"] and view["grant"]["shadow_policy"] == 3
    assert device.shadow(control=True)["reason"] == "policy"
    device.control.set_consent(device.name, "deny")
    assert device.shadow(control=False)["reason"] == "denied"

    device.start(record, mode="control", prompt_user=False)
    before = len(device.control.prompts(device.name))
    unprompted = device.shadow(no_consent_prompt=True)
    assert unprompted["connected"] and not unprompted["prompted"]
    assert len(device.control.prompts(device.name)) == before


def test_check_only_changes_nothing(device):
    record = device.authorize()
    answer = device.start(record, check_only=True)
    assert answer["changed"] and not answer["applied"] and answer["grant"]["account"] == SPECIALIST
    assert device.grant() == {} and END_TASK not in device.tasks()
    assert all(e["account"] != SPECIALIST for e in device.desktop()["listener"])


@pytest.mark.parametrize("scene, reason", [
    ("rdp_disabled", "rdp_disabled"), ("firewall", "shadow_firewall_rule_disabled"),
    ("nobody", "no_interactive_user"), ("unknown_account", "account_unknown"), ("other_user", "user_not_logged_on"),
])
def test_refusals_name_what_is_missing_and_change_nothing(device, scene, reason):
    record = device.authorize()
    account, user = SPECIALIST, None
    if scene == "rdp_disabled":
        device.control.set_registry_value(device.name, POLICY_KEY, "fDenyTSConnections", 1)
    elif scene == "firewall":
        device.control.set_remote_desktop(device.name, shadow_firewall_rule_enabled=False)
    elif scene == "nobody":
        device.control.log_user_off(device.name)
    elif scene == "unknown_account":
        account = "FABRIKAM\\jdoe"
    else:
        user = "CONTOSO\\someone.else"
    answer = device.start(record, account=account, user=user)
    assert answer["refused_reason"] == reason and not answer["applied"] and not answer["changed"]
    if scene == "rdp_disabled":
        assert answer["remote_desktop"]["enabled_source"] == "policy"
    assert device.grant() == {} and END_TASK not in device.tasks()


def test_the_support_policy_decides_which_modes_are_allowed(device):
    record = device.authorize()
    device.control.set_registry_value(device.name, r"HKLM:\SOFTWARE\RemoteSupport\Policy", "RemoteControlMode", "view")
    refused = device.start(record)
    assert refused["refused_reason"] == "mode_not_allowed" and refused["remote_control_mode"] == "view"
    assert device.start(record, mode="view")["applied"]
    device.control.set_registry_value(device.name, r"HKLM:\SOFTWARE\RemoteSupport\Policy", "RemoteControlMode", "none")
    assert device.start(record, mode="view")["refused_reason"] == "mode_not_allowed"


def test_a_session_that_is_no_longer_authorized_gets_nothing(device):
    record = device.authorize()
    device.deauthorize(record)
    answer = device.start(record)
    assert answer["refused_reason"] == "session_changed" and answer["session_state"] == "deauthorized"


def test_another_accounts_grant_is_kept_and_a_stale_one_is_replaced(device):
    record = device.authorize()
    device.start(record, account="CONTOSO\\ana")
    refused = device.start(record)
    assert refused["refused_reason"] == "granted_to_another_account" and refused["grant"]["account"] == "CONTOSO\\ana"
    fresh = device.authorize()  # a new session over the authorized one: the grant of the old one is stale now
    answer = device.start(fresh)
    assert answer["changed"] and answer["grant"]["support_session_id"] == fresh["id"]
    assert answer["replaced_grant"]["account"] == "CONTOSO\\ana"
    assert all(e["account"] != "CONTOSO\\ana" for e in device.desktop()["listener"])


def test_a_server_with_several_users_needs_the_user_named(lab):
    device = RemoteControlDevice(lab, next(d for d in lab.devices if d["device_type"] == "server"))
    device.control.log_user_on(device.name, device.user, consent="accept", answer_after_seconds=0)
    device.control.set_remote_desktop(device.name, remote_sessions=[{"user": "CONTOSO\\ana", "session_id": 3}])
    try:
        record = device.authorize()
        assert device.start(record)["refused_reason"] == "several_users"
        answer = device.start(record, user="contoso\\ANA")
        assert answer["applied"] and answer["grant"]["interactive_session_id"] == 3
        assert answer["remote_desktop"]["server"] is True
    finally:
        device.control.set_remote_desktop(device.name, remote_sessions=[])


def test_a_client_edition_has_one_interactive_session(device):
    with pytest.raises(ControlError) as error:
        device.control.set_remote_desktop(device.name, remote_sessions=[{"user": "CONTOSO\\ana", "session_id": 3}])
    assert error.value.status == 400 and "one interactive session" in error.value.message


# --- stop and the device's own end ---------------------------------------------------------------------------------
def test_stop_puts_back_exactly_what_the_grant_changed_and_is_idempotent(device):
    device.control.set_registry_value(device.name, POLICY_KEY, "Shadow", 4)  # what the device had
    record = device.authorize()
    device.start(record, prompt_user=True)
    assert device.shadow()["connected"]
    assert device.stop(check_only=True)["changed"] and device.grant()
    stopped = device.stop()
    assert stopped["outcome"] == "stopped" and stopped["changed"] and stopped["reason"] == "stopped"
    assert stopped["shadow_connections_ended"] == 1 and stopped["listener_entry_removed"]
    assert stopped["shadow_policy_restored"]
    assert device.control.registry(device.name, POLICY_KEY)["values"]["Shadow"] == 4
    assert device.grant() == {} and device.desktop()["connections"] == [] and END_TASK not in device.tasks()
    with pytest.raises(ControlError):
        device.control.registry(device.name, UNDO_KEY)
    again = device.stop()
    assert again["outcome"] == "nothing_to_do" and again["changed"] is False
    assert [e["event_id"] for e in device.audit()].count(STOPPED) == 1


def test_the_end_task_keeps_a_valid_grant(device):
    record = device.authorize()
    device.start(record)
    # As the task runs it (-File, no arguments): the input is null.
    protocol, shell = device.protocol, device.protocol.open_shell(codepage=65001)
    try:
        command = protocol.run_command(shell, "powershell.exe", bootstrap_arguments(), skip_cmd_shell=True)
        payload = json.dumps({"script": text_of("stop_remote_control"), "input": None}).encode("utf-8")
        protocol.send_command_input(shell, command, payload, end=True)
        stdout, stderr, code = protocol.get_command_output(shell, command)
    finally:
        protocol.close_shell(shell)
    assert code == 0, stderr
    kept = json.loads(stdout)
    jsonschema.validate(kept, contract_of("stop_remote_control")["output"])
    assert kept["outcome"] == "kept" and kept["changed"] is False and device.grant()


def test_the_device_clock_passing_expiry_takes_the_grant_back_without_a_controller(device):
    record = device.authorize(ttl=600)
    device.start(record)
    assert device.shadow(no_consent_prompt=True)["connected"]
    device.control.advance_clock(device.name, 601)
    device.wait_until_ended()
    assert device.desktop()["connections"] == []
    assert "Shadow" not in device.control.registry(device.name, POLICY_KEY)["values"]  # none before, none after
    ended = [e for e in device.audit() if e["event_id"] == ENDED_BY_DEVICE]
    assert len(ended) == 1 and "ended by device" in ended[0]["message"] and "(expired)" in ended[0]["message"]
    assert device.shadow(no_consent_prompt=True)["reason"] in ("access_denied", "consent_required")


def test_deauthorizing_takes_the_grant_back(device):
    record = device.authorize()
    device.start(record)
    device.deauthorize(record)
    device.wait_until_ended()
    ended = [e for e in device.audit() if e["event_id"] == ENDED_BY_DEVICE]
    assert ended and "(deauthorized)" in ended[-1]["message"]


# --- a renewal while remote control runs ---------------------------------------------------------------------------
def ask_renewal(device: RemoteControlDevice, record: dict[str, t.Any], consent: str,
                timeout: int = 20) -> dict[str, t.Any]:
    """A renewal of the authorized session, written as support_session writes one: the record stays authorized with
    the renewal waiting, the consent route armed and the expiry task kept. The user answers `consent` at once."""
    device.control.log_user_on(device.name, device.user, consent=consent, answer_after_seconds=0)
    now = device.get()["device_time"]
    renewal = dict(record, renewal_requested_by="night-job", renewal_reason="INC-4712 still broken",
                   renewal_requested_at=now, version=record["version"] + 1, changed_by="night-job", changed_at=now,
                   confirmation_timeout_seconds=timeout)
    answer = device.set(record["version"], renewal, "requested", consent_prompt=True, expiry_task=True)
    assert answer["applied"] and answer["session"] == renewal
    return renewal


def test_a_denied_renewal_ends_remote_control_at_once(device):
    record = device.authorize(confirmation_required=True)
    device.start(record)
    assert device.shadow(no_consent_prompt=True)["connected"]
    ask_renewal(device, record, "deny")
    session = device.wait_for_state("denied")
    # Long before the old expires_at (an hour away), the grant is gone and the open connection with it.
    assert session["expires_at"] == record["expires_at"] and session["renewal_requested_at"] is None
    device.wait_until_ended()
    assert device.desktop()["connections"] == []
    refused = device.shadow(no_consent_prompt=True)
    assert not refused["connected"] and refused["reason"] in ("access_denied", "consent_required")
    ended = [e for e in device.audit() if e["event_id"] == ENDED_BY_DEVICE]
    assert len(ended) == 1 and "(denied)" in ended[0]["message"]
    assert device.start(record)["refused_reason"] == "session_changed"


def test_a_renewal_nobody_answers_leaves_remote_control_until_the_old_expiry(device):
    record = device.authorize(confirmation_required=True, ttl=600)
    device.start(record)
    ask_renewal(device, record, "ignore", timeout=2)
    deadline = time.monotonic() + 15
    while device.get()["session"]["renewal_requested_at"] is not None:
        assert time.monotonic() < deadline, "the renewal never timed out"
        time.sleep(0.1)
    session = device.get()["session"]
    assert session["state"] == "authorized" and session["expires_at"] == record["expires_at"]
    assert session["changed_by"] == "timer"
    # While the old authorization holds, the grant does too.
    assert device.grant() and device.shadow(no_consent_prompt=True)["connected"]
    device.control.advance_clock(device.name, 601)
    device.wait_until_ended()
    assert device.wait_for_state("expired")["renewal_requested_at"] is None
    assert device.desktop()["connections"] == []
    assert not device.shadow(no_consent_prompt=True)["connected"]


# --- whom remote control may go to ---------------------------------------------------------------------------------
@pytest.mark.parametrize("account, reason, kind", [
    ("CONTOSO\\Domain Users", "account_not_a_user", "group"),
    ("CONTOSO\\Helpdesk", "account_not_a_user", "group"),
    ("BUILTIN\\Administrators", "account_not_a_user", "alias"),
    ("BUILTIN\\Remote Desktop Users", "account_not_a_user", "alias"),
    ("Everyone", None, None),  # not DOMAIN\name: the contract refuses it before the device is asked
    ("NT AUTHORITY\\Authenticated Users", "account_not_a_user", "well_known_group"),
    ("CONTOSO\\Administrator", "account_built_in", "user"),
    ("CONTOSO\\DESK-0042$", "account_built_in", "computer"),
    ("FABRIKAM\\jdoe", "account_unknown", None),
])
def test_remote_control_goes_to_one_person_only(device, account, reason, kind):
    record = device.authorize()
    listener = device.desktop()["listener"]
    if reason is None:
        with pytest.raises(jsonschema.ValidationError):
            device.start(record, account=account)
        return
    answer = device.start(record, account=account)
    assert answer["refused_reason"] == (reason if kind != "computer" else "account_not_a_user")
    assert answer["applied"] is False and answer["grant"] is None
    if kind is not None:
        assert answer["account"]["kind"] == kind
    assert not device.grant() and device.desktop()["listener"] == listener
    assert device.tasks().get(END_TASK) is None


def test_a_user_principal_name_is_granted_as_the_account_windows_names(device):
    record = device.authorize()
    answer = device.start(record, account="jdoe@contoso.com")
    assert answer["applied"] and answer["account"] == {"name": SPECIALIST, "sid": answer["grant"]["account_sid"],
                                                       "kind": "user"}
    assert answer["grant"]["account"] == SPECIALIST
    assert device.shadow(no_consent_prompt=True)["connected"]
