# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The support session's state machine: which state a session is in, what may start now, and how a session moves.

Plain Python, no Ansible and no WinRM. Every function takes the record as the device stores it (None: no record yet)
and `now`, an aware datetime, the device's clock where it matters; it returns decisions or new records, never mutated.

- The states, events, transitions and the allowed-actions table are data (STATES, EVENTS, TRANSITIONS,
  ALLOWED_ACTIONS); session_state_docs renders docs/session-states.md from them.
- `decide(action, ...)` answers "may this action start now?" for every action; every module asks it, nothing else.
- `unavailable` is never stored: it is what any session looks like while the device is not active or the connection
  is invalid. `not_authorized` is never stored either: it is a device without a record.
- Lapses happen by the clock, not by a write (`settle` applies them): an `authorized` record past `expires_at` is
  `expired`, a `pending_confirmation` one past its deadline `timed_out`; the device, reading the same fields, agrees.
- A renewal that needs the client's consent does not suspend the authorization: the record stays `authorized` with
  the renewal waiting in its `renewal_*` fields (docs/session-states.md, "Renewal", says what each answer does).
- Every change bumps `version` and records `changed_by`/`changed_at`; writers compare-and-set on the version
  (`check_version` and `SessionConflict` are the vocabulary; the device-side scripts do the real compare-and-set).
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import typing as t
import unicodedata
import uuid

from ansible_collections.remote_support.windows.plugins.module_utils.device_info import UNABLE_TO_CONNECT, format_utc

# Where the device sets no policy, the client must confirm and a grant lasts one hour.
DEFAULT_CONFIRMATION_REQUIRED = True
DEFAULT_TTL_SECONDS = 3600
# How long a request waits for the client's answer before it is timed_out.
DEFAULT_CONFIRMATION_TIMEOUT_SECONDS = 300
# An authorization with more than this many seconds left is kept by a renewal rather than renewed.
DEFAULT_RENEW_BEFORE_SECONDS = 600

TIMER = "timer"  # who changed the record when the clock, not a person, lapsed it

# The free text a requester gives (requested_by, reason) is stored and shown to the person at the device: one limit,
# in characters after cleaning, for the record, the audit entry and the prompt alike (the prompt never cuts it).
FREE_TEXT_MAX_CHARACTERS = 300

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# ---------------------------------------------------------------------------------------------------------------------
# The state model, as data (docs/session-states.md is rendered from it).

STATES = ("unavailable", "not_authorized", "pending_confirmation", "authorized", "denied", "timed_out", "expired",
          "deauthorized")
# States a stored record can be in: 'unavailable' is derived from the device, 'not_authorized' means "no record".
RECORD_STATES = ("pending_confirmation", "authorized", "denied", "timed_out", "expired", "deauthorized")

ACTIONS = ("remote_control", "file_transfer", "request_authorization", "deauthorize")

EVENTS = (
    "request_with_confirmation",     # a specialist asks; the policy requires the client's consent
    "request_without_confirmation",  # a specialist asks; no consent needed, granted at once
    "client_accepts",
    "client_denies",
    "confirmation_times_out",        # the client did not answer before the confirmation deadline
    "ttl_passes",                    # the grant reached expires_at
    "cancel",                        # a specialist withdraws a pending request
    "deauthorize",                   # a specialist ends a granted session
)

