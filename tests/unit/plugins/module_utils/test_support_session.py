# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""support_session's core against a lab device in process: the session scripts' emulations keep the record by
compare-and-set, the consent prompt runs as the device's scheduled task and the person at the device answers it as
the lab's user does; time is the device's clock."""

from __future__ import annotations

import contextlib
import datetime

import pytest
from winrm_lab.emulation import session as lab_session

from ansible_collections.remote_support.windows.plugins.module_utils import session_state as sm
from ansible_collections.remote_support.windows.plugins.module_utils import support_session

CONSENT = {"accept": "active", "deny": "user_denies", None: "user_never_answers"}


def session_device(lab, confirmation_required=True, user=True, ttl=None, timeout=None, answer="accept", active=True):
    """A lab device whose policy, logged-on user and agent are as given; `answer` is how the person at the device
    answers a consent prompt (accept, deny, None: never)."""
    device = lab("no_user_logged_on" if not user else CONSENT[answer])
    registry = device.device.registry
    if not confirmation_required:
        registry.set(lab_session.POLICY_KEY, "ConfirmationRequired", 0)
    if ttl is not None:
        registry.set(lab_session.POLICY_KEY, "SessionTtlSeconds", ttl)
    if timeout is not None:
        registry.set(lab_session.POLICY_KEY, "ConfirmationTimeoutSeconds", timeout)
    if not active:
        stop_agent(device)
    return device


def stop_agent(device):
    """The agent stopped checking in a day ago: the device is idle."""
    agent = device.device.agent
    agent.running = False
    agent.stopped_last_checkin = device.now() - datetime.timedelta(days=1)
    device.device.sync_agent_registry()


def user_of(device):
    return device.device.interactive_user.name


def record_of(device):
    """The session record as the device keeps it."""
    return lab_session.read_record(device.device)


def writes(device):
    return [script_input for name, script_input in device.calls if name == "set_support_session"]


def reads(device):
    return sum(1 for name, _input in device.calls if name == "get_support_session")


def run(device, check_mode=False, **options):
    base = {"state": "authorized", "reason": "INC-4711", "requested_by": "jdoe", "wait": True, "wait_timeout": 60,
            "renew_before": 600, "poll_interval": 2, "idle_after": 900}
    base.update(options)
    return support_session.run(device, base, check_mode=check_mode, controller_now=device.now,
                               monotonic=device.monotonic)


def test_client_accepts_then_authorized_for_the_ttl(lab):
    device = session_device(lab, answer="accept")
    result = run(device)
    assert result["changed"] is True and "failed" not in result
    assert result["state"] == "authorized"
    record = result["session"]
    assert record["confirmed_by"] == user_of(device)
    expires = datetime.datetime.strptime(record["expires_at"], "%Y-%m-%dT%H:%M:%SZ")
    authorized = datetime.datetime.strptime(record["authorized_at"], "%Y-%m-%dT%H:%M:%SZ")
    assert (expires - authorized).total_seconds() == 3600
    assert result["allowed_actions"] == ["remote_control", "file_transfer", "request_authorization", "deauthorize"]
    # The device re-reads the record every poll_interval (2 s here) while it waits, and stamps whole seconds.
    assert 3597 <= result["remaining_seconds"] <= 3600
    first_write = writes(device)[0]
    assert first_write["consent_prompt"] is True and first_write["expiry_task"] is False
    assert first_write["audit"]["event_id"] == 1000
    assert set(first_write["task_scripts"]) == {"consent_prompt", "apply_consent", "expire_session"}
    assert record["id"] in first_write["audit"]["message"] and "jdoe" in first_write["audit"]["message"]


def test_client_denies_fails_with_who_and_what_to_do(lab):
    result = run(device := session_device(lab, answer="deny"))
    assert result["failed"] is True and result["state"] == "denied"
    assert user_of(device) in result["msg"] and "request authorization again" in result["msg"]
    assert result["allowed_actions"] == ["request_authorization"]


def test_no_answer_times_out_and_the_controller_records_it(lab):
    device = session_device(lab, answer=None, timeout=10)
    result = run(device, wait_timeout=60)
    assert result["failed"] is True and result["state"] == "timed_out"
    assert record_of(device)["state"] == "timed_out" and record_of(device)["changed_by"] == sm.TIMER
    assert device.events(lab_session.EVENT_SOURCE)[-1] == 1003


def test_wait_timeout_before_the_device_deadline_leaves_the_request_pending(lab):
    device = session_device(lab, answer=None, timeout=300)
    result = run(device, wait_timeout=10)
    assert result["failed"] is True and "has not answered after 10 s" in result["msg"]
    assert record_of(device)["state"] == "pending_confirmation"


def waits(device):
    """The `wait` input of every session read that waited on the device."""
    return [script_input["wait"] for name, script_input in device.calls
            if name == "get_support_session" and "wait" in script_input]


def test_the_answer_is_awaited_on_the_device_in_one_command_and_seen_within_a_poll_interval(lab):
    device = session_device(lab, answer="accept")
    device.device.interactive_user.answer_after_seconds = 13.0
    asked = device.now()
    result = run(device, poll_interval=1)
    assert result["state"] == "authorized"
    assert reads(device) == 2 and len(waits(device)) == 1  # the gate's read, then one wait: no poll per interval
    assert waits(device)[0]["every_seconds"] == 1 and waits(device)[0]["version"] == 1
    seen = datetime.datetime.strptime(result["device_time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    authorized = datetime.datetime.strptime(result["session"]["authorized_at"], "%Y-%m-%dT%H:%M:%SZ") \
        .replace(tzinfo=datetime.timezone.utc)
    assert 13 <= (authorized - asked).total_seconds() < 15
    assert 0 <= (seen - authorized).total_seconds() <= 2  # one re-read (1 s) later, in whole seconds


def test_a_long_wait_is_several_commands_of_a_minute_at_most(lab):
    device = session_device(lab, answer=None, timeout=600)
    result = run(device, wait_timeout=200)
    assert result["failed"] is True and "has not answered after 200 s" in result["msg"]
    assert [wait["seconds"] for wait in waits(device)] == [60, 60, 60, 20]


def test_the_wait_ends_when_another_controller_cancels_the_request_meanwhile(lab):
    """A change that is not the client's answer (another specialist cancels the prompt) ends the wait at once, and
    the task reports it instead of waiting out its wait_timeout."""
    device = session_device(lab, answer=None, timeout=300)

    def cancelled_elsewhere():
        record = dict(record_of(device), state="deauthorized", ended_by="other-specialist",
                      ended_at=lab_session.stamp(device.now()), changed_by="other-specialist",
                      changed_at=lab_session.stamp(device.now()))
        record["version"] += 1
        lab_session.write_record(device.device, record)

    device.after(7, cancelled_elsewhere)
    started = device.monotonic()
    result = run(device, wait_timeout=120)
    assert result["failed"] is True and result["state"] == "deauthorized"
    assert device.monotonic() - started < 10
    assert len(waits(device)) == 1


def test_wait_false_returns_pending_confirmation(lab):
    device = session_device(lab, answer="accept")
    result = run(device, wait=False)
    assert result["changed"] is True and result["state"] == "pending_confirmation"
    assert result["allowed_actions"] == ["deauthorize"]


def test_without_confirmation_policy_authorized_at_once_with_an_expiry_task(lab):
    device = session_device(lab, confirmation_required=False, user=None, ttl=1800)
    result = run(device)
    assert result["state"] == "authorized" and result["remaining_seconds"] == 1800
    assert writes(device)[0]["expiry_task"] is True and writes(device)[0]["consent_prompt"] is False
    assert writes(device)[0]["audit"]["event_id"] == 1001


def test_nobody_logged_on_cannot_confirm(lab):
    device = session_device(lab, user=None)
    result = run(device)
    assert result["failed"] is True and "Nobody is logged on" in result["msg"]
    assert not writes(device)


def test_idle_device_is_blocked_with_the_seed_message(lab):
    device = session_device(lab, active=False)
    result = run(device)
    assert result["failed"] is True and result["msg"].startswith("Unable to connect to the device: the device's "
                                                                 "support agent last checked in")
    assert result["state"] == "unavailable" and result["allowed_actions"] == []
    assert not writes(device)


def test_unreachable_device_is_blocked_but_query_does_not_fail(lab):
    device = lab("port_closed")
    result = run(device)
    assert result["failed"] is True and result["connection"]["reason"] == "refused"
    revoke = run(device, state="deauthorized")
    assert revoke["failed"] is True and revoke["msg"].startswith("Unable to connect to the device: ")
    assert "refused the connection. Check that the device is on" in revoke["msg"]
    query = run(device, state="query")
    assert query["failed"] is False and query["state"] == "unavailable"


class WithoutFacts:
    """A client of `device` whose session reads come back without the facts, as from another version's scripts."""

    def __init__(self, device):
        self.device = device

    @contextlib.contextmanager
    def shell(self):
        yield self

    def run(self, script, script_input=None):
        answer = self.device.run(script, script_input)
        answer.pop("facts", None)
        return answer


