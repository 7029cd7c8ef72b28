"""The support-session device scripts through real WinRM (pywinrm, the bootstrap, the script on stdin), and what the
device then does on its own: the consent prompt in the user's session, the SYSTEM tasks that apply the answer or the
time-out, and the expiry at expires_at by the device's clock, with no controller involved.

Every input sent and every answer received is checked against the script's written contract.
"""

from __future__ import annotations

import datetime
import itertools
import json
import pathlib
import re
import threading
import time
import typing as t
import uuid

import jsonschema
import pytest

from lab_fixtures import contract_of, module_lab, protocol_for, run_checked, run_device_script, text_of
from winrm_lab.control import ControlError
from winrm_lab.emulation.powershell import device_scripts_dir
from winrm_lab.process import windows_account_name

SCRIPTS = device_scripts_dir()
assert SCRIPTS is not None
TASK_SCRIPTS = ("consent_prompt", "apply_consent", "expire_session")
SESSION_KEY = r"HKLM:\SOFTWARE\RemoteSupport\Session"
POLICY_KEY = r"HKLM:\SOFTWARE\RemoteSupport\Policy"
CONSENT_KEY = r"HKLM:\SOFTWARE\RemoteSupport\Consent"
SOURCE = "RemoteSupport.Windows"
STAMP = "%Y-%m-%dT%H:%M:%SZ"
# The audit trail's event ids (docs/consent-route.md); test_event_ids_agree_everywhere checks every copy.
REQUESTED, AUTHORIZED, DENIED, TIMED_OUT, EXPIRED, DEAUTHORIZED, CANCELLED, RENEWED = range(1000, 1008)
CONSENT_ANSWERED = 1010


def parse(stamp: str) -> datetime.datetime:
    return datetime.datetime.strptime(stamp, STAMP).replace(tzinfo=datetime.timezone.utc)


def fmt(moment: datetime.datetime) -> str:
    return moment.strftime(STAMP)


# Each test takes devices of its own, so their sessions, tasks and clocks do not meet.
lab = module_lab("sessions", devices=30, seed=5, slot=41)


_next_device = itertools.count()


class SessionDevice:
    """One lab device, driven as the controller drives it: device scripts over WinRM, the scene set through the
    control surface."""

    def __init__(self, lab: t.Any, entry: dict[str, t.Any], protocol: t.Any = None) -> None:
        self.lab, self.entry, self.name = lab, entry, entry["name"]
        self.control = getattr(lab, "control", None)
        self.protocol = protocol or protocol_for(entry, lab.manifest["ca_file"])
        self.user = entry["interactive_user"]["name"]

    # device scripts ---------------------------------------------------------------------------------------------
    def run_raw(self, name: str, script_input: t.Any = None, protocol: t.Any = None) -> t.Any:
        return run_device_script(protocol or self.protocol, text_of(name), {} if script_input is None else script_input)

    def run(self, name: str, script_input: t.Any = None, protocol: t.Any = None) -> dict[str, t.Any]:
        return run_checked(protocol or self.protocol, name, script_input)

    def get(self) -> dict[str, t.Any]:
        return self.run("get_support_session", {})

    def set(self, expected_version: int, record: dict[str, t.Any], what: str, *, consent_prompt: bool = False,
            expiry_task: bool = False, end_activities: bool = False, task_scripts: bool = True,
            protocol: t.Any = None) -> dict[str, t.Any]:
        return self.run("set_support_session",
                        set_input(expected_version, record, what, consent_prompt=consent_prompt,
                                  expiry_task=expiry_task, end_activities=end_activities, task_scripts=task_scripts),
                        protocol)

    # the scene and what happened ---------------------------------------------------------------------------------
    def set_policy(self, **values: int) -> None:
        for name, value in values.items():
            self.control.set_registry_value(self.name, POLICY_KEY, name, value)

    def stored(self) -> dict[str, t.Any]:
        try:
            return self.control.registry(self.name, SESSION_KEY)["values"]
        except ControlError as error:
            assert error.status == 404
            return {}

    def wait_for_state(self, state: str, timeout: float = 15.0) -> dict[str, t.Any]:
        deadline = time.monotonic() + timeout
        while True:
            values = self.stored()
            if values.get("State") == state:
                return self.get()["session"]
            assert time.monotonic() < deadline, f"{self.name}: state {values.get('State')}, not {state}"
            time.sleep(0.1)

    def audit(self) -> list[dict[str, t.Any]]:
        return [e for e in self.control.events(self.name, log="Application") if e["source"] == SOURCE]

    def tasks(self) -> dict[str, dict[str, t.Any]]:
        return {task["name"]: task for task in self.control.tasks(self.name)}


