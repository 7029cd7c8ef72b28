# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""docs/session-states.md, rendered from the state machine's data in session_state.py (TRANSITIONS, ALLOWED_ACTIONS,
REFUSALS...): the Mermaid diagram, the allowed-actions table and the refusal messages. scripts/render-session-states
writes the page; a unit test fails when the page and the data disagree. Nothing in the collection's tasks imports this.
"""

from __future__ import annotations

from ansible_collections.remote_support.windows.plugins.module_utils.session_state import (
    ACTIONS,
    ACTION_REFUSALS,
    ALLOWED_ACTIONS,
    DEFAULT_CONFIRMATION_TIMEOUT_SECONDS,
    DEFAULT_RENEW_BEFORE_SECONDS,
    DEFAULT_TTL_SECONDS,
    FREE_TEXT_MAX_CHARACTERS,
    REFUSALS,
    RENEWAL_PENDING_REFUSAL,
    STATES,
    TRANSITIONS,
    WINDOWS_ONLY_ACTIONS,
    WINDOWS_ONLY_REFUSAL,
)

# What each state means, for the allowed-actions table.
STATE_MEANINGS = {
    "unavailable": "device idle, unreachable, or credentials/TLS invalid (derived, never stored)",
    "not_authorized": "device active, no authorization yet (no session record)",
    "pending_confirmation": "request sent, waiting for the client",
    "authorized": "granted; `expires_at` = granted + TTL",
    "denied": "the client refused",
    "timed_out": "the client did not answer in time",
    "expired": "TTL passed",
    "deauthorized": "ended (or cancelled while pending) by a specialist",
}

# What each transition out of `authorized` means, for the rendered diagram (the same event has another meaning there).
TRANSITION_LABELS = {
    ("authorized", "request_with_confirmation"): "request_with_confirmation (renewal waits, grant in force)",
    ("authorized", "client_accepts"): "client_accepts (renewal, new expires_at)",
    ("authorized", "client_denies"): "client_denies (renewal, ends at once)",
    ("authorized", "confirmation_times_out"): "confirmation_times_out (renewal, grant runs to expires_at)",
}

# The remarks in parentheses in the allowed-actions table.
ACTION_REMARKS = {
    ("unavailable", "request_authorization"): "blocked",
    ("unavailable", "deauthorize"): "when the device answers",
    ("pending_confirmation", "request_authorization"): "already pending",
    ("pending_confirmation", "deauthorize"): "cancels",
    ("authorized", "file_transfer"): "Windows only",
    ("authorized", "request_authorization"): "renews",
}

# Mermaid treats ';' as a statement separator and ':' as a label start, so the note avoids both.
_UNAVAILABLE_NOTE = ("derived, never stored. Any session while the device is not active or the connection is "
                     "invalid. Every action is refused with Unable to connect to the device")


def render_mermaid() -> str:
    """The transitions as a Mermaid stateDiagram-v2."""
    lines = ["stateDiagram-v2", "    [*] --> not_authorized : no session record yet"]
    lines += [f"    {source} --> {target} : {TRANSITION_LABELS.get((source, event), event)}"
              for (source, event), target in TRANSITIONS.items()]
    lines += ["    unavailable", f"    note right of unavailable : {_UNAVAILABLE_NOTE}"]
    return "\n".join(lines) + "\n"


def render_allowed_actions_table() -> str:
    """The allowed-actions table, as Markdown: one row per state, one column per action."""
    lines = ["| state | meaning | " + " | ".join(f"`{action}`" for action in ACTIONS) + " |",
             "|---|---|" + "---|" * len(ACTIONS)]
    for state in STATES:
        cells = [_allowed_cell(state, action) for action in ACTIONS]
        lines.append(f"| `{state}` | {STATE_MEANINGS[state]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _allowed_cell(state: str, action: str) -> str:
    answer = "yes" if action in ALLOWED_ACTIONS[state] else "no"
    remark = ACTION_REMARKS.get((state, action))
    return f"{answer} ({remark})" if remark else answer


def render_refusals_table() -> str:
    lines = ["| state | action | message |", "|---|---|---|"]
    for state in STATES:
        specific = [(action, message) for (refusal_state, action), message in ACTION_REFUSALS.items()
                    if refusal_state == state]
        lines += [f"| `{state}` | `{action}` | {message} |" for action, message in specific]
        if state == "unavailable":
            lines.append("| `unavailable` | `deauthorize` on a device that answers (idle) | as the record's own state "
                         "says: allowed while pending or authorized, else that state's `deauthorize` message |")
            lines.append(f"| `unavailable` | any other, and `deauthorize` on a device that cannot be reached | "
                         f"{REFUSALS[state]} |")
        elif state in REFUSALS:
            lines.append(f"| `{state}` | {'any other' if specific else 'any'} | {REFUSALS[state]} |")
        if state == "authorized":
            lines.append("| `authorized` with a renewal waiting | `request_authorization` | "
                         f"{RENEWAL_PENDING_REFUSAL} |")
    lines.append(f"| any | `{'`, `'.join(sorted(WINDOWS_ONLY_ACTIONS))}` on a non-Windows device | "
                 f"{WINDOWS_ONLY_REFUSAL} |")
    return "\n".join(lines) + "\n"


def render_session_states_markdown() -> str:
    """docs/session-states.md, whole."""
    return f"""<!-- Generated from plugins/module_utils/session_state.py by scripts/render-session-states. Do not edit. -->