def test_a_session_read_without_the_facts_is_named_and_changes_nothing(lab):
    device = session_device(lab)
    result = support_session.run(WithoutFacts(device), {
        "state": "authorized", "reason": "INC-4711", "requested_by": "jdoe", "wait": True, "wait_timeout": 60,
        "renew_before": 600, "poll_interval": 2, "idle_after": 900}, check_mode=False, controller_now=device.now,
        monotonic=device.monotonic)
    assert result["failed"] is True and result["device_status"] == "unreachable"
    assert "answered without the device's facts" in result["msg"] and not writes(device)


@pytest.mark.parametrize("left, renewed", [(601, False), (600, True), (60, True)])
def test_renew_inside_and_outside_renew_before(lab, left, renewed):
    device = session_device(lab, confirmation_required=False, user=None)
    run(device)
    device.advance(3600 - left)
    version = record_of(device)["version"]
    result = run(device, renew_before=600)
    assert result["changed"] is renewed
    assert (record_of(device)["version"] > version) is renewed
    if renewed:
        assert writes(device)[-1]["audit"]["event_id"] == 1007
        assert result["remaining_seconds"] == 3600


def test_expired_session_refuses_actions_and_is_requested_again(lab):
    device = session_device(lab, confirmation_required=False, user=None)
    run(device)
    device.advance(3601)
    query = run(device, state="query")
    assert query["state"] == "expired" and query["allowed_actions"] == ["request_authorization"]
    assert query["changed"] is False
    again = run(device)
    assert again["state"] == "authorized" and again["session"]["id"] != query["session"]["id"]


