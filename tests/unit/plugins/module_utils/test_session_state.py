# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The session state machine, with the clock injected: every transition, every illegal one, every cell of the
allowed-actions table, the expiry boundaries, renewal, the record's serialisation, and a property-based test over
random histories."""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import os
import re

import hypothesis
import hypothesis.strategies as st
import pytest

from ansible_collections.remote_support.windows.plugins.module_utils import session_state, session_state_docs
from ansible_collections.remote_support.windows.plugins.module_utils.session_state import (
    IllegalTransition, InvalidSessionRecord, SessionConflict, SessionRecord)

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
SPECIALIST = "alice"
CLIENT = "DESK-0001\\bob"

# The allowed-actions table as the product defines it (docs/session-states.md shows it), written out again here on
# purpose: the tests check the code against the product, not against the code's own table.
PRODUCT_TABLE = {
    #                       remote_control, file_transfer, request_authorization, deauthorize
    "unavailable": (False, False, False, True),  # deauthorize only while the device answers (idle)
    "not_authorized": (False, False, True, False),
    "pending_confirmation": (False, False, False, True),
    "authorized": (True, True, True, True),
    "denied": (False, False, True, False),
    "timed_out": (False, False, True, False),
    "expired": (False, False, True, False),
    "deauthorized": (False, False, True, False),
}
ACTIONS = ("remote_control", "file_transfer", "request_authorization", "deauthorize")


def at(seconds):
    return NOW + datetime.timedelta(seconds=seconds)


def pending(confirmation_timeout_seconds=300, ttl_seconds=3600):
    return session_state.request(None, NOW, requested_by=SPECIALIST, reason="printer queue stuck",
                                 ttl_seconds=ttl_seconds, confirmation_timeout_seconds=confirmation_timeout_seconds,
                                 session_id="session-1")


def authorized(ttl_seconds=3600):
    return session_state.accept(pending(ttl_seconds=ttl_seconds), at(10), confirmed_by=CLIENT)


# One record in each stored state, each made by the transitions themselves; a device without a record is
# not_authorized. Each is checked one second after its last change, while it is still in that state.
RECORD_IN_STATE = {
    "not_authorized": lambda: None,
    "pending_confirmation": pending,
    "authorized": authorized,
    "denied": lambda: session_state.deny(pending(), at(10), confirmed_by=CLIENT),
    "timed_out": lambda: session_state.time_out(pending(), at(300)),
    "expired": lambda: session_state.expire(authorized(), at(3610)),
    "deauthorized": lambda: session_state.deauthorize(authorized(), at(20), ended_by="carol").record,
}


def moment_in(record):
    return at(1) if record is None else record.changed_at + datetime.timedelta(seconds=1)


# ---------------------------------------------------------------------------------------------------------------------
# The data itself


def test_the_tables_name_only_known_states_events_and_actions():
    assert set(session_state.ALLOWED_ACTIONS) == set(session_state.STATES)
    for (source, event), target in session_state.TRANSITIONS.items():
        assert source in session_state.STATES and target in session_state.STATES
        assert event in session_state.EVENTS
    for allowed in session_state.ALLOWED_ACTIONS.values():
        assert allowed <= set(session_state.ACTIONS)
    # unavailable is derived, never a source or target of a stored transition.
    assert all("unavailable" not in (source, target)
               for (source, event), target in session_state.TRANSITIONS.items())


def test_the_allowed_actions_table_is_the_products():
    for state, row in PRODUCT_TABLE.items():
        assert session_state.ALLOWED_ACTIONS[state] == {a for a, allowed in zip(ACTIONS, row) if allowed}, state


@pytest.mark.parametrize("state", session_state.STATES)
def test_request_and_deauthorize_are_allowed_exactly_where_a_transition_exists(state):
    requestable = (state, "request_with_confirmation") in session_state.TRANSITIONS
    assert requestable == ((state, "request_without_confirmation") in session_state.TRANSITIONS)
    assert requestable == ("request_authorization" in session_state.ALLOWED_ACTIONS[state])
    endable = any((state, event) in session_state.TRANSITIONS for event in ("cancel", "deauthorize"))
    if state == "unavailable":
        # Derived, never stored: deauthorizing a device that answers acts on the record's own state.
        assert "deauthorize" in session_state.ALLOWED_ACTIONS[state]
        return
    assert endable == ("deauthorize" in session_state.ALLOWED_ACTIONS[state])


def test_every_state_is_reachable_from_no_record():
    reached, frontier = {"not_authorized"}, ["not_authorized"]
    while frontier:
        source = frontier.pop()
        for (state, event), target in session_state.TRANSITIONS.items():
            if state == source and target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(session_state.STATES) - {"unavailable"}


# ---------------------------------------------------------------------------------------------------------------------
# Every cell of the allowed-actions table: stored state x action x device active x Windows


def expected_refusal(state, action, device_active, is_windows):
    """A phrase the refusal must contain, in the product's words, or None when the action is allowed."""
    if not device_active:
        return "Unable to connect to the device"
    if action == "file_transfer" and not is_windows:
        return "only on Windows"
    if PRODUCT_TABLE[state][ACTIONS.index(action)]:
        return None
    if action == "deauthorize":
        return f"no pending or authorized session to deauthorize (the session is {state})"
    if state == "pending_confirmation" and action == "request_authorization":
        return "already waiting for the client to confirm (requested by alice at 2026-11-24T12:00:00Z)"
    return {
        "not_authorized": "not authorized; request authorization first",
        "pending_confirmation": "waiting for the client to confirm (requested by alice at 2026-11-24T12:00:00Z)",
        "denied": "The client (DESK-0001\\bob) denied the session at 2026-11-24T12:00:10Z; request authorization again",
        "timed_out": "did not answer before 2026-11-24T12:05:00Z; request authorization again",
        "expired": "authorization expired at 2026-11-24T13:00:10Z; request authorization again",
        "deauthorized": "ended by carol at 2026-11-24T12:00:20Z; request authorization again",
    }[state]