@pytest.fixture
def device(lab) -> SessionDevice:
    return SessionDevice(lab, lab.devices[next(_next_device)])


def request_record(device_time: str, requested_by: str = "jdoe", reason: str = "INC-4711 printer queue",
                   confirmation_required: bool = True, ttl: int = 3600, timeout: int = 300,
                   version: int = 1) -> dict[str, t.Any]:
    """A new request as the controller's state machine makes it (session_state.request)."""
    now = parse(device_time)
    granted = not confirmation_required
    return {
        "id": str(uuid.uuid4()), "state": "authorized" if granted else "pending_confirmation",
        "requested_by": requested_by, "reason": reason, "requested_at": device_time,
        "confirmation_required": confirmation_required, "confirmed_by": None,
        "authorized_at": device_time if granted else None,
        "expires_at": fmt(now + datetime.timedelta(seconds=ttl)) if granted else None,
        "ended_by": None, "ended_at": None, "version": version, "ttl_seconds": ttl,
        "confirmation_timeout_seconds": timeout, "changed_by": requested_by, "changed_at": device_time,
        "renewal_requested_by": None, "renewal_reason": None, "renewal_requested_at": None,
    }


def set_input(expected_version: int, record: dict[str, t.Any], what: str, *, consent_prompt: bool = False,
              expiry_task: bool = False, end_activities: bool = False, task_scripts: bool = True) -> dict[str, t.Any]:
    ids = {"requested": REQUESTED, "authorized": AUTHORIZED, "deauthorized": DEAUTHORIZED, "cancelled": CANCELLED,
           "renewed": RENEWED}
    payload = {
        "expected_version": expected_version, "session": record,
        "audit": {"event_id": ids[what], "entry_type": "Information",
                  "message": f"Support session {record['id']}: {what} by {record['changed_by']} at "
                             f"{record['changed_at']}. Requested by {record['requested_by']}. Reason: "
                             f"{record['reason']}"},
        "consent_prompt": consent_prompt, "expiry_task": expiry_task, "end_activities": end_activities,
    }
    if task_scripts:
        payload["task_scripts"] = {name: text_of(name) for name in TASK_SCRIPTS}
    return payload


def assert_audited(entry: dict[str, t.Any], event_id: int, session_id: str, who: str, what: str) -> None:
    """Who, what, when and the session id."""
    assert entry["event_id"] == event_id and entry["log"] == "Application"
    message = entry["message"]
    assert f"Support session {session_id}" in message, message
    assert f"{what} by {who} at " in message, message
    assert re.search(r" at \d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", message), message
    assert entry["time_generated"]


def request_consent(device: SessionDevice, consent: str, answer_after: float, timeout: int
                    ) -> dict[str, t.Any]:
    """Logs the device's user on with the given behaviour and asks for consent; returns the pending record."""
    device.control.log_user_on(device.name, device.user, consent=consent, answer_after_seconds=answer_after)
    device.set_policy(ConfirmationTimeoutSeconds=timeout)
    view = device.get()
    record = request_record(view["device_time"], timeout=view["policy"]["confirmation_timeout_seconds"])
    answer = device.set(0, record, "requested", consent_prompt=True)
    assert answer["applied"] is True and answer["session"] == record
    return record


# --- get_support_session -------------------------------------------------------------------------------------------
def test_get_without_a_record_gives_the_defaults_and_the_console_user(device):
    view = device.get()
    assert view["session"] is None
    assert view["policy"] == {"confirmation_required": True, "confirmation_timeout_seconds": 300,
                              "session_ttl_seconds": 3600, "source": "default"}
    assert view["interactive_user"] == {"name": device.user, "session_id": device.entry["interactive_user"].get(
        "session_id", 1)}
    assert abs((parse(view["device_time"]) - datetime.datetime.now(datetime.timezone.utc)).total_seconds()) < 30