def test_deauthorize_while_pending_cancels_and_while_authorized_ends(lab):
    device = session_device(lab, answer=None)
    run(device, wait=False)
    cancelled = run(device, state="deauthorized")
    assert cancelled["changed"] is True and cancelled["state"] == "deauthorized"
    assert writes(device)[-1]["audit"]["event_id"] == 1006 and writes(device)[-1]["end_activities"] is True
    again = run(device, state="deauthorized")
    assert again["changed"] is False

    device = session_device(lab, confirmation_required=False)
    run(device)
    ended = run(device, state="deauthorized")
    assert ended["changed"] is True and ended["session"]["ended_by"] == "jdoe"
    assert writes(device)[-1]["audit"]["event_id"] == 1005 and writes(device)[-1]["expiry_task"] is False


def test_check_mode_prompts_nobody_and_writes_nothing(lab):
    device = session_device(lab, answer="accept")
    result = run(device, check_mode=True)
    assert result["changed"] is True and "Would have" in result["msg"]
    assert writes(device) == [] and record_of(device) is None
    device.device.registry.set(lab_session.POLICY_KEY, "ConfirmationRequired", 0)
    run(device)
    deauth = run(device, state="deauthorized", check_mode=True)
    assert deauth["changed"] is True and record_of(device)["state"] == "authorized"


def test_the_losing_writer_reports_who_changed_it(lab):
    device = session_device(lab, confirmation_required=False, user=None)
    run(device)
    device.advance(3500)

    def other_specialist_renews():
        run(device, reason="printer queue stuck", requested_by="scheduler")

    device.before("set_support_session", other_specialist_renews)
    result = run(device)
    assert result["failed"] is True
    assert "changed by scheduler at" in result["msg"]
    assert record_of(device)["requested_by"] == "scheduler"  # the winner's write stands