@pytest.mark.parametrize("is_windows", [True, False], ids=["windows", "not_windows"])
@pytest.mark.parametrize("device_active", [True, False], ids=["active", "inactive"])
@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("state", list(RECORD_IN_STATE))
def test_every_cell_of_the_allowed_actions_table(state, action, device_active, is_windows):
    record = RECORD_IN_STATE[state]()
    decision = session_state.decide(action, record, moment_in(record), device_active, is_windows)
    refusal = expected_refusal(state, action, device_active, is_windows)
    assert decision.state == (state if device_active else "unavailable")
    assert decision.allowed is (refusal is None)
    if refusal is None:
        assert decision.message == ""
    else:
        assert refusal in decision.message
    if not device_active:
        assert decision.message == "Unable to connect to the device"  # the product's words, exactly


@pytest.mark.parametrize("state", list(RECORD_IN_STATE))
def test_allowed_actions_lists_the_allowed_ones_in_order(state):
    record = RECORD_IN_STATE[state]()
    expected = [action for action, allowed in zip(ACTIONS, PRODUCT_TABLE[state]) if allowed]
    assert session_state.allowed_actions(record, moment_in(record), device_active=True) == expected
    assert session_state.allowed_actions(record, moment_in(record), True, is_windows=False) == [
        action for action in expected if action != "file_transfer"]
    assert session_state.allowed_actions(record, moment_in(record), device_active=False) == []


def test_an_unknown_action_is_an_error():
    with pytest.raises(ValueError, match="unknown action 'reboot'"):
        session_state.decide("reboot", None, NOW, True)


# ---------------------------------------------------------------------------------------------------------------------
# Transitions


def test_request_with_confirmation_waits_for_the_client():
    record = pending()
    assert record.state == "pending_confirmation"
    assert record.id == "session-1" and record.version == 1
    assert (record.requested_by, record.reason, record.requested_at) == (SPECIALIST, "printer queue stuck", NOW)
    assert record.confirmation_required is True
    assert record.authorized_at is None and record.expires_at is None and record.confirmed_by is None
    assert (record.changed_by, record.changed_at) == (SPECIALIST, NOW)


def test_request_defaults_to_confirmation_required_a_new_uuid_and_one_hour():
    first = session_state.request(None, NOW, reason="printer queue stuck", requested_by=SPECIALIST)
    second = session_state.request(None, NOW, reason="printer queue stuck", requested_by=SPECIALIST)
    assert first.state == "pending_confirmation"
    assert first.id != second.id and len(first.id) == 36
    assert first.ttl_seconds == 3600
    granted = session_state.accept(first, at(5), confirmed_by=CLIENT)
    assert granted.expires_at - granted.authorized_at == datetime.timedelta(seconds=3600)


@pytest.mark.parametrize("ttl_seconds", [1, 120, 3600, 86400])
def test_request_without_confirmation_is_authorized_at_once_for_the_ttl(ttl_seconds):
    record = session_state.request(None, NOW, reason="printer queue stuck",
                                   requested_by=SPECIALIST, confirmation_required=False,
                                   ttl_seconds=ttl_seconds)
    assert record.state == "authorized"
    assert record.authorized_at == NOW
    assert record.expires_at - record.authorized_at == datetime.timedelta(seconds=ttl_seconds)
    assert record.confirmed_by is None


@pytest.mark.parametrize("bad", [{"ttl_seconds": 0}, {"confirmation_timeout_seconds": -1}, {"requested_by": ""},
                                 {"reason": ""}, {"reason": " \r\n\t\u200b "}, {"requested_by": "\x00\x1b"},
                                 {"reason": "x" * 301}])
def test_request_refuses_settings_that_cannot_work(bad):
    arguments = {"requested_by": SPECIALIST, "reason": "printer queue stuck", **bad}
    with pytest.raises(ValueError):
        session_state.request(None, NOW, **arguments)


@pytest.mark.parametrize("ttl_seconds", [60, 3600])
def test_client_accepts_authorizes_from_the_answer_for_the_ttl(ttl_seconds):
    record = session_state.accept(pending(ttl_seconds=ttl_seconds), at(42), confirmed_by=CLIENT)
    assert record.state == "authorized"
    assert record.confirmed_by == CLIENT
    assert record.authorized_at == at(42)
    assert record.expires_at - record.authorized_at == datetime.timedelta(seconds=ttl_seconds)
    assert (record.version, record.changed_by, record.changed_at) == (2, CLIENT, at(42))
    assert record.id == "session-1"