# (state, event) -> next state. Anything not listed is an illegal transition.
TRANSITIONS: dict[tuple[str, str], str] = {
    ("not_authorized", "request_with_confirmation"): "pending_confirmation",
    ("not_authorized", "request_without_confirmation"): "authorized",
    ("pending_confirmation", "client_accepts"): "authorized",
    ("pending_confirmation", "client_denies"): "denied",
    ("pending_confirmation", "confirmation_times_out"): "timed_out",
    ("pending_confirmation", "cancel"): "deauthorized",
    # Renewal: the same session asks again. With confirmation required the client is asked while the current
    # authorization stays in force until its own expires_at: yes renews it, no ends it at once, no answer lets it
    # run out. Without confirmation it is renewed at once.
    ("authorized", "request_with_confirmation"): "authorized",
    ("authorized", "client_accepts"): "authorized",
    ("authorized", "client_denies"): "denied",
    ("authorized", "confirmation_times_out"): "authorized",
    ("authorized", "request_without_confirmation"): "authorized",
    ("authorized", "ttl_passes"): "expired",
    ("authorized", "deauthorize"): "deauthorized",
    ("denied", "request_with_confirmation"): "pending_confirmation",
    ("denied", "request_without_confirmation"): "authorized",
    ("timed_out", "request_with_confirmation"): "pending_confirmation",
    ("timed_out", "request_without_confirmation"): "authorized",
    ("expired", "request_with_confirmation"): "pending_confirmation",
    ("expired", "request_without_confirmation"): "authorized",
    ("deauthorized", "request_with_confirmation"): "pending_confirmation",
    ("deauthorized", "request_without_confirmation"): "authorized",
}

# Which actions may start in each state (docs/session-states.md). `unavailable` allows deauthorize only while the
# device answers (idle, not unreachable): revoking always works when the device can be reached.
ALLOWED_ACTIONS: dict[str, frozenset[str]] = {
    "unavailable": frozenset({"deauthorize"}),
    "not_authorized": frozenset({"request_authorization"}),
    "pending_confirmation": frozenset({"deauthorize"}),
    "authorized": frozenset({"remote_control", "file_transfer", "request_authorization", "deauthorize"}),
    "denied": frozenset({"request_authorization"}),
    "timed_out": frozenset({"request_authorization"}),
    "expired": frozenset({"request_authorization"}),
    "deauthorized": frozenset({"request_authorization"}),
}
# Allowed by the state, but only on Windows (docs/file-transfer.md).
WINDOWS_ONLY_ACTIONS = frozenset({"file_transfer"})

# Why an action may not start, per state: what happened, then what to do. {fields} come from the record.
REFUSALS = {
    "unavailable": UNABLE_TO_CONNECT,
    "not_authorized": "The session is not authorized; request authorization first",
    "pending_confirmation": "The session is waiting for the client to confirm (requested by {requested_by} at "
                            "{requested_at}); wait for the answer, or deauthorize to cancel the request",
    "denied": "The client ({confirmed_by}) denied the session at {changed_at}; request authorization again",
    "timed_out": "The client did not answer before {confirmation_deadline}; request authorization again",
    "expired": "The session's authorization expired at {expires_at}; request authorization again",
    "deauthorized": "The session was ended by {ended_by} at {ended_at}; request authorization again",
}
# Where the action itself changes what there is to say.
ACTION_REFUSALS = {
    ("pending_confirmation", "request_authorization"):
        "A request is already waiting for the client to confirm (requested by {requested_by} at {requested_at}); "
        "wait for the answer, or deauthorize to cancel it",
    **{(state, "deauthorize"): f"There is no pending or authorized session to deauthorize (the session is {state})"
       for state in ("not_authorized", "denied", "timed_out", "expired", "deauthorized")},
}
# A renewal already waiting for the client (state authorized).
RENEWAL_PENDING_REFUSAL = ("A renewal is already waiting for the client to confirm (requested by "
                           "{renewal_requested_by} at {renewal_requested_at}); the current authorization holds until "
                           "{expires_at}. Wait for the answer, or deauthorize to end the session")
WINDOWS_ONLY_REFUSAL = "File transfer is available only on Windows devices"


# ---------------------------------------------------------------------------------------------------------------------
# Errors


class IllegalTransition(Exception):
    """An event that the session's current state does not allow (for example accepting a request that timed out)."""

    def __init__(self, state: str, event: str) -> None:
        super().__init__(f"event {event!r} is not allowed in state {state!r}")
        self.state = state
        self.event = event


class SessionConflict(Exception):
    """Someone else changed the session since it was read: the compare-and-set on `version` failed."""

    def __init__(self, expected_version: int, current_record: SessionRecord | None) -> None:
        self.expected_version = expected_version
        self.current_version = 0 if current_record is None else current_record.version
        self.changed_by = None if current_record is None else current_record.changed_by
        self.changed_at = None if current_record is None else format_utc(current_record.changed_at)
        if current_record is None:
            message = (f"the session record was removed since version {expected_version} was read; "
                       "read the session again")
        else:
            message = (f"session {current_record.id} was changed by {self.changed_by} at {self.changed_at} "
                       f"(now version {self.current_version}, expected version {expected_version}); "
                       "read the session again")
        super().__init__(message)