def test_get_reads_the_policy_the_device_sets(device):
    # A value left out keeps its default; a time of 0 would end every request at once, so it keeps the default too.
    device.set_policy(ConfirmationRequired=0, SessionTtlSeconds=1800, ConfirmationTimeoutSeconds=0)
    assert device.get()["policy"] == {"confirmation_required": False, "confirmation_timeout_seconds": 300,
                                      "session_ttl_seconds": 1800, "source": "device"}


def test_get_with_nobody_logged_on(device):
    device.control.log_user_off(device.name)
    assert device.get()["interactive_user"] is None


# --- set_support_session: compare-and-set --------------------------------------------------------------------------
def test_set_applies_on_the_version_read_and_refuses_any_other(device):
    now = device.get()["device_time"]
    first = request_record(now, confirmation_required=False)
    applied = device.set(0, first, "authorized", expiry_task=True)
    assert applied["applied"] is True and applied["refused_reason"] is None and applied["session"] == first
    assert device.get()["session"] == first
    assert device.stored()["ConfirmationRequired"] == 0 and "ConfirmedBy" not in device.stored()

    # Another specialist still holding "no record yet" (version 0) loses, and is shown what is there instead.
    other = request_record(now, requested_by="mallory", confirmation_required=False)
    refused = device.set(0, other, "authorized", expiry_task=True)
    assert refused["applied"] is False and refused["refused_reason"] == "version_conflict"
    assert refused["session"] == first

    ended = dict(first, state="deauthorized", ended_by="jdoe", ended_at=now, changed_at=now, version=2)
    assert device.set(1, ended, "deauthorized", end_activities=True)["session"] == ended
    stale = device.set(1, dict(ended, ended_by="mallory", version=2), "deauthorized")
    assert stale["refused_reason"] == "version_conflict" and stale["session"] == ended
    assert [e["event_id"] for e in device.audit()] == [AUTHORIZED, DEAUTHORIZED]
    assert "RemoteSupport-ExpireSession" not in device.tasks()  # the grant ended, its expiry went with it


def test_two_writers_at_once_exactly_one_wins(device):
    now = device.get()["device_time"]
    records = [request_record(now, requested_by=who, confirmation_required=False) for who in ("ana", "bruno")]
    protocols = [protocol_for(device.entry, device.lab.manifest["ca_file"]) for _ in records]
    answers: list[t.Any] = [None, None]
    start = threading.Barrier(len(records))

    def write(index: int) -> None:
        start.wait()
        answers[index] = device.set(0, records[index], "authorized", expiry_task=True, protocol=protocols[index])

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(records))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(a["applied"] for a in answers) == [False, True]
    winner = next(i for i, a in enumerate(answers) if a["applied"])
    loser = answers[1 - winner]
    assert loser["refused_reason"] == "version_conflict" and loser["session"] == records[winner]
    assert device.get()["session"] == records[winner]
    assert len(device.audit()) == 1


def test_a_write_that_does_not_raise_the_version_is_refused_as_a_script_error(device):
    record = request_record(device.get()["device_time"], confirmation_required=False)
    outcome = device.run_raw("set_support_session", set_input(1, record, "authorized", expiry_task=True))
    assert outcome.exit_code == 1
    assert b"session.version (1) must be greater than expected_version (1)." in outcome.stderr
    assert device.stored() == {}


def test_arming_a_task_without_its_scripts_fails_and_changes_nothing(device):
    record = request_record(device.get()["device_time"])
    outcome = device.run_raw("set_support_session",
                             set_input(0, record, "requested", consent_prompt=True, task_scripts=False))
    assert outcome.exit_code == 1
    assert b"The task script consent_prompt.ps1 is not installed" in outcome.stderr
    assert device.stored() == {} and device.tasks() == {} and device.audit() == []