def test_client_denies():
    record = session_state.deny(pending(), at(7), confirmed_by=CLIENT)
    assert record.state == "denied"
    assert (record.confirmed_by, record.changed_at, record.version) == (CLIENT, at(7), 2)
    assert record.authorized_at is None and record.expires_at is None


def test_confirmation_times_out():
    record = session_state.time_out(pending(), at(300))
    assert record.state == "timed_out"
    assert (record.changed_by, record.changed_at, record.version) == ("timer", at(300), 2)


def test_ttl_passes():
    record = session_state.expire(authorized(), at(3610))
    assert record.state == "expired"
    assert (record.changed_by, record.changed_at, record.version) == ("timer", at(3610), 3)
    assert record.expires_at == at(3610)  # kept, so "expired at T" can be said


def test_deauthorize_while_pending_cancels_the_request():
    change = session_state.deauthorize(pending(), at(30), ended_by="carol")
    assert change.changed is True and "Cancelled the pending request" in change.message
    assert change.record.state == "deauthorized"
    assert (change.record.ended_by, change.record.ended_at, change.record.version) == ("carol", at(30), 2)


def test_deauthorize_while_authorized_ends_the_session():
    change = session_state.deauthorize(authorized(), at(30), ended_by="carol")
    assert change.changed is True and "Ended the authorization" in change.message
    assert change.record.state == "deauthorized"
    assert (change.record.ended_by, change.record.ended_at, change.record.changed_by) == ("carol", at(30), "carol")
    assert session_state.allowed_actions(change.record, at(31), True) == ["request_authorization"]


@pytest.mark.parametrize("state", ["not_authorized", "denied", "timed_out", "expired", "deauthorized"])
def test_deauthorize_changes_nothing_when_nothing_is_pending_or_authorized(state):
    record = RECORD_IN_STATE[state]()
    change = session_state.deauthorize(record, moment_in(record), ended_by="carol")
    assert change.changed is False
    assert change.record is record
    assert f"Nothing to deauthorize: the session is {state}" == change.message


def test_deauthorize_after_the_clock_lapsed_the_grant_changes_nothing():
    record = authorized()
    change = session_state.deauthorize(record, at(3610), ended_by="carol")
    assert change.changed is False and change.record is record
    assert "the session is expired" in change.message


@pytest.mark.parametrize("state", ["denied", "timed_out", "expired", "deauthorized"])
@pytest.mark.parametrize("confirmation_required", [True, False])
def test_a_request_after_a_finished_session_starts_a_new_session(state, confirmation_required):
    record = RECORD_IN_STATE[state]()
    new = session_state.request(record, moment_in(record), requested_by="dave", reason="again",
                                confirmation_required=confirmation_required, session_id="session-2")
    assert new.id == "session-2"
    assert new.state == ("pending_confirmation" if confirmation_required else "authorized")
    assert new.version == record.version + 1
    assert (new.requested_by, new.reason, new.changed_by) == ("dave", "again", "dave")
    assert new.ended_by is None and new.ended_at is None and new.confirmed_by is None


def test_transitions_never_change_the_record_they_are_given():
    record = authorized()
    before = record.to_dict()
    session_state.deauthorize(record, at(20), ended_by="carol")
    session_state.expire(record, at(3610))
    session_state.request(record, at(3500), reason="printer queue stuck", requested_by=SPECIALIST)
    session_state.settle(record, at(99999))
    assert record.to_dict() == before
    with pytest.raises(AttributeError):
        record.state = "expired"


# Every (state, event) pair the table does not list, driven through the function for that event.
EVENT_FUNCTIONS = {
    "request_with_confirmation": lambda record, now: session_state.request(
        record, now, reason="printer queue stuck", requested_by=SPECIALIST, confirmation_required=True),
    "request_without_confirmation": lambda record, now: session_state.request(
        record, now, reason="printer queue stuck", requested_by=SPECIALIST, confirmation_required=False),
    "client_accepts": lambda record, now: session_state.accept(record, now, confirmed_by=CLIENT),
    "client_denies": lambda record, now: session_state.deny(record, now, confirmed_by=CLIENT),
    "confirmation_times_out": session_state.time_out,
    "ttl_passes": session_state.expire,
}
ILLEGAL = [(state, event) for state, event in itertools.product(RECORD_IN_STATE, EVENT_FUNCTIONS)
           if (state, event) not in session_state.TRANSITIONS]


def test_the_illegal_pairs_are_the_ones_the_product_forbids():
    assert ("pending_confirmation", "request_with_confirmation") in ILLEGAL  # no (already pending)
    assert ("timed_out", "client_accepts") in ILLEGAL  # a late answer
    assert ("expired", "ttl_passes") in ILLEGAL
    assert len(ILLEGAL) == 7 * 6 - 19


@pytest.mark.parametrize("event", ["client_accepts", "client_denies", "confirmation_times_out"])
def test_an_answer_needs_a_question_waiting(event):
    # authorized -> client_accepts etc. exist for a renewal only; with none waiting they are illegal.
    record = authorized()
    with pytest.raises(IllegalTransition, match="no renewal waiting"):
        EVENT_FUNCTIONS[event](record, at(20))