class InvalidSessionRecord(ValueError):
    """A stored session record that cannot be read: a missing field, an unknown state, an unreadable timestamp."""


# ---------------------------------------------------------------------------------------------------------------------
# The session record


@dataclasses.dataclass(frozen=True)
class SessionRecord:
    """One device's session, as stored on the device. Timestamps are aware UTC datetimes, whole seconds."""

    id: str
    state: str
    requested_by: str
    reason: str
    requested_at: datetime.datetime
    confirmation_required: bool
    confirmed_by: str | None  # the Windows user who answered the prompt, whether accepting or denying
    authorized_at: datetime.datetime | None
    expires_at: datetime.datetime | None
    ended_by: str | None
    ended_at: datetime.datetime | None
    version: int
    # The policy at request time, so the record alone says when it lapses.
    ttl_seconds: int
    confirmation_timeout_seconds: int
    # The last change, for "changed by X at T".
    changed_by: str
    changed_at: datetime.datetime
    # A renewal waiting for the client while the session is authorized (all None when there is none).
    renewal_requested_by: str | None = None
    renewal_reason: str | None = None
    renewal_requested_at: datetime.datetime | None = None

    @property
    def confirmation_deadline(self) -> datetime.datetime:
        return self.requested_at + datetime.timedelta(seconds=self.confirmation_timeout_seconds)

    @property
    def renewal_pending(self) -> bool:
        return self.state == "authorized" and self.renewal_requested_at is not None

    @property
    def renewal_deadline(self) -> datetime.datetime | None:
        """When a waiting renewal lapses: its confirmation timeout, but never after the authorization it would
        extend (at expires_at the grant ends and the question with it)."""
        if self.renewal_requested_at is None:
            return None
        asked_until = self.renewal_requested_at + datetime.timedelta(seconds=self.confirmation_timeout_seconds)
        return asked_until if self.expires_at is None else min(asked_until, self.expires_at)

    def to_dict(self) -> dict[str, t.Any]:
        """Plain JSON-ready values; timestamps as YYYY-MM-DDTHH:MM:SSZ."""
        return {field.name: _plain(getattr(self, field.name)) for field in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: t.Mapping[str, t.Any]) -> SessionRecord:
        """Reads a stored record; raises InvalidSessionRecord naming the field that is wrong. Unknown keys are ignored."""
        values = {}
        for field in dataclasses.fields(cls):
            if field.name not in data:
                if field.name in _RENEWAL_FIELDS:  # a record written before renewals were kept in it
                    values[field.name] = None
                    continue
                raise InvalidSessionRecord(f"session record has no {field.name!r}")
            values[field.name] = _read_field(field.name, data[field.name])
        if values["state"] not in RECORD_STATES:
            raise InvalidSessionRecord(f"session record has unknown state {values['state']!r}; "
                                       f"expected one of {', '.join(RECORD_STATES)}")
        if values["state"] == "authorized" and values["expires_at"] is None:
            raise InvalidSessionRecord("authorized session record has no expires_at")
        return cls(**values)


_RENEWAL_FIELDS = frozenset({"renewal_requested_by", "renewal_reason", "renewal_requested_at"})
_NO_RENEWAL = dict.fromkeys(_RENEWAL_FIELDS)
_TIMESTAMP_FIELDS = frozenset({"requested_at", "authorized_at", "expires_at", "ended_at", "changed_at",
                               "renewal_requested_at"})
_OPTIONAL_FIELDS = frozenset({"confirmed_by", "authorized_at", "expires_at", "ended_by", "ended_at"}) | _RENEWAL_FIELDS
_INTEGER_FIELDS = frozenset({"version", "ttl_seconds", "confirmation_timeout_seconds"})


def _plain(value: t.Any) -> t.Any:
    return format_utc(value) if isinstance(value, datetime.datetime) else value


