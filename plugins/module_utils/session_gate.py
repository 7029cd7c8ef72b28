# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one session gate: may this action start on this device now, and if not, what does the operator read?

support_session, remote_control and file_transfer each open the gate first, in the task's one WinRM shell: one
command reads the device's facts (active or idle, judged by device_info with the task's idle_after) and its session
(get_support_session with `facts`), then session_state.decide. The gate hands back either the go-ahead (with what it
read) or the finished refusal, so the words, the allowed actions and the unreachable result are the same in every
module.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import typing as t

from ansible_collections.remote_support.windows.plugins.module_utils import device_info, device_script
from ansible_collections.remote_support.windows.plugins.module_utils import session_state as sm
from ansible_collections.remote_support.windows.plugins.module_utils.device_info import format_utc, parse_utc
from ansible_collections.remote_support.windows.plugins.module_utils.errors import DeviceError


class SessionError(Exception):
    """The task cannot do what was asked; the message says what happened and what to do."""


@dataclasses.dataclass(frozen=True)
class DeviceView:
    """One read of the device's session state (get_support_session)."""

    device_time: datetime.datetime
    policy: dict[str, t.Any]
    interactive_user: dict[str, t.Any] | None
    record: sm.SessionRecord | None


def read_view(shell: t.Any, wait: t.Mapping[str, t.Any] | None = None) -> DeviceView:
    """Reads the session; with `wait` (get_support_session's input), first waits on the device while it is unchanged."""
    answer = shell.run(device_script.load("get_support_session"), {"wait": dict(wait)} if wait else {})
    return _view(answer)


def _view(answer: t.Mapping[str, t.Any]) -> DeviceView:
    return view_of(answer["device_time"], answer["policy"], answer["interactive_user"], answer["session"])


def view_of(device_time: str, policy: dict[str, t.Any], user: dict[str, t.Any] | None,
            session: dict[str, t.Any] | None) -> DeviceView:
    try:
        record = None if session is None else sm.SessionRecord.from_dict(session)
    except sm.InvalidSessionRecord as error:
        raise SessionError(f"The session record on the device cannot be read ({error}). Check "
                           r"HKLM:\SOFTWARE\RemoteSupport\Session on the device.") from None
    now = parse_utc(device_time)
    if now is None:  # the contract requires it; a device that sends none cannot be judged
        raise SessionError(f"The device did not report its time ({device_time!r}). Check the device's clock and run "
                           "the task again.")
    return DeviceView(now, policy, user, record)


def is_windows(facts: t.Mapping[str, t.Any]) -> bool:
    return str(facts.get("os_caption", "")).startswith("Microsoft Windows")


@dataclasses.dataclass(frozen=True)
class Gate:
    """What the gate read, and its answer for one action."""

    facts: dict[str, t.Any]
    status: dict[str, t.Any]  # device_info's record: active or idle, the clocks, why not active in words
    view: DeviceView
    decision: sm.Decision

    @property
    def device_active(self) -> bool:
        return self.status["status"] == "active"

    @property
    def record(self) -> sm.SessionRecord | None:
        """The session record with the lapses the device's clock has already caused."""
        return sm.settle(self.view.record, self.view.device_time)

    @property
    def message(self) -> str:
        """Why the action may not start: for an idle device the seed's words and why, else the session's words."""
        if self.decision.state == "unavailable" and self.status.get("msg"):
            return str(self.status["msg"])
        return self.decision.message

    def allowed_actions(self) -> list[str]:
        # The device answered, so revoking stays possible even when it is idle.
        return sm.allowed_actions(self.view.record, self.view.device_time, self.device_active,
                                  is_windows(self.facts), connection_valid=self.status["connection"]["valid"])

    def summary(self) -> dict[str, t.Any]:
        """The fields every gated module returns about the device and its session."""
        return {
            "state": self.decision.state,
            "allowed_actions": self.allowed_actions(),
            "device_status": self.status["status"],
            "connection": self.status["connection"],
            "device_time": format_utc(self.view.device_time),
        }

    def refusal(self) -> dict[str, t.Any] | None:
        """The finished result when the action may not start; None is the go-ahead."""
        if self.decision.allowed:
            return None
        result = dict(self.summary(), changed=False, failed=True, msg=self.message)
        if self.status.get("detail"):
            result["detail"] = self.status["detail"]
        return result


def open_gate(shell: t.Any, action: str, idle_after: int,
              controller_now: t.Callable[[], datetime.datetime]) -> Gate:
    """Reads the device (its facts and the session, in one command) in `shell` and decides whether `action` may
    start now."""
    answer = shell.run(device_script.load("get_support_session"), {"facts": True})
    facts = answer.get("facts")
    if not isinstance(facts, dict):
        raise DeviceError("script", "The device script 'get_support_session' answered without the device's facts; "
                                    "the device may run a different version of the collection's scripts.")
    status = device_info.record_from_facts(facts, idle_after, controller_now())
    view = _view(answer)
    decision = sm.decide(action, view.record, view.device_time, status["status"] == "active", is_windows(facts),
                         connection_valid=status["connection"]["valid"])
    return Gate(facts, status, view, decision)


def unreachable(error: DeviceError) -> dict[str, t.Any]:
    """The result of a gated module when the device could not be reached or failed to answer."""
    record = device_info.unreachable_record(error)
    return {"changed": False, "failed": True, "state": "unavailable", "session": None, "remaining_seconds": 0,
            "allowed_actions": [], "device_status": "unreachable", "connection": record["connection"],
            "msg": record["msg"]}


def requester(given: str | None, settings: t.Any) -> str:
    """Who asks, as the person at the device and the audit read it: the name the operator gave (requested_by), else
    the account the controller authenticates to the device with. Never the controller's own login name, which means
    nothing at the device (root, awx)."""
    if given:
        return given
    if settings.user:
        return str(settings.user)
    return f"the account mapped to the client certificate {os.path.basename(settings.cert_pem or '')}".strip()