@pytest.mark.parametrize("state, event", ILLEGAL)
def test_every_illegal_transition_raises_naming_state_and_event(state, event):
    record = RECORD_IN_STATE[state]()
    with pytest.raises(IllegalTransition) as raised:
        EVENT_FUNCTIONS[event](record, moment_in(record))
    assert (raised.value.state, raised.value.event) == (state, event)
    assert str(raised.value) == f"event {event!r} is not allowed in state {state!r}"


def test_an_answer_after_the_confirmation_deadline_is_refused_as_timed_out():
    with pytest.raises(IllegalTransition, match="'client_accepts' is not allowed in state 'timed_out'"):
        session_state.accept(pending(confirmation_timeout_seconds=300), at(300), confirmed_by=CLIENT)
    assert session_state.accept(pending(confirmation_timeout_seconds=300), at(299), confirmed_by=CLIENT).state == (
        "authorized")


# ---------------------------------------------------------------------------------------------------------------------
# The clock: expiry, the confirmation deadline, remaining seconds


def test_expiry_happens_at_exactly_expires_at():
    record = authorized()  # expires at 13:00:10
    assert record.expires_at == at(3610)
    assert session_state.effective_state(record, at(3609)) == "authorized"
    assert session_state.remaining_seconds(record, at(3609)) == 1
    assert session_state.decide("remote_control", record, at(3609), True).allowed is True

    assert session_state.effective_state(record, at(3610)) == "expired"
    assert session_state.remaining_seconds(record, at(3610)) == 0
    decision = session_state.decide("remote_control", record, at(3610), True)
    assert decision == session_state.Decision(
        False, "expired", "The session's authorization expired at 2026-11-24T13:00:10Z; request authorization again")
    assert session_state.allowed_actions(record, at(3610), True) == ["request_authorization"]
    assert session_state.effective_state(record, at(10 ** 7)) == "expired"


def test_sub_second_clocks_are_truncated_to_the_records_resolution():
    record = authorized()
    just_before = at(3609) + datetime.timedelta(microseconds=999999)
    assert session_state.effective_state(record, just_before) == "authorized"
    assert session_state.remaining_seconds(record, just_before) == 1


def test_the_pending_request_times_out_at_exactly_its_deadline():
    record = pending(confirmation_timeout_seconds=120)
    assert session_state.effective_state(record, at(119)) == "pending_confirmation"
    assert session_state.effective_state(record, at(120)) == "timed_out"
    assert "did not answer before 2026-11-24T12:02:00Z" in session_state.decide(
        "remote_control", record, at(120), True).message


def test_settle_writes_the_lapse_at_the_deadline_and_nothing_otherwise():
    record = authorized()
    assert session_state.settle(record, at(3609)) is record
    lapsed = session_state.settle(record, at(5000))
    assert (lapsed.state, lapsed.version, lapsed.changed_by, lapsed.changed_at) == ("expired", 3, "timer", at(3610))
    timed_out = session_state.settle(pending(), at(5000))
    assert (timed_out.state, timed_out.changed_at) == ("timed_out", at(300))
    assert session_state.settle(None, NOW) is None


def test_remaining_seconds():
    assert session_state.remaining_seconds(None, NOW) == 0
    assert session_state.remaining_seconds(pending(), at(5)) == 0
    assert session_state.remaining_seconds(authorized(), at(10)) == 3600
    assert session_state.remaining_seconds(authorized(), at(1810)) == 1800


def test_the_clock_must_say_its_time_zone_and_is_read_as_utc():
    with pytest.raises(ValueError, match="timezone-aware"):
        session_state.effective_state(None, datetime.datetime(2026, 11, 24, 12, 0, 0))
    two_hours_east = datetime.timezone(datetime.timedelta(hours=2))
    record = session_state.request(None, datetime.datetime(2026, 11, 24, 14, 0, 0, 500, tzinfo=two_hours_east),
                                   reason="printer queue stuck", requested_by=SPECIALIST)
    assert record.requested_at == NOW and record.to_dict()["requested_at"] == "2026-11-24T12:00:00Z"


# ---------------------------------------------------------------------------------------------------------------------
# Renewal: support_session state=authorized


def test_renew_keeps_an_authorization_with_more_than_renew_before_left():
    record = authorized()  # expires at +3610
    change = session_state.renew(record, at(3610 - 601), reason="printer queue stuck",
                                 requested_by=SPECIALIST, renew_before=600)
    assert change.changed is False
    assert change.record is record
    assert change.message == "Kept the authorization: 601 s left, more than renew_before (600 s)"


@pytest.mark.parametrize("seconds_left", [600, 599, 1])
def test_renew_inside_renew_before_asks_the_client_again(seconds_left):
    record = authorized()
    now = at(3610 - seconds_left)
    change = session_state.renew(record, now, requested_by="scheduler", reason="nightly job", renew_before=600)
    assert change.changed is True
    # The current authorization stays in force while the client decides.
    assert change.record.state == "authorized" and change.record.renewal_pending
    assert change.record.expires_at == record.expires_at and change.record.authorized_at == record.authorized_at
    assert change.record.id == record.id  # the same session goes on
    assert change.record.version == record.version + 1
    assert (change.record.renewal_requested_by, change.record.renewal_reason,
            change.record.renewal_requested_at) == ("scheduler", "nightly job", now)
    assert (change.record.requested_by, change.record.requested_at) == (SPECIALIST, NOW)
    assert change.message == (f"Asked the client to renew the authorization ({seconds_left} s were left); the "
                              "current authorization holds until 2026-11-24T13:00:10Z meanwhile")