def _read_field(name: str, value: t.Any) -> t.Any:
    if value is None:
        if name in _OPTIONAL_FIELDS:
            return None
        raise InvalidSessionRecord(f"session record's {name!r} is empty")
    if name in _TIMESTAMP_FIELDS:
        return _parse_timestamp(name, value)
    if name == "confirmation_required":
        if not isinstance(value, bool):
            raise InvalidSessionRecord(f"session record's confirmation_required must be true or false, not {value!r}")
        return value
    if name in _INTEGER_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidSessionRecord(f"session record's {name!r} must be a whole number, not {value!r}")
        return value
    return str(value)


def _parse_timestamp(name: str, text: t.Any) -> datetime.datetime:
    try:
        return datetime.datetime.strptime(str(text), TIMESTAMP_FORMAT).replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        raise InvalidSessionRecord(f"session record's {name!r} is {text!r}, not a YYYY-MM-DDTHH:MM:SSZ "
                                   "timestamp") from None


# Control characters (C0, C1), format characters (bidirectional overrides, zero-width joiners) and line or paragraph
# separators: none of them belongs in a name or a one-line reason, and each can make a prompt say something other
# than what it seems to say.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
_SPACES = re.compile(r"\s+")


def clean_free_text(text: str) -> str:
    """Free text as it may be stored and shown: every control, format or line-separator character becomes a space,
    runs of white space become one space, and the ends are trimmed."""
    kept = "".join(" " if unicodedata.category(char) in _INVISIBLE_CATEGORIES else char for char in str(text))
    return _SPACES.sub(" ", kept).strip()


def check_free_text(name: str, text: str | None, *, required: bool = True) -> str:
    """`text` cleaned (clean_free_text), or ValueError saying what is wrong: blank where required, or longer than
    FREE_TEXT_MAX_CHARACTERS."""
    cleaned = clean_free_text(text or "")
    if required and not cleaned:
        raise ValueError(f"{name} must not be empty or blank: the person at the device is shown it")
    if len(cleaned) > FREE_TEXT_MAX_CHARACTERS:
        raise ValueError(f"{name} is {len(cleaned)} characters long; at most {FREE_TEXT_MAX_CHARACTERS} are stored "
                         "and shown to the person at the device. Shorten it")
    return cleaned


def _utc(now: datetime.datetime) -> datetime.datetime:
    """The injected clock as UTC in whole seconds, the resolution records are stored in."""
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime (UTC); a naive one would mix device and controller "
                         "time zones")
    return now.astimezone(datetime.timezone.utc).replace(microsecond=0)


# ---------------------------------------------------------------------------------------------------------------------
# Reading: effective state and the one question every module asks


@dataclasses.dataclass(frozen=True)
class Decision:
    """The answer to "may this action start now?". `message` is empty when allowed, and says why not otherwise."""

    allowed: bool
    state: str
    message: str


@dataclasses.dataclass(frozen=True)
class SessionChange:
    """The outcome of an idempotent transition: the record to store, whether it changed, and what happened."""

    record: SessionRecord | None
    changed: bool
    message: str


def settle(record: SessionRecord | None, now: datetime.datetime) -> SessionRecord | None:
    """The record with the lapses the clock has already caused applied: an authorization whose expires_at has come
    becomes expired, a request whose confirmation deadline has come becomes timed_out (each a new version, changed by
    TIMER at the deadline). Otherwise the record itself."""
    now = _utc(now)
    if record is None:
        return None
    if record.renewal_pending and record.renewal_deadline < record.expires_at and record.renewal_deadline <= now:
        record = time_out(record, record.renewal_deadline)  # the renewal lapsed first; the grant runs on
    if record.state == "authorized" and record.expires_at <= now:
        return expire(record, record.expires_at)
    if record.state == "pending_confirmation" and record.confirmation_deadline <= now:
        return time_out(record, record.confirmation_deadline)
    return record


def effective_state(record: SessionRecord | None, now: datetime.datetime, device_active: bool = True) -> str:
    """The session's state as every action sees it. `device_active` is False when the device is not active or the
    connection is invalid (device_info's status and connection.valid)."""
    if not device_active:
        return "unavailable"
    return _state_of(settle(record, now))


