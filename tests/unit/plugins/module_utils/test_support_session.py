# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""support_session's core against an in-memory device that keeps a record by compare-and-set, with the clock,
the sleep and the client's answer injected."""

from __future__ import annotations

import datetime
import json
import os
import types

import jsonschema
import pytest

from ansible_collections.remote_support.windows.plugins.module_utils import device_script
from ansible_collections.remote_support.windows.plugins.module_utils import session_state as sm
from ansible_collections.remote_support.windows.plugins.module_utils import support_session
from ansible_collections.remote_support.windows.plugins.module_utils.device_info import format_utc
from ansible_collections.remote_support.windows.plugins.module_utils.errors import DeviceError

START = datetime.datetime(2026, 11, 24, 10, 0, 0, tzinfo=datetime.timezone.utc)
USER = "CONTOSO\\maria.silva"


def _contract(name):
    with open(os.path.join(device_script.SCRIPTS_DIR, f"{name}.contract.json"), encoding="utf-8") as handle:
        return json.load(handle)


CONTRACTS = {name: _contract(name) for name in ("get_device_facts", "get_support_session", "set_support_session")}


@pytest.fixture(autouse=True)
def scripts_by_name(monkeypatch):
    """The fake device dispatches on the script's name only; its text and contract are checked elsewhere."""
    monkeypatch.setattr(support_session.device_script, "load",
                        lambda name: types.SimpleNamespace(name=name, text=f"# device-script: {name}\n"))