def test_renew_without_confirmation_extends_the_grant_from_now():
    record = authorized()
    change = session_state.renew(record, at(3500), reason="printer queue stuck",
                                 requested_by="scheduler", confirmation_required=False,
                                 ttl_seconds=3600, renew_before=600)
    assert change.changed is True
    assert change.record.state == "authorized" and change.record.id == record.id
    assert change.record.authorized_at == at(3500)
    assert change.record.expires_at == at(3500 + 3600)
    assert change.message == "Renewed the authorization (110 s were left): authorized until 2026-11-24T13:58:20Z"


def test_renew_leaves_a_pending_request_to_its_answer():
    record = pending()
    change = session_state.renew(record, at(5), reason="printer queue stuck", requested_by=SPECIALIST)
    assert change.changed is False and change.record is record
    assert "waiting for the client to confirm" in change.message


@pytest.mark.parametrize("state", ["not_authorized", "denied", "timed_out", "expired", "deauthorized"])
def test_renew_requests_authorization_in_every_other_state(state):
    record = RECORD_IN_STATE[state]()
    change = session_state.renew(record, moment_in(record), reason="printer queue stuck",
                                 requested_by=SPECIALIST, session_id="session-9")
    assert change.changed is True
    assert change.record.state == "pending_confirmation" and change.record.id == "session-9"
    assert change.message == "Requested authorization: waiting for the client to confirm"


def test_renew_after_the_clock_lapsed_the_grant_starts_a_new_session():
    change = session_state.renew(authorized(), at(4000), reason="printer queue stuck",
                                 requested_by=SPECIALIST, session_id="session-2")
    assert change.changed is True and change.record.id == "session-2"
    assert change.record.version == 4  # request 1, accept 2, lapse 3, new request 4


def test_renew_before_cannot_be_negative():
    with pytest.raises(ValueError, match="renew_before"):
        session_state.renew(None, NOW, reason="printer queue stuck", requested_by=SPECIALIST, renew_before=-1)


# ---------------------------------------------------------------------------------------------------------------------
# The record as stored


def test_the_record_serialises_to_plain_values_with_utc_timestamps():
    assert authorized().to_dict() == {
        "id": "session-1", "state": "authorized", "requested_by": SPECIALIST, "reason": "printer queue stuck",
        "requested_at": "2026-11-24T12:00:00Z", "confirmation_required": True, "confirmed_by": CLIENT,
        "authorized_at": "2026-11-24T12:00:10Z", "expires_at": "2026-11-24T13:00:10Z", "ended_by": None,
        "ended_at": None, "version": 2, "ttl_seconds": 3600, "confirmation_timeout_seconds": 300,
        "changed_by": CLIENT, "changed_at": "2026-11-24T12:00:10Z", "renewal_requested_by": None,
        "renewal_reason": None, "renewal_requested_at": None,
    }


@pytest.mark.parametrize("state", [state for state in RECORD_IN_STATE if state != "not_authorized"])
def test_every_stored_state_survives_a_round_trip(state):
    record = RECORD_IN_STATE[state]()
    assert SessionRecord.from_dict(record.to_dict()) == record


@pytest.mark.parametrize("change, complaint", [
    ({"state": "not_authorized"}, "unknown state 'not_authorized'"),
    ({"state": "unavailable"}, "unknown state 'unavailable'"),
    ({"expires_at": "tomorrow"}, "'expires_at' is 'tomorrow', not a YYYY-MM-DDTHH:MM:SSZ timestamp"),
    ({"expires_at": None}, "authorized session record has no expires_at"),
    ({"version": "2"}, "'version' must be a whole number"),
    ({"version": True}, "'version' must be a whole number"),
    ({"confirmation_required": "yes"}, "confirmation_required must be true or false"),
    ({"requested_by": None}, "'requested_by' is empty"),
])
def test_a_broken_record_is_named_not_guessed(change, complaint):
    data = {**authorized().to_dict(), **change}
    with pytest.raises(InvalidSessionRecord, match=re.escape(complaint)):
        SessionRecord.from_dict(data)


def test_a_record_missing_a_field_names_it_and_unknown_fields_are_ignored():
    data = authorized().to_dict()
    del data["changed_by"]
    with pytest.raises(InvalidSessionRecord, match="has no 'changed_by'"):
        SessionRecord.from_dict(data)
    assert SessionRecord.from_dict({**authorized().to_dict(), "written_by_a_newer_version": 1}) == authorized()


# ---------------------------------------------------------------------------------------------------------------------
# Compare-and-set vocabulary


def test_check_version_passes_when_nobody_changed_the_record():
    session_state.check_version(2, authorized())
    session_state.check_version(0, None)  # a device without a record is version 0


def test_check_version_says_who_changed_the_record_and_when():
    read = authorized()
    current = session_state.deauthorize(read, at(20), ended_by="carol").record
    with pytest.raises(SessionConflict) as raised:
        session_state.check_version(read.version, current)
    assert "session session-1 was changed by carol at 2026-11-24T12:00:20Z" in str(raised.value)
    assert (raised.value.expected_version, raised.value.current_version) == (2, 3)
    assert (raised.value.changed_by, raised.value.changed_at) == ("carol", "2026-11-24T12:00:20Z")