def test_no_interactive_user_cannot_confirm_and_nothing_changes(device):
    device.control.log_user_off(device.name)
    record = request_record(device.get()["device_time"])
    refused = device.set(0, record, "requested", consent_prompt=True)
    assert refused == {"script_version": 2, "applied": False, "refused_reason": "no_interactive_user",
                       "device_time": refused["device_time"], "session": None}
    assert device.stored() == {} and device.tasks() == {} and device.audit() == []


# --- the consent route -----------------------------------------------------------------------------------------------
def test_client_accepts_and_the_device_authorizes_for_the_ttl(device):
    record = request_consent(device, "accept", 0.3, timeout=20)
    shown = device.control.prompts(device.name)
    assert len(shown) == 1 and shown[0]["user"] == device.user
    # First the account Windows authenticated over WinRM (as WindowsIdentity names it), then the requester's words.
    username = device.entry["credentials"]["username"]
    account = username if "\\" in username else f"{device.name}\\{username}"
    assert shown[0]["text"] == (
        f"{account} asks to start a remote support session on this computer.\r\n\r\n"
        "On behalf of (as given by the requester): jdoe\r\n"
        "Reason (as given by the requester): INC-4711 printer queue\r\n\r\n"
        f"Do you allow it? Without an answer within {shown[0]['timeout_seconds']} seconds the request lapses and "
        "nothing is allowed.")

    session = device.wait_for_state("authorized")
    requested = parse(record["requested_at"])
    authorized = parse(session["authorized_at"])
    assert session["id"] == record["id"] and session["version"] == 2
    assert session["confirmed_by"] == device.user and session["changed_by"] == device.user
    assert requested <= authorized <= requested + datetime.timedelta(seconds=20)
    assert parse(session["expires_at"]) - authorized == datetime.timedelta(seconds=3600)
    assert device.control.prompts(device.name)[0]["result"] == "yes"

    requested_entry, answered, granted = device.audit()
    assert_audited(requested_entry, REQUESTED, record["id"], "jdoe", "requested")
    assert_audited(answered, CONSENT_ANSWERED, record["id"], device.user, "consent answered (accept)")
    assert_audited(granted, AUTHORIZED, record["id"], device.user, "authorized")
    # The device armed its own expiry; the question is settled, so the prompt and the user's grant are gone.
    tasks = device.tasks()
    assert tasks["RemoteSupport-ExpireSession"]["next_run_time"] == session["expires_at"]
    assert tasks["RemoteSupport-ExpireSession"]["principal"]["user_id"] == "SYSTEM"
    assert "RemoteSupport-ConsentPrompt" not in tasks
    with pytest.raises(ControlError):
        device.control.registry(device.name, CONSENT_KEY)


def test_client_denies(device):
    record = request_consent(device, "deny", 0.3, timeout=20)
    session = device.wait_for_state("denied")
    assert session["confirmed_by"] == device.user and session["authorized_at"] is None
    assert session["expires_at"] is None and session["version"] == 2
    entry = device.audit()[-1]
    assert_audited(entry, DENIED, record["id"], device.user, "denied")
    assert entry["entry_type"] == "Warning"
    assert "RemoteSupport-ExpireSession" not in device.tasks()


def test_client_never_answers_and_the_request_times_out_at_the_deadline(device):
    # 4 s, not less: the prompt task must have shown its prompt before the deadline, also on a loaded machine.
    record = request_consent(device, "ignore", 0, timeout=4)
    deadline = parse(record["requested_at"]) + datetime.timedelta(seconds=4)
    session = device.wait_for_state("timed_out")
    assert session["changed_by"] == "timer" and session["confirmed_by"] is None
    assert deadline <= parse(session["changed_at"]) <= deadline + datetime.timedelta(seconds=2)
    assert_audited(device.audit()[-1], TIMED_OUT, record["id"], "timer", "timed out")
    assert device.control.prompts(device.name)[0]["result"] in ("timed_out", "closed")
    assert "RemoteSupport-ConsentPrompt" not in device.tasks()


def test_an_answer_slower_than_the_deadline_does_not_count(device):
    record = request_consent(device, "accept", 30, timeout=2)
    session = device.wait_for_state("timed_out")
    assert session["confirmed_by"] is None and session["id"] == record["id"]
    assert CONSENT_ANSWERED not in [e["event_id"] for e in device.audit()]