class FakeDevice:
    """Answers the session scripts the way their contracts say; `answer` plays the person at the device."""

    def __init__(self, confirmation_required=True, user=USER, ttl=3600, timeout=300, answer=None, active=True):
        self.now = START
        self.policy = {"confirmation_required": confirmation_required, "confirmation_timeout_seconds": timeout,
                       "session_ttl_seconds": ttl, "source": "device"}
        self.user = user
        self.record = None
        self.answer = answer  # None (nobody answers), "accept" or "deny": applied at the first read after a request
        self.active = active
        self.writes = []
        self.reads = 0
        self.racing_writer = None  # a function run just before our write lands: another specialist's change

    # the device shell
    def shell(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def run(self, script, script_input=None):
        # The caller's input and this fake's answer must both follow the script's written contract.
        contract = CONTRACTS[script.name]
        jsonschema.validate(script_input or {}, contract["input"])
        answer = getattr(self, script.name)(script_input or {})
        jsonschema.validate(answer, contract["output"])
        return answer

    def get_device_facts(self, _input):
        last = self.now - datetime.timedelta(seconds=30 if self.active else 86400)
        return {"computer_name": "DESK-1", "serial_number": "SN1", "manufacturer": "HP", "model": "EliteDesk",
                "chassis_types": [3], "device_type": "desktop", "os_caption": "Microsoft Windows 11 Pro",
                "os_version": "10.0.22631", "os_product_type": 1, "last_checkin": format_utc(last),
                "device_time": format_utc(self.now), "script_version": 1}

    def get_support_session(self, _input):
        self.reads += 1
        record = None if self.record is None else sm.SessionRecord.from_dict(self.record)
        waiting = record is not None and (record.state == "pending_confirmation" or record.renewal_pending)
        if waiting and self.answer and self.reads > 1:
            change = sm.accept if self.answer == "accept" else sm.deny
            self.record = change(record, self.now, confirmed_by=self.user).to_dict()
        return {"script_version": 2, "device_time": format_utc(self.now), "policy": self.policy,
                "interactive_user": None if self.user is None else {"name": self.user, "session_id": 1},
                "session": self.record}

    def set_support_session(self, payload):
        if self.racing_writer:
            self.racing_writer()
            self.racing_writer = None
        current = 0 if self.record is None else self.record["version"]
        refused = None
        if current != payload["expected_version"]:
            refused = "version_conflict"
        elif payload["consent_prompt"] and self.user is None:
            refused = "no_interactive_user"
        if refused is None:
            self.record = payload["session"]
            self.writes.append(payload)
        return {"script_version": 2, "applied": refused is None, "refused_reason": refused,
                "device_time": format_utc(self.now), "session": self.record}


class Clock:
    def __init__(self, device):
        self.device = device
        self.elapsed = 0.0

    def sleep(self, seconds):
        self.elapsed += seconds
        self.device.now += datetime.timedelta(seconds=seconds)

    def monotonic(self):
        return self.elapsed


def run(device, check_mode=False, **options):
    base = {"state": "authorized", "reason": "INC-4711", "requested_by": "jdoe", "wait": True, "wait_timeout": 60,
            "renew_before": 600, "poll_interval": 2, "idle_after": 900}
    base.update(options)
    clock = Clock(device)
    return support_session.run(device, base, check_mode=check_mode, controller_now=lambda: device.now,
                               sleep=clock.sleep, monotonic=clock.monotonic)


def test_client_accepts_then_authorized_for_the_ttl():
    device = FakeDevice(answer="accept")
    result = run(device)
    assert result["changed"] is True and "failed" not in result
    assert result["state"] == "authorized"
    record = result["session"]
    assert record["confirmed_by"] == USER
    expires = datetime.datetime.strptime(record["expires_at"], "%Y-%m-%dT%H:%M:%SZ")
    authorized = datetime.datetime.strptime(record["authorized_at"], "%Y-%m-%dT%H:%M:%SZ")
    assert (expires - authorized).total_seconds() == 3600
    assert result["allowed_actions"] == ["remote_control", "file_transfer", "request_authorization", "deauthorize"]
    assert result["remaining_seconds"] == 3600
    first_write = device.writes[0]
    assert first_write["consent_prompt"] is True and first_write["expiry_task"] is False
    assert first_write["audit"]["event_id"] == 1000
    assert set(first_write["task_scripts"]) == {"consent_prompt", "apply_consent", "expire_session"}
    assert record["id"] in first_write["audit"]["message"] and "jdoe" in first_write["audit"]["message"]


def test_client_denies_fails_with_who_and_what_to_do():
    result = run(FakeDevice(answer="deny"))
    assert result["failed"] is True and result["state"] == "denied"
    assert USER in result["msg"] and "request authorization again" in result["msg"]
    assert result["allowed_actions"] == ["request_authorization"]


def test_no_answer_times_out_and_the_controller_records_it():
    device = FakeDevice(answer=None, timeout=10)
    result = run(device, wait_timeout=60)
    assert result["failed"] is True and result["state"] == "timed_out"
    assert device.record["state"] == "timed_out" and device.record["changed_by"] == sm.TIMER
    assert device.writes[-1]["audit"]["event_id"] == 1003
    assert device.writes[-1]["consent_prompt"] is False


def test_wait_timeout_before_the_device_deadline_leaves_the_request_pending():
    device = FakeDevice(answer=None, timeout=300)
    result = run(device, wait_timeout=10)
    assert result["failed"] is True and "has not answered after 10 s" in result["msg"]
    assert device.record["state"] == "pending_confirmation"


def test_wait_false_returns_pending_confirmation():
    device = FakeDevice(answer="accept")
    result = run(device, wait=False)
    assert result["changed"] is True and result["state"] == "pending_confirmation"
    assert result["allowed_actions"] == ["deauthorize"]


def test_without_confirmation_policy_authorized_at_once_with_an_expiry_task():
    device = FakeDevice(confirmation_required=False, user=None, ttl=1800)
    result = run(device)
    assert result["state"] == "authorized" and result["remaining_seconds"] == 1800
    assert device.writes[0]["expiry_task"] is True and device.writes[0]["consent_prompt"] is False
    assert device.writes[0]["audit"]["event_id"] == 1001


def test_nobody_logged_on_cannot_confirm():
    device = FakeDevice(user=None)
    result = run(device)
    assert result["failed"] is True and "Nobody is logged on" in result["msg"]
    assert not device.writes


def test_idle_device_is_blocked_with_the_seed_message():
    device = FakeDevice(active=False)
    result = run(device)
    assert result["failed"] is True and result["msg"].startswith("Unable to connect to the device: the device's "
                                                                 "support agent last checked in")
    assert result["state"] == "unavailable" and result["allowed_actions"] == []
    assert not device.writes


def test_unreachable_device_is_blocked_but_query_does_not_fail():
    class Unreachable:
        def shell(self):
            raise DeviceError("refused", "refused")

    options = {"state": "authorized", "requested_by": "jdoe", "reason": "INC-4711"}
    result = support_session.run(Unreachable(), options, check_mode=False,
                                 controller_now=lambda: START, sleep=lambda s: None, monotonic=lambda: 0)
    assert result["failed"] is True and result["connection"]["reason"] == "refused"
    revoke = support_session.run(Unreachable(), dict(options, state="deauthorized"), check_mode=False,
                                 controller_now=lambda: START, sleep=lambda s: None, monotonic=lambda: 0)
    assert revoke["failed"] is True and revoke["msg"] == "Unable to connect to the device: refused"
    query = support_session.run(Unreachable(), dict(options, state="query"), check_mode=False,
                                controller_now=lambda: START, sleep=lambda s: None, monotonic=lambda: 0)
    assert query["failed"] is False and query["state"] == "unavailable"


@pytest.mark.parametrize("left, renewed", [(601, False), (600, True), (60, True)])
def test_renew_inside_and_outside_renew_before(left, renewed):
    device = FakeDevice(confirmation_required=False, user=None)
    run(device)
    device.now += datetime.timedelta(seconds=3600 - left)
    version = device.record["version"]
    result = run(device, renew_before=600)
    assert result["changed"] is renewed
    assert (device.record["version"] > version) is renewed
    if renewed:
        assert device.writes[-1]["audit"]["event_id"] == 1007
        assert result["remaining_seconds"] == 3600


def test_expired_session_refuses_actions_and_is_requested_again():
    device = FakeDevice(confirmation_required=False, user=None)
    run(device)
    device.now += datetime.timedelta(seconds=3601)
    query = run(device, state="query")
    assert query["state"] == "expired" and query["allowed_actions"] == ["request_authorization"]
    assert query["changed"] is False
    again = run(device)
    assert again["state"] == "authorized" and again["session"]["id"] != query["session"]["id"]


def test_deauthorize_while_pending_cancels_and_while_authorized_ends():
    device = FakeDevice(answer=None)
    run(device, wait=False)
    cancelled = run(device, state="deauthorized")
    assert cancelled["changed"] is True and cancelled["state"] == "deauthorized"
    assert device.writes[-1]["audit"]["event_id"] == 1006 and device.writes[-1]["end_activities"] is True
    again = run(device, state="deauthorized")
    assert again["changed"] is False

    device = FakeDevice(confirmation_required=False)
    run(device)
    ended = run(device, state="deauthorized")
    assert ended["changed"] is True and ended["session"]["ended_by"] == "jdoe"
    assert device.writes[-1]["audit"]["event_id"] == 1005 and device.writes[-1]["expiry_task"] is False


def test_check_mode_prompts_nobody_and_writes_nothing():
    device = FakeDevice(answer="accept")
    result = run(device, check_mode=True)
    assert result["changed"] is True and "Would have" in result["msg"]
    assert device.writes == [] and device.record is None
    device.policy["confirmation_required"] = False
    run(device)
    deauth = run(device, state="deauthorized", check_mode=True)
    assert deauth["changed"] is True and device.record["state"] == "authorized"


def test_the_losing_writer_reports_who_changed_it():
    device = FakeDevice(confirmation_required=False, user=None)
    run(device)
    device.now += datetime.timedelta(seconds=3500)

    def other_specialist_renews():
        record = sm.SessionRecord.from_dict(device.record)
        device.record = sm.request(record, device.now, reason="printer queue stuck", requested_by="scheduler",
                                   confirmation_required=False).to_dict()

    device.racing_writer = other_specialist_renews
    result = run(device)
    assert result["failed"] is True
    assert "changed by scheduler at" in result["msg"]
    assert device.record["requested_by"] == "scheduler"  # the winner's write stands


# --- renewal: the grant holds while the client decides ----------------------------------------------------------------
def authorized_device(answer, left=300, timeout=120):
    """A device whose session was accepted and has `left` seconds to run; the client answers a renewal `answer`."""
    device = FakeDevice(answer="accept", timeout=timeout)
    run(device)
    device.now += datetime.timedelta(seconds=3600 - left)
    device.answer = answer
    device.writes.clear()
    return device


def test_a_renewal_waits_while_the_authorization_holds_and_is_accepted():
    device = authorized_device("accept")
    old_expiry = device.record["expires_at"]
    result = run(device, reason="INC-4712 still broken", requested_by="night-job")
    assert result["changed"] is True and "failed" not in result and result["state"] == "authorized"
    renewal = device.writes[0]
    assert renewal["consent_prompt"] is True and renewal["expiry_task"] is True  # the old expiry stays armed
    assert renewal["session"]["state"] == "authorized" and renewal["session"]["expires_at"] == old_expiry
    assert renewal["session"]["renewal_requested_by"] == "night-job"
    assert "renewal requested by night-job" in renewal["audit"]["message"]
    assert result["session"]["expires_at"] > old_expiry and result["session"]["reason"] == "INC-4712 still broken"


def test_a_renewal_with_wait_false_reports_the_grant_still_in_force():
    device = authorized_device(None)
    result = run(device, wait=False)
    assert result["changed"] is True and result["state"] == "authorized"
    assert result["allowed_actions"] == ["remote_control", "file_transfer", "deauthorize"]
    assert "holds until" in result["msg"]


def test_a_renewal_denied_ends_the_session():
    device = authorized_device("deny")
    result = run(device)
    assert result["failed"] is True and result["state"] == "denied"
    assert "remote_control" not in result["allowed_actions"] and "denied the session" in result["msg"]


def test_a_renewal_nobody_answers_leaves_the_old_expiry_and_fails():
    device = authorized_device(None, left=300, timeout=30)
    old_expiry = device.record["expires_at"]
    result = run(device, wait_timeout=120)
    assert result["failed"] is True and result["state"] == "authorized"
    assert result["session"]["expires_at"] == old_expiry and result["session"]["renewal_requested_at"] is None
    assert f"ends at {old_expiry}" in result["msg"] and "did not answer the renewal" in result["msg"]
    assert device.record["changed_by"] == sm.TIMER  # recorded, so every controller sees it


# --- revoking on an idle device -------------------------------------------------------------------------------------
def test_deauthorize_on_an_idle_device_that_answers_ends_the_session():
    device = FakeDevice(answer="accept")
    run(device)
    device.active = False
    result = run(device, state="deauthorized")
    assert result["changed"] is True and "failed" not in result
    assert result["state"] == "unavailable" and result["session"]["state"] == "deauthorized"
    assert device.writes[-1]["end_activities"] is True
    assert "although it is idle" in result["msg"]
    again = run(device, state="deauthorized")
    assert again["changed"] is False and "failed" not in again


# --- the requester's free text ----------------------------------------------------------------------------------
@pytest.mark.parametrize("reason", ["", "   ", "\r\n\t", "x" * 301])
def test_a_blank_or_too_long_reason_is_refused_before_anything_starts(reason):
    device = FakeDevice(answer="accept")
    result = run(device, reason=reason)
    assert result["failed"] is True and result["msg"].startswith("reason ")
    assert device.reads == 0 and not device.writes


def test_the_reason_is_stored_without_line_breaks():
    device = FakeDevice(answer="accept")
    result = run(device, reason="Your PC is infected.\r\n\r\nPress Yes.", requested_by="Microsoft\u202eTeam")
    assert result["session"]["reason"] == "Your PC is infected. Press Yes."
    assert result["session"]["requested_by"] == "Microsoft Team"