def test_check_version_when_the_record_appeared_or_vanished():
    with pytest.raises(SessionConflict, match="changed by alice at 2026-11-24T12:00:00Z"):
        session_state.check_version(0, pending())
    with pytest.raises(SessionConflict, match="removed"):
        session_state.check_version(3, None)


# ---------------------------------------------------------------------------------------------------------------------
# The generated page


DOCS_PAGE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "docs", "session-states.md")


def test_the_docs_page_is_rendered_from_the_data():
    with open(DOCS_PAGE, encoding="utf-8") as page:
        written = page.read()
    assert written == session_state_docs.render_session_states_markdown(), (
        "docs/session-states.md differs from the state machine's data in plugins/module_utils/session_state.py; "
        "regenerate it with: scripts/render-session-states")


def test_the_diagram_has_every_transition_and_the_derived_state():
    diagram = session_state_docs.render_mermaid()
    assert diagram.startswith("stateDiagram-v2\n")
    for (source, event), target in session_state.TRANSITIONS.items():
        label = session_state_docs.TRANSITION_LABELS.get((source, event), event)
        assert label.startswith(event)
        assert f"    {source} --> {target} : {label}\n" in diagram
    assert "note right of unavailable" in diagram
    assert ";" not in diagram  # Mermaid would split a statement there


def test_the_table_renders_the_products_remarks():
    table = session_state_docs.render_allowed_actions_table()
    assert "| `pending_confirmation` | request sent, waiting for the client | no | no | no (already pending) | " \
           "yes (cancels) |" in table
    assert "| yes | yes (Windows only) | yes (renews) | yes |" in table


# ---------------------------------------------------------------------------------------------------------------------
# Property: over any history, remote control and file transfer start only inside authorized-and-unexpired


SECONDS = st.one_of(st.integers(-5, 5), st.integers(-3600, 7200), st.integers(-30 * 86400, 365 * 86400))
OPERATIONS = st.one_of(
    st.tuples(st.just("request"), st.booleans(), st.integers(1, 7200)),
    st.tuples(st.just("renew"), st.booleans(), st.integers(0, 7200)),
    st.tuples(st.sampled_from(["accept", "deny", "time_out", "expire", "deauthorize"])),
    st.tuples(st.just("device_active"), st.booleans()),
    st.tuples(st.just("clock"), SECONDS),
)

# The event each operation attempts, and whether the machine checks it against the settled state (as the client's
# answers are) or the stored one (the lapses the device writes itself).
OPERATION_EVENT = {"accept": ("client_accepts", True), "deny": ("client_denies", True),
                   "time_out": ("confirmation_times_out", False), "expire": ("ttl_passes", False)}


class SimulatedDevice:
    """One device's stored record, its clock and whether it is active, driven the way the modules drive it."""

    def __init__(self):
        self.record = None
        self.before = None
        self.now = NOW
        self.active = True
        self.denied_at = None  # the client said no, and nothing was granted since

    def apply(self, operation):
        self.before = self.record
        name = operation[0]
        if name == "clock":
            self.now += datetime.timedelta(seconds=operation[1])
        elif name == "device_active":
            self.active = operation[1]
        elif name == "request":
            self.request(confirmation_required=operation[1], ttl_seconds=operation[2])
        elif name == "renew":
            if self.active:
                self.record = session_state.renew(self.record, self.now, reason="printer queue stuck",
                                                  requested_by=SPECIALIST,
                                                  confirmation_required=operation[1],
                                                  renew_before=operation[2]).record
        elif name == "deauthorize":
            # Revoking needs the device to answer, active or idle.
            if session_state.decide("deauthorize", self.record, self.now, self.active, connection_valid=True).allowed:
                self.record = session_state.deauthorize(self.record, self.now, ended_by="carol").record
            else:
                assert not session_state.deauthorize(self.record, self.now, ended_by="carol").changed
        else:
            self.answer_or_lapse(name)
        self.track_denial(name)

    def track_denial(self, name):
        """Since when the client's last answer was no, until a new grant (accept, or a request granted at once)."""
        if self.record is None or self.record is self.before:
            return
        if self.record.state == "denied" and name == "deny":
            self.denied_at = self.now
        elif self.record.state == "authorized" and (
                getattr(self.before, "state", None) != "authorized"
                or self.record.authorized_at != self.before.authorized_at):
            # A grant after a denial may carry the same second as the denied one (a request granted at once).
            self.denied_at = None

    def request(self, confirmation_required, ttl_seconds):
        decision = session_state.decide("request_authorization", self.record, self.now, self.active)
        if decision.allowed:
            self.record = session_state.request(self.record, self.now, reason="printer queue stuck",
                                                requested_by=SPECIALIST,
                                                confirmation_required=confirmation_required,
                                                ttl_seconds=ttl_seconds)
        elif decision.state == "pending_confirmation":
            with pytest.raises(IllegalTransition):
                session_state.request(self.record, self.now, reason="printer queue stuck", requested_by=SPECIALIST)

    def answer_or_lapse(self, name):
        event, settles_first = OPERATION_EVENT[name]
        state_checked = (session_state.effective_state(self.record, self.now) if settles_first
                         else ("not_authorized" if self.record is None else self.record.state))
        functions = {"accept": lambda: session_state.accept(self.record, self.now, confirmed_by=CLIENT),
                     "deny": lambda: session_state.deny(self.record, self.now, confirmed_by=CLIENT),
                     "time_out": lambda: session_state.time_out(self.record, self.now),
                     "expire": lambda: session_state.expire(self.record, self.now)}
        settled = session_state.settle(self.record, self.now) if settles_first else self.record
        # From authorized an answer or a time-out exists only for a renewal waiting for the client.
        question = state_checked != "authorized" or name == "expire" or settled.renewal_pending
        if (state_checked, event) in session_state.TRANSITIONS and question:
            self.record = functions[name]()
        else:
            with pytest.raises(IllegalTransition):
                functions[name]()


