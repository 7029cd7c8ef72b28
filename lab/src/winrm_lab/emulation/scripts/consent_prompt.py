"""Emulation of consent_prompt.ps1, version 1: the prompt on the interactive user's desktop, and that person.

The script runs as the scheduled task RemoteSupport-ConsentPrompt in the user's session. The window is recorded in
`Device.prompts` (who asks and why, as the script words it); the person answers as `InteractiveUser.consent` says
(accept or deny after `answer_after_seconds`, or ignore), in real seconds from when the window appears. A window
nobody answers closes at the deadline as WScript.Shell's Popup does; a stopped task closes it at once.
"""

from __future__ import annotations

import asyncio
import math
import typing as t

from ...device import Device, PromptShown
from .. import session
from . import DeviceScriptError

VERSION = 2

TITLE = "Remote support request"
PROMPTS_KEPT = 50  # the lab keeps the most recent prompts of each device
SESSION_ZERO = ("consent_prompt.ps1 runs in session 0, where no one can see a prompt. The scheduled task "
                "RemoteSupport-ConsentPrompt starts it in the interactive user's session.")


def prompt_text(account: str, requested_by: str, reason: str, renewal: bool, seconds_left: int) -> str:
    """consent_prompt.ps1's Get-PromptText: the authenticated account first, the requester's words marked as theirs."""
    what = "to start a remote support session on this computer"
    lapse = "the request lapses and nothing is allowed."
    if renewal:
        what = "to extend the remote support session running on this computer"
        lapse = "the session is not extended and ends when its current authorization expires. No ends it now."
    return (f"{account} asks {what}.\r\n\r\n"
            f"On behalf of (as given by the requester): {requested_by}\r\n"
            f"Reason (as given by the requester): {reason}\r\n\r\n"
            f"Do you allow it? Without an answer within {seconds_left} seconds {lapse}")


async def run(device: Device, script_input: t.Any, io: t.Any = None) -> dict[str, t.Any]:
    identity = getattr(io, "identity", None)
    if identity is None or identity.session_id == 0:
        raise DeviceScriptError(SESSION_ZERO)
    registry = device.registry
    result: dict[str, t.Any] = {"script_version": VERSION, "device_time": session.stamp(device.clock.now()),
                                "session_id": None, "outcome": None, "answer": None, "answered_by": None}
    has_request = registry.key_exists(session.CONSENT_REQUEST_KEY)
    session_id = registry.get(session.CONSENT_REQUEST_KEY, "SessionId") if has_request else None
    result["session_id"] = None if session_id is None else str(session_id)
    state = registry.get(session.SESSION_KEY, "State")
    # A first request, or a renewal of the authorized session (its grant holds while the user decides).
    waiting = state == "pending_confirmation" or (
        state == "authorized" and registry.get(session.SESSION_KEY, "RenewalRequestedAt") is not None)
    if not has_request or not waiting or registry.get(session.SESSION_KEY, "Id") != session_id:
        result["outcome"] = "no_pending_request"
        return result
    if session.user_sid(identity.user) != registry.get(session.CONSENT_REQUEST_KEY, "UserSid"):
        result["outcome"] = "not_the_prompted_user"
        return result
    deadline = session.required_stamp(registry.get(session.CONSENT_REQUEST_KEY, "Deadline"))
    seconds_left = math.floor((deadline - device.clock.now()).total_seconds())
    if seconds_left < 1:
        result["outcome"] = "deadline_passed"
        return result

    account = session.format_free_text(str(registry.get(session.CONSENT_REQUEST_KEY, "Account") or ""))
    requested_by = session.format_free_text(str(registry.get(session.CONSENT_REQUEST_KEY, "RequestedBy") or ""))
    reason = session.format_free_text(str(registry.get(session.CONSENT_REQUEST_KEY, "Reason") or ""))
    renewal = int(registry.get(session.CONSENT_REQUEST_KEY, "Renewal", 0) or 0) == 1
    window = PromptShown(user=identity.user, title=TITLE,
                         text=prompt_text(account, requested_by, reason, renewal, seconds_left),
                         timeout_seconds=seconds_left, shown_at=device.clock.now())
    with device.lock:
        device.prompts.append(window)
        del device.prompts[:-PROMPTS_KEPT]
    result["outcome"] = "not_answered"

    person = device.interactive_user
    answer, wait = None, float(seconds_left)
    if person is not None and person.name.lower() == identity.user.lower() and person.consent in ("accept", "deny") \
            and person.answer_after_seconds < seconds_left:
        answer, wait = person.consent, person.answer_after_seconds
    try:
        await asyncio.sleep(wait)
    except asyncio.CancelledError:
        window.closed_at, window.result = device.clock.now(), "closed"
        raise
    window.closed_at = device.clock.now()
    window.result = {"accept": "yes", "deny": "no"}.get(answer or "", "timed_out")
    if answer is None:
        return result

    answered_at = session.stamp(device.clock.now())
    with device.lock:
        if not registry.key_exists(session.CONSENT_KEY):
            result["outcome"] = "withdrawn"  # the request was withdrawn while the window was open
            return result
        # Answer last: a reader never sees an answer without the session and time it belongs to.
        for name, value in (("SessionId", result["session_id"]), ("AnsweredBy", identity.user),
                            ("AnsweredAt", answered_at), ("Answer", answer)):
            registry.set(session.CONSENT_KEY, name, value)
    result.update(outcome="answered", answer=answer, answered_by=identity.user)
    message = (f"Support session {session_id}: consent answered ({answer}) by {identity.user} at {answered_at}. "
               f"Requested by {account} on behalf of {requested_by}. Reason: {reason}")
    session.audit(device, session.audit_events("consent_prompt")["consent_answered"], "Information", message)
    return result