def test_moving_the_clock_past_the_deadline_times_out_at_once_and_closes_the_prompt(device):
    record = request_consent(device, "ignore", 0, timeout=300)
    device.control.advance_clock(device.name, 301)
    session = device.wait_for_state("timed_out", timeout=5)
    assert session["id"] == record["id"] and session["changed_by"] == "timer"
    deadline = time.monotonic() + 5
    while device.control.prompts(device.name)[0]["result"] is None:
        assert time.monotonic() < deadline, "the prompt stayed open after the request timed out"
        time.sleep(0.1)
    assert device.control.prompts(device.name)[0]["result"] == "closed"


def test_the_user_logging_off_leaves_the_request_to_time_out(device):
    record = request_consent(device, "accept", 5, timeout=2)
    device.control.log_user_off(device.name)
    session = device.wait_for_state("timed_out")
    assert session["id"] == record["id"] and session["confirmed_by"] is None


def test_cancelling_a_pending_request_withdraws_the_prompt_and_its_tasks(device):
    record = request_consent(device, "ignore", 0, timeout=300)
    assert set(device.tasks()) == {"RemoteSupport-ConsentPrompt", "RemoteSupport-ApplyConsent"}
    now = device.get()["device_time"]
    cancelled = dict(record, state="deauthorized", ended_by="jdoe", ended_at=now, changed_at=now, version=2)
    answer = device.set(1, cancelled, "cancelled", end_activities=True)
    assert answer["applied"] is True and answer["session"] == cancelled
    assert device.tasks() == {}
    with pytest.raises(ControlError):
        device.control.registry(device.name, CONSENT_KEY)
    deadline = time.monotonic() + 5
    while device.control.prompts(device.name)[0]["result"] is None:
        assert time.monotonic() < deadline, "the prompt stayed open after the request was cancelled"
        time.sleep(0.1)
    assert [e["event_id"] for e in device.audit()] == [REQUESTED, CANCELLED]


def test_the_prompt_cannot_run_over_winrm_in_session_0(device):
    outcome = device.run_raw("consent_prompt", {})
    assert outcome.exit_code == 1
    assert b"runs in session 0, where no one can see a prompt" in outcome.stderr


# --- expiry on the device ------------------------------------------------------------------------------------------
def test_moving_the_clock_past_expires_at_lapses_the_grant_without_a_controller(device):
    record = request_record(device.get()["device_time"], confirmation_required=False)
    assert device.set(0, record, "authorized", expiry_task=True)["applied"] is True
    expiry = device.tasks()["RemoteSupport-ExpireSession"]
    assert expiry["next_run_time"] == record["expires_at"] and expiry["settings"]["start_when_available"] is True

    device.control.advance_clock(device.name, 3601)  # the control surface only: no WinRM call until it lapsed
    deadline = time.monotonic() + 5
    while device.stored().get("State") != "expired":
        assert time.monotonic() < deadline, "the device did not lapse the grant"
        time.sleep(0.1)
    values = device.stored()
    assert values["ChangedBy"] == "timer" and values["Version"] == 2
    assert parse(values["ChangedAt"]) >= parse(record["expires_at"])
    assert_audited(device.audit()[-1], EXPIRED, record["id"], "timer", "expired")
    assert device.tasks()["RemoteSupport-ExpireSession"]["last_task_result"] == 0
    assert device.get()["session"]["state"] == "expired"


def test_the_expiry_task_leaves_a_session_that_is_not_due(device):
    record = request_record(device.get()["device_time"], confirmation_required=False)
    device.set(0, record, "authorized", expiry_task=True)
    # Run by hand (as an administrator may), it reads the record and finds nothing to do yet.
    answer = device.run("expire_session", {})
    assert answer["outcome"] == "nothing_to_do" and answer["state"] == "authorized" and answer["version"] == 1
    assert device.get()["session"] == record