def authorized_and_unexpired(device):
    """Written from the record's fields, not with the machine's own functions."""
    record = device.record
    return record is not None and record.state == "authorized" and device.now.replace(microsecond=0) < (
        record.expires_at)


def check_invariants(device, record_before):
    for action in ("remote_control", "file_transfer"):
        for is_windows in (True, False):
            decision = session_state.decide(action, device.record, device.now, device.active, is_windows)
            if decision.allowed:
                assert device.active and authorized_and_unexpired(device), (action, device.record, device.now)
                assert is_windows or action != "file_transfer"
    # And the converse, so the property cannot pass by refusing everything.
    if device.active and authorized_and_unexpired(device):
        assert session_state.decide("remote_control", device.record, device.now, True).allowed
    if device.record is not record_before:
        assert device.record.version > (0 if record_before is None else record_before.version)
    if device.denied_at is not None:
        # Once the client said no, nothing hangs on the session until something is granted again: not remote
        # control, not a transfer, however the clock moves or who asks.
        for action in ("remote_control", "file_transfer"):
            assert not session_state.decide(action, device.record, device.now, True).allowed, (action, device.record)
        assert device.record.state != "authorized" or device.record.authorized_at > device.denied_at
    if device.record is not None:
        assert SessionRecord.from_dict(device.record.to_dict()) == device.record
        if device.record.state == "authorized":
            assert device.record.expires_at - device.record.authorized_at == datetime.timedelta(
                seconds=device.record.ttl_seconds)


@hypothesis.settings(max_examples=400, deadline=None, database=None)
@hypothesis.given(st.lists(OPERATIONS, max_size=40))
def test_remote_control_is_never_possible_after_a_denial(operations):
    """The same histories, with renewals asked on authorized sessions among them: from a client's no (of a first
    request or of a renewal while the grant held) until a new grant, remote control is refused (check_invariants)."""
    device = SimulatedDevice()
    denials = 0
    for operation in operations:
        record_before = device.record
        device.apply(operation)
        denials += device.denied_at is not None
        check_invariants(device, record_before)
    hypothesis.target(float(denials))


@hypothesis.settings(max_examples=400, deadline=None, database=None)
@hypothesis.given(st.lists(OPERATIONS, max_size=40))
def test_remote_control_and_file_transfer_start_only_while_authorized_and_unexpired(operations):
    device = SimulatedDevice()
    for operation in operations:
        record_before = device.record
        device.apply(operation)
        check_invariants(device, record_before)


# ---------------------------------------------------------------------------------------------------------------------
# Renewal while authorized: the grant holds while the client decides; no ends it at once; silence lets it run out


def renewal_waiting(seconds_left=500, confirmation_timeout_seconds=300):
    record = authorized()  # expires at +3610, confirmation timeout 300
    record = dataclasses.replace(record, confirmation_timeout_seconds=confirmation_timeout_seconds)
    now = at(3610 - seconds_left)
    return session_state.renew(record, now, requested_by="scheduler", reason="nightly job").record, now


def test_while_a_renewal_waits_the_current_authorization_holds():
    record, asked = renewal_waiting()
    for seconds in (0, 1, 299):
        decision_time = asked + datetime.timedelta(seconds=seconds)
        assert session_state.effective_state(record, decision_time) == "authorized"
        assert session_state.allowed_actions(record, decision_time, True) == [
            "remote_control", "file_transfer", "deauthorize"]
    refusal = session_state.decide("request_authorization", record, asked, True)
    assert not refusal.allowed and refusal.message.startswith("A renewal is already waiting for the client")
    assert "holds until 2026-11-24T13:00:10Z" in refusal.message
    again = session_state.renew(record, asked, requested_by="other", reason="again")
    assert again.changed is False and again.record is record
    with pytest.raises(IllegalTransition):
        session_state.request(record, asked, requested_by="other", reason="again")


def test_a_renewal_accepted_authorizes_again_from_the_answer():
    record, asked = renewal_waiting()
    renewed = session_state.accept(record, asked + datetime.timedelta(seconds=20), confirmed_by=CLIENT)
    assert renewed.state == "authorized" and not renewed.renewal_pending
    assert renewed.authorized_at == asked + datetime.timedelta(seconds=20)
    assert renewed.expires_at == renewed.authorized_at + datetime.timedelta(seconds=3600)
    assert (renewed.requested_by, renewed.reason, renewed.requested_at) == ("scheduler", "nightly job", asked)
    assert renewed.id == record.id and renewed.version == record.version + 1