# --- renewal: the grant holds while the client decides ----------------------------------------------------------------
def authorized_device(lab, answer, left=300, timeout=120):
    """A device whose session was accepted and has `left` seconds to run; the client answers a renewal `answer`."""
    device = session_device(lab, answer="accept", timeout=timeout)
    run(device)
    device.advance(3600 - left)
    device.device.interactive_user.consent = {"accept": "accept", "deny": "deny", None: "ignore"}[answer]
    device.calls.clear()
    return device


def test_a_renewal_waits_while_the_authorization_holds_and_is_accepted(lab):
    device = authorized_device(lab, "accept")
    old_expiry = record_of(device)["expires_at"]
    result = run(device, reason="INC-4712 still broken", requested_by="night-job")
    assert result["changed"] is True and "failed" not in result and result["state"] == "authorized"
    renewal = writes(device)[0]
    assert renewal["consent_prompt"] is True and renewal["expiry_task"] is True  # the old expiry stays armed
    assert renewal["session"]["state"] == "authorized" and renewal["session"]["expires_at"] == old_expiry
    assert renewal["session"]["renewal_requested_by"] == "night-job"
    assert "renewal requested by night-job" in renewal["audit"]["message"]
    assert result["session"]["expires_at"] > old_expiry and result["session"]["reason"] == "INC-4712 still broken"


def test_a_renewal_with_wait_false_reports_the_grant_still_in_force(lab):
    device = authorized_device(lab, None)
    result = run(device, wait=False)
    assert result["changed"] is True and result["state"] == "authorized"
    assert result["allowed_actions"] == ["remote_control", "file_transfer", "deauthorize"]
    assert "holds until" in result["msg"]


def test_a_renewal_denied_ends_the_session(lab):
    device = authorized_device(lab, "deny")
    result = run(device)
    assert result["failed"] is True and result["state"] == "denied"
    assert "remote_control" not in result["allowed_actions"] and "denied the session" in result["msg"]


def test_a_renewal_nobody_answers_leaves_the_old_expiry_and_fails(lab):
    device = authorized_device(lab, None, left=300, timeout=30)
    old_expiry = record_of(device)["expires_at"]
    result = run(device, wait_timeout=120)
    assert result["failed"] is True and result["state"] == "authorized"
    assert result["session"]["expires_at"] == old_expiry and result["session"]["renewal_requested_at"] is None
    assert f"ends at {old_expiry}" in result["msg"] and "did not answer the renewal" in result["msg"]
    assert record_of(device)["changed_by"] == sm.TIMER  # recorded, so every controller sees it


# --- revoking on an idle device -------------------------------------------------------------------------------------
def test_deauthorize_on_an_idle_device_that_answers_ends_the_session(lab):
    device = session_device(lab, answer="accept")
    run(device)
    stop_agent(device)
    result = run(device, state="deauthorized")
    assert result["changed"] is True and "failed" not in result
    assert result["state"] == "unavailable" and result["session"]["state"] == "deauthorized"
    assert writes(device)[-1]["end_activities"] is True
    assert "although it is idle" in result["msg"]
    again = run(device, state="deauthorized")
    assert again["changed"] is False and "failed" not in again


# --- the requester's free text ----------------------------------------------------------------------------------
@pytest.mark.parametrize("reason", ["", "   ", "\r\n\t", "x" * 301])
def test_a_blank_or_too_long_reason_is_refused_before_anything_starts(lab, reason):
    device = session_device(lab, answer="accept")
    result = run(device, reason=reason)
    assert result["failed"] is True and result["msg"].startswith("reason ")
    assert reads(device) == 0 and not writes(device)


def test_the_reason_is_stored_without_line_breaks(lab):
    device = session_device(lab, answer="accept")
    result = run(device, reason="Your PC is infected.\r\n\r\nPress Yes.", requested_by="Microsoft\u202eTeam")
    assert result["session"]["reason"] == "Your PC is infected. Press Yes."
    assert result["session"]["requested_by"] == "Microsoft Team"