def decide(action: str, record: SessionRecord | None, now: datetime.datetime, device_active: bool,
           is_windows: bool = True, connection_valid: bool = False) -> Decision:
    """May `action` start now? The one place that answers it, for every action. `connection_valid`: the device
    answered (it may still be idle): revoking needs that and nothing more."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
    settled = settle(record, now)
    state = effective_state(settled, now, device_active)
    if state == "unavailable":
        if action in ALLOWED_ACTIONS["unavailable"] and connection_valid:
            record_state = _state_of(settled)
            if record_state in ("pending_confirmation", "authorized"):
                return Decision(True, state, "")
            return Decision(False, state, _refusal_message(action, record_state, settled))
        return Decision(False, state, REFUSALS["unavailable"])
    if action == "request_authorization" and settled is not None and settled.renewal_pending:
        return Decision(False, state, _refusal_message(action, "renewal_pending", settled))
    # Before the state: telling a non-Windows device to request authorization first would send the specialist in vain.
    if action in WINDOWS_ONLY_ACTIONS and not is_windows:
        return Decision(False, state, WINDOWS_ONLY_REFUSAL)
    if action in ALLOWED_ACTIONS[state]:
        return Decision(True, state, "")
    return Decision(False, state, _refusal_message(action, state, settled))


def allowed_actions(record: SessionRecord | None, now: datetime.datetime, device_active: bool,
                    is_windows: bool = True, connection_valid: bool = False) -> list[str]:
    """The names of the actions that may start now, in ACTIONS order."""
    return [action for action in ACTIONS
            if decide(action, record, now, device_active, is_windows, connection_valid).allowed]


def remaining_seconds(record: SessionRecord | None, now: datetime.datetime) -> int:
    """Whole seconds until the authorization expires; 0 when the session is not authorized."""
    settled = settle(record, now)
    if _state_of(settled) != "authorized":
        return 0
    return int((settled.expires_at - _utc(now)).total_seconds())


def _state_of(record: SessionRecord | None) -> str:
    return "not_authorized" if record is None else record.state


def _refusal_message(action: str, state: str, record: SessionRecord | None) -> str:
    if state == "renewal_pending":
        template = RENEWAL_PENDING_REFUSAL
    else:
        template = ACTION_REFUSALS.get((state, action), REFUSALS[state])
    fields = record.to_dict() if record is not None else {}
    if record is not None:
        fields["confirmation_deadline"] = format_utc(record.confirmation_deadline)
    return template.format(**fields)


# ---------------------------------------------------------------------------------------------------------------------
# Writing: transitions. Each returns a new record (version + 1) or raises IllegalTransition.


def request(record: SessionRecord | None, now: datetime.datetime, *, requested_by: str, reason: str,
            confirmation_required: bool = DEFAULT_CONFIRMATION_REQUIRED, ttl_seconds: int = DEFAULT_TTL_SECONDS,
            confirmation_timeout_seconds: int = DEFAULT_CONFIRMATION_TIMEOUT_SECONDS,
            session_id: str | None = None) -> SessionRecord:
    """A specialist requests authorization: pending_confirmation when the client must confirm, else authorized at
    once with expires_at = now + ttl_seconds. Requesting on an authorized session renews it and keeps its id: at
    once without confirmation, else as a renewal waiting for the client while the current grant holds. Any other
    request starts a new session (id `session_id`, or a new UUID). `requested_by` and `reason` are stored cleaned
    (clean_free_text); either blank, or longer than FREE_TEXT_MAX_CHARACTERS, is a ValueError. Call `decide`
    first: this does not know whether the device is active."""
    now = _utc(now)
    _require_positive("ttl_seconds", ttl_seconds)
    _require_positive("confirmation_timeout_seconds", confirmation_timeout_seconds)
    requested_by = check_free_text("requested_by", requested_by)
    reason = check_free_text("reason", reason)
    settled = settle(record, now)
    state = _state_of(settled)
    event = "request_with_confirmation" if confirmation_required else "request_without_confirmation"
    new_state = _next_state(state, event)
    if state == "authorized" and confirmation_required:
        if settled.renewal_pending:
            raise IllegalTransition("authorized (a renewal is already waiting)", event)
        # The renewal asks under the session's own TTL and confirmation timeout: the record keeps one pair, which
        # the grant in force was given with.
        return dataclasses.replace(
            settled, renewal_requested_by=requested_by, renewal_reason=reason, renewal_requested_at=now,
            version=settled.version + 1, changed_by=requested_by, changed_at=now)
    granted = new_state == "authorized"
    return SessionRecord(
        id=settled.id if state == "authorized" else (session_id or str(uuid.uuid4())),
        state=new_state,
        requested_by=requested_by,
        reason=reason,
        requested_at=now,
        confirmation_required=confirmation_required,
        confirmed_by=None,
        authorized_at=now if granted else None,
        expires_at=now + datetime.timedelta(seconds=ttl_seconds) if granted else None,
        ended_by=None,
        ended_at=None,
        version=_next_version(settled),
        ttl_seconds=ttl_seconds,
        confirmation_timeout_seconds=confirmation_timeout_seconds,
        changed_by=requested_by,
        changed_at=now,
    )


def renew(record: SessionRecord | None, now: datetime.datetime, *, requested_by: str, reason: str,
          confirmation_required: bool = DEFAULT_CONFIRMATION_REQUIRED, ttl_seconds: int = DEFAULT_TTL_SECONDS,
          confirmation_timeout_seconds: int = DEFAULT_CONFIRMATION_TIMEOUT_SECONDS,
          renew_before: int = DEFAULT_RENEW_BEFORE_SECONDS, session_id: str | None = None) -> SessionChange:
    """Makes sure the session is (being) authorized, idempotently: `support_session state: authorized`.

    An authorization with more than `renew_before` seconds left is kept (changed False); one with less is renewed
    (through the client again when confirmation is required, the current grant holding meanwhile). A pending request
    or a waiting renewal is left to its answer (changed False). Any other state gets a new request."""
    now = _utc(now)
    if renew_before < 0:
        raise ValueError(f"renew_before must be 0 or more seconds, not {renew_before}")
    settled = settle(record, now)
    state = _state_of(settled)
    left = remaining_seconds(settled, now)
    if state == "authorized" and settled.renewal_pending:
        return SessionChange(record, False, _refusal_message("request_authorization", "renewal_pending", settled))
    if state == "authorized" and left > renew_before:
        return SessionChange(record, False, f"Kept the authorization: {left} s left, more than renew_before "
                                            f"({renew_before} s)")
    if state == "pending_confirmation":
        return SessionChange(record, False, REFUSALS["pending_confirmation"].format(
            requested_by=settled.requested_by, requested_at=format_utc(settled.requested_at)))
    new_record = request(settled, now, requested_by=requested_by, reason=reason,
                         confirmation_required=confirmation_required, ttl_seconds=ttl_seconds,
                         confirmation_timeout_seconds=confirmation_timeout_seconds, session_id=session_id)
    if new_record.renewal_pending:
        return SessionChange(new_record, True, (
            f"Asked the client to renew the authorization ({left} s were left); the current authorization holds "
            f"until {format_utc(new_record.expires_at)} meanwhile"))
    verb = f"Renewed the authorization ({left} s were left)" if state == "authorized" else "Requested authorization"
    outcome = ("waiting for the client to confirm" if new_record.state == "pending_confirmation"
               else f"authorized until {format_utc(new_record.expires_at)}")
    return SessionChange(new_record, True, f"{verb}: {outcome}")


def _waiting_request(record: SessionRecord | None, event: str) -> SessionRecord:
    """The record, when it has a question waiting for the client (a pending request or a renewal); else the
    transition is illegal."""
    state = _state_of(record)
    if state == "authorized" and not record.renewal_pending:
        raise IllegalTransition("authorized (no renewal waiting)", event)
    _next_state(state, event)
    return record


def _answered_renewal(settled: SessionRecord) -> dict[str, t.Any]:
    """The fields an answer to a waiting renewal changes: the renewal's request becomes the session's, and the
    renewal fields clear. Nothing for a first request."""
    if not settled.renewal_pending:
        return {}
    return dict(_NO_RENEWAL, requested_by=settled.renewal_requested_by, reason=settled.renewal_reason,
                requested_at=settled.renewal_requested_at)


def accept(record: SessionRecord | None, now: datetime.datetime, *, confirmed_by: str) -> SessionRecord:
    """The client accepted: authorized from now for the TTL the request carried. For a renewal the renewal's
    request becomes the authorization's. A late answer (after the confirmation deadline) is refused: the request
    has already timed out."""
    now = _utc(now)
    settled = _waiting_request(settle(record, now), "client_accepts")
    renewal = _answered_renewal(settled)
    return _apply(settled, "client_accepts", now, changed_by=confirmed_by, confirmed_by=confirmed_by,
                  authorized_at=now, expires_at=now + datetime.timedelta(seconds=settled.ttl_seconds), **renewal)


def deny(record: SessionRecord | None, now: datetime.datetime, *, confirmed_by: str) -> SessionRecord:
    """The client refused. A refused renewal ends the session at once: the state is denied, so nothing that hangs
    on the authorization (remote control, transfers) may go on."""
    now = _utc(now)
    settled = _waiting_request(settle(record, now), "client_denies")
    renewal = _answered_renewal(settled)
    return _apply(settled, "client_denies", now, changed_by=confirmed_by, confirmed_by=confirmed_by, **renewal)


def time_out(record: SessionRecord | None, now: datetime.datetime, *, changed_by: str = TIMER) -> SessionRecord:
    """The client did not answer. The device decides when its prompt gave up, so this does not check the deadline.
    A renewal nobody answered is dropped: the authorization stays as it was and runs out at its expires_at."""
    now = _utc(now)
    _waiting_request(record, "confirmation_times_out")
    return _apply(record, "confirmation_times_out", now, changed_by=changed_by, **_NO_RENEWAL)


def expire(record: SessionRecord | None, now: datetime.datetime, *, changed_by: str = TIMER) -> SessionRecord:
    """The grant lapsed (the device's one-shot expiry, or `settle` at expires_at); a renewal still waiting lapses
    with it."""
    now = _utc(now)
    return _apply(record, "ttl_passes", now, changed_by=changed_by, **_NO_RENEWAL)


def deauthorize(record: SessionRecord | None, now: datetime.datetime, *, ended_by: str) -> SessionChange:
    """A specialist ends an authorized session (and a renewal waiting with it), or cancels a pending request:
    `support_session state: deauthorized`. Idempotent: any other state is left as it is (changed False)."""
    now = _utc(now)
    settled = settle(record, now)
    state = _state_of(settled)
    event = {"pending_confirmation": "cancel", "authorized": "deauthorize"}.get(state)
    if event is None:
        return SessionChange(record, False, f"Nothing to deauthorize: the session is {state}")
    new_record = _apply(settled, event, now, changed_by=ended_by, ended_by=ended_by, ended_at=now, **_NO_RENEWAL)
    done = "Cancelled the pending request" if event == "cancel" else "Ended the authorization"
    return SessionChange(new_record, True, f"{done} (session {new_record.id})")


def check_version(expected_version: int, current_record: SessionRecord | None) -> None:
    """Raises SessionConflict ("changed by X at T") unless the stored record is still the version the caller read.
    A device without a record is version 0."""
    current_version = 0 if current_record is None else current_record.version
    if current_version != expected_version:
        raise SessionConflict(expected_version, current_record)


def _next_state(state: str, event: str) -> str:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(state, event) from None


def _apply(record: SessionRecord | None, event: str, now: datetime.datetime, *, changed_by: str,
           **changes: t.Any) -> SessionRecord:
    new_state = _next_state(_state_of(record), event)
    return dataclasses.replace(record, state=new_state, version=record.version + 1, changed_by=changed_by,
                               changed_at=now, **changes)


def _next_version(record: SessionRecord | None) -> int:
    return 1 if record is None else record.version + 1


def _require_positive(name: str, seconds: int) -> None:
    if seconds <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, not {seconds}")