# --- one table of event ids ------------------------------------------------------------------------------------------
def test_event_ids_agree_everywhere():
    """The device layout (device_layout.json, which the controller and the lab read), each task script's contract
    (audit_events, naming the layout's events), the variables the PowerShell writes and the docs are one table."""
    from winrm_lab.emulation import session

    events = json.loads((SCRIPTS / "device_layout.json").read_text(encoding="utf-8"))["events"]
    assert events["session"] == {"requested": REQUESTED, "authorized": AUTHORIZED, "denied": DENIED,
                                 "timed_out": TIMED_OUT, "expired": EXPIRED, "deauthorized": DEAUTHORIZED,
                                 "cancelled": CANCELLED, "renewed": RENEWED}
    assert events["consent_answered"] == CONSENT_ANSWERED
    declared = {}
    for name in TASK_SCRIPTS:
        declared.update(session.audit_events(name))
        script = text_of(name)
        for event in contract_of(name)["audit_events"].values():
            words = event.replace(".", "_").split("_")
            variable = "$" + words[0] + "".join(word.capitalize() for word in words[1:]) + "EventId"
            # The script file uses the variable; the layout library, put in place when it is loaded, sets it.
            assert re.search(rf"{re.escape(variable)}\b", script), f"{name}.ps1 does not write {event} ({variable})"
    assert declared == {"consent_answered": CONSENT_ANSWERED, "authorized": AUTHORIZED, "denied": DENIED,
                        "timed_out": TIMED_OUT, "expired": EXPIRED, "renewed": RENEWED}
    assert pathlib.Path(SCRIPTS.parents[2] / "docs" / "consent-route.md").read_text(encoding="utf-8").count("| 10") >= 9


# --- ending activities -------------------------------------------------------------------------------------------------
def test_ending_the_grant_starts_the_remote_control_end_task(start_lab):
    """Remote control ends itself (stop_remote_control undoes what it changed): deauthorizing, and the expiry, start
    its task RemoteSupport-EndRemoteControl when one is registered, rather than touching its state."""
    import winrm

    from conftest import PASSWORD, USER
    from winrm_lab.tasks import ScheduledTask

    running = start_lab(1)
    lab_device = running.device
    lab_device.tasks.register(ScheduledTask(
        name="RemoteSupport-EndRemoteControl", execute="powershell.exe", user_id="SYSTEM",
        arguments=r'-NoProfile -File "C:\ProgramData\RemoteSupport\scripts\stop_remote_control.ps1"'))
    protocol = winrm.Protocol(running.http_url(), transport="ntlm", username=USER, password=PASSWORD,
                              ca_trust_path=str(running.ca.ca_path))
    device = SessionDevice(running, {"name": lab_device.name, "interactive_user": {"name": "CONTOSO\\ana"}},
                           protocol)

    now = device.get()["device_time"]
    record = request_record(now, confirmation_required=False)
    device.set(0, record, "authorized", expiry_task=True)
    ended = dict(record, state="deauthorized", ended_by="jdoe", ended_at=now, changed_at=now, version=2)
    device.set(1, ended, "deauthorized", end_activities=True)
    end_task = lab_device.tasks.get("RemoteSupport-EndRemoteControl")
    deadline = time.monotonic() + 5
    while end_task.runs < 1:
        assert time.monotonic() < deadline, "RemoteSupport-EndRemoteControl was not started"
        time.sleep(0.05)

    device.set(2, dict(record, version=3), "authorized", expiry_task=True)
    lab_device.clock.advance(3601)
    while end_task.runs < 2:
        assert time.monotonic() < deadline + 5, "the expiry did not start RemoteSupport-EndRemoteControl"
        time.sleep(0.05)
    assert lab_device.registry.get(SESSION_KEY, "State") == "expired"


# --- renewal: the grant holds while the client decides -------------------------------------------------------------
def authorize_and_ask_renewal(device: SessionDevice, consent: str, timeout: int = 20) -> tuple[dict, dict]:
    """An authorized session, then a renewal of it as support_session writes one (still authorized, the renewal
    waiting, the consent route armed, the expiry kept); the user answers `consent` at once."""
    device.control.log_user_on(device.name, device.user, consent=consent, answer_after_seconds=0)
    record = request_record(device.get()["device_time"], confirmation_required=False)
    assert device.set(0, record, "authorized", expiry_task=True)["applied"]
    device.control.advance_clock(device.name, 60)  # the renewal comes later than the grant it extends
    now = device.get()["device_time"]
    renewal = dict(record, renewal_requested_by="night-job", renewal_reason="INC-4712 still broken",
                   renewal_requested_at=now, version=2, changed_by="night-job", changed_at=now,
                   confirmation_timeout_seconds=timeout)
    assert device.set(1, renewal, "requested", consent_prompt=True, expiry_task=True)["applied"]
    return record, renewal