# Session states

The support session's state machine, rendered from the data in `plugins/module_utils/session_state.py`
(`TRANSITIONS`, `ALLOWED_ACTIONS`, `REFUSALS`). Every module asks `session_state.decide(action, ...)` before it
starts anything; nothing else decides. A unit test fails when this page and the data disagree.

- `unavailable` is never stored: it is any session while the device is not active or the connection is invalid.
- `not_authorized` is never stored either: it is a device without a session record.
- Lapses happen by the clock: an `authorized` record is `expired` from the second its `expires_at` comes
  (`expires_at` <= now), and a `pending_confirmation` record is `timed_out` from the second
  `requested_at + confirmation_timeout_seconds` comes, whether or not anyone has written that yet. The device lapses
  the grant on its own too, and every action checks again before it starts.
- Defaults where the device sets no policy:
  - client confirmation required;
  - TTL (how long a grant lasts): {DEFAULT_TTL_SECONDS} s;
  - confirmation timeout (how long a request waits for the client): {DEFAULT_CONFIRMATION_TIMEOUT_SECONDS} s;
  - `renew_before`: a renewal keeps an authorization with more than {DEFAULT_RENEW_BEFORE_SECONDS} s left.
- Renewal (`request_authorization` on an `authorized` session with less than `renew_before` left):
  - without client confirmation it is renewed at once (a new `expires_at`);
  - with client confirmation the client is asked again, and **while the renewal waits for the answer the current
    authorization stays in force until its own `expires_at`** (the state stays `authorized`; the record's
    `renewal_requested_by`, `renewal_reason` and `renewal_requested_at` say what waits). A second renewal is refused
    until the first is answered;
  - the client says **yes**: authorized again from that moment for the TTL;
  - the client says **no**: the session is `denied` **at once**, and everything hanging on the authorization ends
    with it: the remote-control grant is removed from the device and its open shadow connections are closed, and file
    transfers stop at their next chunk;
  - **no answer**: the renewal is dropped when its deadline comes and the current authorization runs out at its
    `expires_at`, when the device's own end tasks (expiry, end of remote control) fire as they would have anyway;
  - a renewal never outlives the authorization it would extend: its deadline is
    `min(renewal_requested_at + confirmation_timeout_seconds, expires_at)`.
- Revoking always works when the device answers: `deauthorize` needs a valid connection only. On an idle device
  (`unavailable` because the agent stopped checking in, yet reachable) it still ends a pending request or an
  authorization and what hangs on it; only a device that cannot be reached at all refuses it.
- Free text from the requester (`requested_by`, `reason`) is stored and shown cleaned: control characters, format
  characters and line breaks become spaces, runs of spaces one space. At most {FREE_TEXT_MAX_CHARACTERS} characters
  each, for the record and the prompt alike; a blank `reason` or `requested_by` is refused.
- Every change bumps the record's `version` and records `changed_by` and `changed_at`; writers compare-and-set on
  `version`, and the loser gets "changed by X at T".

## Transitions

```mermaid
{render_mermaid()}```

## Allowed actions

{render_allowed_actions_table()}
## Refusal messages

What `decide` says when an action may not start. `{{field}}` is the session record's field
(`confirmation_deadline` is `requested_at + confirmation_timeout_seconds`).

{render_refusals_table()}"""