def test_a_renewal_denied_ends_the_session_at_once():
    record, asked = renewal_waiting()
    answered = asked + datetime.timedelta(seconds=5)
    denied = session_state.deny(record, answered, confirmed_by=CLIENT)
    assert denied.state == "denied" and not denied.renewal_pending
    assert denied.expires_at > answered  # the old expiry had not come: the no ends it anyway
    for action in ("remote_control", "file_transfer"):
        decision = session_state.decide(action, denied, answered, True)
        assert not decision.allowed and decision.state == "denied"
        assert decision.message == f"The client ({CLIENT}) denied the session at 2026-11-24T12:51:55Z; request " \
                                   "authorization again"
    assert (denied.requested_by, denied.reason) == ("scheduler", "nightly job")


def test_a_renewal_nobody_answers_lets_the_authorization_run_out_at_its_own_expiry():
    record, asked = renewal_waiting(seconds_left=500, confirmation_timeout_seconds=300)
    lapsed_renewal = asked + datetime.timedelta(seconds=300)
    settled = session_state.settle(record, lapsed_renewal)
    assert settled.state == "authorized" and not settled.renewal_pending
    assert (settled.changed_by, settled.changed_at, settled.expires_at) == ("timer", lapsed_renewal,
                                                                            record.expires_at)
    assert session_state.decide("remote_control", record, at(3609), True).allowed
    assert session_state.decide("request_authorization", record, lapsed_renewal, True).allowed
    at_expiry = session_state.settle(record, at(3610))
    assert at_expiry.state == "expired" and at_expiry.changed_at == at(3610)
    assert not session_state.decide("remote_control", record, at(3610), True).allowed
    # A device-side time-out writes the same.
    assert session_state.time_out(record, lapsed_renewal) == settled


def test_a_renewal_never_outlives_the_authorization_it_would_extend():
    record, asked = renewal_waiting(seconds_left=100, confirmation_timeout_seconds=300)
    assert record.renewal_deadline == record.expires_at == at(3610)
    assert session_state.effective_state(record, at(3609)) == "authorized"
    expired = session_state.settle(record, at(3610))
    assert expired.state == "expired" and not expired.renewal_pending
    with pytest.raises(IllegalTransition):
        session_state.accept(record, at(3611), confirmed_by=CLIENT)


def test_deauthorize_ends_an_authorization_with_a_renewal_waiting():
    record, asked = renewal_waiting()
    change = session_state.deauthorize(record, asked, ended_by="carol")
    assert change.changed and change.record.state == "deauthorized" and not change.record.renewal_pending


def test_a_record_written_before_renewals_were_kept_still_reads():
    stored = authorized().to_dict()
    for field in ("renewal_requested_by", "renewal_reason", "renewal_requested_at"):
        del stored[field]
    assert SessionRecord.from_dict(stored) == authorized()


# ---------------------------------------------------------------------------------------------------------------------
# Revoking on an idle device that still answers


@pytest.mark.parametrize("state", ["pending_confirmation", "authorized"])
def test_deauthorize_is_allowed_on_an_idle_device_that_answers(state):
    record = RECORD_IN_STATE[state]()
    now = moment_in(record)
    decision = session_state.decide("deauthorize", record, now, device_active=False, connection_valid=True)
    assert decision.allowed and decision.state == "unavailable"
    assert session_state.allowed_actions(record, now, False, connection_valid=True) == ["deauthorize"]
    unreachable = session_state.decide("deauthorize", record, now, device_active=False, connection_valid=False)
    assert not unreachable.allowed and unreachable.message == "Unable to connect to the device"
    for action in ("remote_control", "file_transfer", "request_authorization"):
        assert not session_state.decide(action, record, now, device_active=False, connection_valid=True).allowed


@pytest.mark.parametrize("state", ["not_authorized", "denied", "expired", "deauthorized"])
def test_deauthorize_on_an_idle_device_with_nothing_to_end_says_so(state):
    record = RECORD_IN_STATE[state]()
    decision = session_state.decide("deauthorize", record, moment_in(record), False, connection_valid=True)
    assert not decision.allowed
    assert decision.message == f"There is no pending or authorized session to deauthorize (the session is {state})"


# ---------------------------------------------------------------------------------------------------------------------
# Free text


@pytest.mark.parametrize("given, stored", [
    ("INC-4711: Outlook crashes", "INC-4711: Outlook crashes"),
    ("Your PC is infected.\r\n\r\n\r\nYour manager approved this; press Yes.",
     "Your PC is infected. Your manager approved this; press Yes."),
    ("Microsoft\u202eSecurity\u200bTeam\x1b[31m", "Microsoft Security Team [31m"),
    ("a\u2028b\u2029c\x85d\te", "a b c d e"),
    ("  spaced   out  ", "spaced out"),
])
def test_free_text_is_stored_without_control_characters_or_line_breaks(given, stored):
    assert session_state.clean_free_text(given) == stored
    record = session_state.request(None, NOW, requested_by=given, reason=given)
    assert (record.requested_by, record.reason) == (stored, stored)


def test_free_text_has_one_length_limit():
    limit = session_state.FREE_TEXT_MAX_CHARACTERS
    assert session_state.request(None, NOW, requested_by="a", reason="x" * limit).reason == "x" * limit
    with pytest.raises(ValueError, match=f"reason is {limit + 1} characters long; at most {limit}"):
        session_state.request(None, NOW, requested_by="a", reason="x" * (limit + 1))