def test_a_renewal_accepted_authorizes_again_and_the_prompt_says_it_extends(device):
    record, renewal = authorize_and_ask_renewal(device, "accept")
    session = device.wait_for_state("authorized")
    deadline = time.monotonic() + 15
    while session["renewal_requested_at"] is not None:
        assert time.monotonic() < deadline
        time.sleep(0.1)
        session = device.get()["session"]
    assert session["version"] == 3 and session["confirmed_by"] == device.user
    assert (session["requested_by"], session["reason"]) == ("night-job", "INC-4712 still broken")
    assert session["expires_at"] > record["expires_at"]
    assert device.tasks()["RemoteSupport-ExpireSession"]["triggers"][0]["start_boundary"] == session["expires_at"]
    text = device.control.prompts(device.name)[-1]["text"]
    assert " asks to extend the remote support session running on this computer." in text
    assert "On behalf of (as given by the requester): night-job\r\n" in text
    assert "the session is not extended and ends when its current authorization expires. No ends it now." in text
    assert RENEWED in [e["event_id"] for e in device.audit()]


def test_while_a_renewal_waits_the_record_stays_authorized_with_its_expiry_task(device):
    record, renewal = authorize_and_ask_renewal(device, "ignore")
    session = device.get()["session"]
    assert session == renewal and session["state"] == "authorized"
    tasks = device.tasks()
    assert tasks["RemoteSupport-ExpireSession"]["triggers"][0]["start_boundary"] == record["expires_at"]
    assert "RemoteSupport-ApplyConsent" in tasks and "RemoteSupport-ConsentPrompt" in tasks


def test_a_renewal_still_waiting_lapses_with_the_grant(device):
    record, renewal = authorize_and_ask_renewal(device, "ignore", timeout=600)
    device.control.advance_clock(device.name, 3601)
    session = device.wait_for_state("expired")
    assert session["renewal_requested_at"] is None and session["changed_by"] == "timer"
    deadline = time.monotonic() + 15
    while "RemoteSupport-ConsentPrompt" in device.tasks() or device.control.prompts(device.name)[-1]["result"] is None:
        assert time.monotonic() < deadline, device.tasks()
        time.sleep(0.1)
    assert device.control.prompts(device.name)[-1]["result"] == "closed"


# --- the requester's words ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("field, value", [
    ("reason", "Your PC is infected.\r\n\r\nYour manager already approved this; press Yes."),
    ("requested_by", "Microsoft Security Team\u202e(verified)"),
    ("reason", "x" * 301),
    ("reason", "   "),
])
def test_free_text_with_control_characters_too_long_or_blank_is_refused(device, field, value):
    record = dict(request_record(device.get()["device_time"]), **{field: value})
    with pytest.raises(jsonschema.ValidationError):
        device.set(0, record, "requested", consent_prompt=True)
    # A caller that skips the contract is refused on the device (by the contract's validation, or the script's own
    # check for what a schema cannot say), and nothing is stored.
    outcome = device.run_raw("set_support_session", set_input(0, record, "requested", consent_prompt=True))
    assert outcome.exit_code == 1 and re.search(rf"session[./]{field}".encode(), outcome.stderr), outcome.stderr
    assert device.stored() == {} and device.control.prompts(device.name) == []


@pytest.mark.parametrize("logon, name", [("CONTOSO\\svc-support", "CONTOSO\\svc-support"),
                                         ("DESK-0001\\labadmin", "DESK-0001\\labadmin"),
                                         ("svc-support@contoso.com", "CONTOSO\\svc-support")])
def test_a_command_runs_as_windows_names_the_account_that_authenticated(logon, name):
    # WindowsIdentity.Name is DOMAIN\name even for a logon given as a user principal name.
    assert windows_account_name(logon) == name
