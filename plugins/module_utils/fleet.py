# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The core of the fleet module: one task serves many devices, each through the same per-device core its own module
uses (device_info, support_session, file_transfer), on a bounded pool of threads.

Plain Python: the per-device work, the clock and the progress output are passed in. A device's failure, or an
exception raised while serving it, becomes that device's result; it never stops the others.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime
import os
import typing as t

from ansible_collections.remote_support.windows.plugins.module_utils import device_info, file_transfer
from ansible_collections.remote_support.windows.plugins.module_utils import support_session

ACTIONS = ("device_info", "support_session", "file_transfer", "support")
DEFAULT_CONCURRENCY = 50
MAX_CONCURRENCY = 1000

# The `support` action's options: one support visit per device, from authorization to the end of the session.
SUPPORT_ARGUMENT_SPEC: dict[str, dict[str, t.Any]] = {
    "reason": {"type": "str", "required": True},
    "requested_by": {"type": "str"},
    "wait_timeout": {"type": "int", "default": 300},
    "poll_interval": {"type": "int", "default": 1},
    "idle_after": {"type": "int", "default": device_info.DEFAULT_IDLE_AFTER},
    "push": {"type": "dict", "options": {"src": {"type": "str", "required": True},
                                         "dest": {"type": "str", "required": True}}},
    "collect": {"type": "dict", "options": {"src": {"type": "str", "required": True},
                                            "dest": {"type": "str", "required": True}}},
    "end_session": {"type": "bool", "default": True},
}

# The options each action takes, beside the connection options every action takes.
ARGUMENT_SPECS: dict[str, dict[str, dict[str, t.Any]]] = {
    "device_info": device_info.ARGUMENT_SPEC,
    "support_session": support_session.ARGUMENT_SPEC,
    "file_transfer": file_transfer.ARGUMENT_SPEC,
    "support": SUPPORT_ARGUMENT_SPEC,
}
REQUIRED_IF: dict[str, list[tuple[t.Any, ...]]] = {
    "support_session": support_session.REQUIRED_IF,
}

# What a support visit's status means, and what to check when it is not `done`.
STATUSES = ("done", "denied", "timed_out", "idle", "unreachable", "failed")
CHECKS = {
    "denied": "The user at the device refused the request. Agree a time with them, then run again.",
    "timed_out": "Nobody answered the prompt in time. Check that the user is at the device, or ask them to "
                 "expect it, then run again.",
    "idle": "The support agent on the device has not checked in recently. Check that its check-in task runs "
            "(the client_confirmation role installs it).",
    "unreachable": "The device could not be reached over WinRM. Check that it is on, on the network, and that "
                   "the inventory's address, credentials and CA are right for it.",
    "failed": "See the reason. Fix what it names and run again: devices already done are not touched again.",
}


class NotStarted(Exception):
    """Raised by work() for a device it will not start (the run was stopped): no result, no progress."""


ProgressCallback = t.Callable[[int, int, str, t.Mapping[str, t.Any]], None]


def positive_options(action: str, options: t.Mapping[str, t.Any]) -> str | None:
    """The first option that must be a positive number of seconds and is not, as a message; else None."""
    for name in ("idle_after", "wait_timeout", "poll_interval"):
        if name in options and options[name] is not None and options[name] <= 0:
            return f"{action}: {name} must be a positive number of seconds, not {options[name]}"
    if options.get("renew_before", 0) < 0:
        return f"{action}: renew_before must be 0 or more seconds, not {options['renew_before']}"
    return None


def serve(hosts: t.Sequence[str], work: t.Callable[[str], dict[str, t.Any]], concurrency: int,
          progress: ProgressCallback | None = None) -> dict[str, dict[str, t.Any]]:
    """Runs work(host) for every host, at most `concurrency` at once; returns the results keyed by host.

    `progress` is called on the calling thread as each device finishes (done, total, host, result), so output
    never interleaves. An exception escaping work() is that device's failure, named, not the task's.
    """
    results: dict[str, dict[str, t.Any]] = {}
    if not hosts:
        return results
    workers = max(1, min(concurrency, len(hosts)))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fleet") as pool:
        futures = {pool.submit(_guarded, work, host): host for host in hosts}
        done = 0
        for future in concurrent.futures.as_completed(futures):
            host = futures[future]
            try:
                results[host] = future.result()
            except NotStarted:
                continue
            done += 1
            if progress is not None:
                progress(done, len(hosts), host, results[host])
    return {host: results[host] for host in hosts if host in results}


def _guarded(work: t.Callable[[str], dict[str, t.Any]], host: str) -> dict[str, t.Any]:
    try:
        return work(host)
    except NotStarted:
        raise
    except Exception as error:  # one device's defect must not cost the other devices their results
        return {"changed": False, "failed": True,
                "msg": f"Serving {host} failed unexpectedly: {type(error).__name__}: {error}"}


def summarize(results: t.Mapping[str, t.Mapping[str, t.Any]], key: str | None = None) -> dict[str, int]:
    """Counts of results by `key` (e.g. status, outcome), or ok/failed when no key is given."""
    counts: dict[str, int] = {}
    for result in results.values():
        value = str(result.get(key)) if key else ("failed" if result.get("failed") else "ok")
        counts[value] = counts.get(value, 0) + 1
    return counts


class _VisitShell:
    """The client a visit hands each step: its shell() gives one shell, opened by the first step and kept for the
    next ones, closed when the visit ends.

    Each step's core (support_session.run, file_transfer.run) takes a client and opens a shell of its own; a visit
    runs up to four on one device, and each shell costs an authentication handshake (three HTTP requests, the larger
    part of a short command's CPU) and a Delete. After a step that failed, whose connection may be gone, the next
    step opens a new shell, as it would have on its own."""

    def __init__(self, client: t.Any) -> None:
        self.client = client
        self._open = contextlib.ExitStack()
        self._shell: t.Any = None

    @contextlib.contextmanager
    def shell(self) -> t.Iterator[t.Any]:
        if self._shell is None:
            self._shell = self._open.enter_context(self.client.shell())
        try:
            yield self._shell
        except BaseException:
            self.close()
            raise

    def step_failed(self) -> None:
        self.close()

    def close(self) -> None:
        self._shell = None
        self._open.close()


class SupportVisit:
    """The `support` action on one device: authorize and wait for the client, push and/or collect a file, end the
    session this visit opened. Each step is the per-device core of its module, all in the visit's one WinRM shell
    (_VisitShell)."""

    def __init__(self, client: t.Any, host: str, options: t.Mapping[str, t.Any], *, check_mode: bool,
                 controller_now: t.Callable[[], datetime.datetime], monotonic: t.Callable[[], float],
                 controller_host: str,
                 progress: t.Callable[[str], None] = lambda line: None) -> None:
        self.client = client
        self.host = host
        self.options = options
        self.check_mode = check_mode
        self.controller_now = controller_now
        self.monotonic = monotonic
        self.controller_host = controller_host
        self.progress = progress
        self.steps = _VisitShell(client)

    def session(self, state: str, wait: bool = True) -> dict[str, t.Any]:
        options = {"state": state, "reason": self.options["reason"], "requested_by": self.options["requested_by"],
                   "wait": wait, "wait_timeout": self.options["wait_timeout"], "renew_before": 0,
                   "poll_interval": self.options["poll_interval"], "idle_after": self.options["idle_after"]}
        return self._step(support_session.run(self.steps, options, check_mode=self.check_mode,
                                              controller_now=self.controller_now,
                                              monotonic=self.monotonic))

    def transfer(self, direction: str, src: str, dest: str) -> dict[str, t.Any]:
        options = {"direction": direction, "src": src, "dest": dest, "force": True,
                   "requested_by": self.options["requested_by"], "idle_after": self.options["idle_after"]}
        return self._step(file_transfer.run(self.steps, options, check_mode=self.check_mode, diff=False,
                                            controller_now=self.controller_now, monotonic=self.monotonic,
                                            progress=self.progress, controller_host=self.controller_host))

    def _step(self, result: dict[str, t.Any]) -> dict[str, t.Any]:
        if result.get("failed"):
            self.steps.step_failed()
        return result

    def run(self) -> dict[str, t.Any]:
        try:
            return self._visit()
        finally:
            self.steps.close()

    def _visit(self) -> dict[str, t.Any]:
        record: dict[str, t.Any] = {"host": self.host, "status": "failed", "reason": "", "check": "",
                                    "request_reason": self.options["reason"],
                                    "session_id": None, "requested_at": None, "authorized_at": None,
                                    "expires_at": None, "ended_at": None, "transfers": [], "changed": False,
                                    "push_bytes": None, "push_sha256": None, "collect_bytes": None,
                                    "collect_sha256": None, "collect_path": None}
        authorization = self.session("authorized")
        record["changed"] = bool(authorization.get("changed"))
        self._session_times(record, authorization.get("session"))
        if authorization.get("failed") or authorization.get("state") != "authorized":
            return self._not_authorized(record, authorization)
        ours = authorization.get("changed") or (authorization["session"] or {}).get("requested_by") \
            == self.options["requested_by"]
        try:
            steps = (("to_device", self.options.get("push")), ("from_device", self.options.get("collect")))
            for direction, step in steps:
                if not step:
                    continue
                dest = step["dest"]
                if direction == "from_device":
                    dest = os.path.join(dest, self.host) + os.sep
                    os.makedirs(dest, mode=0o750, exist_ok=True)
                result = self.transfer(direction, step["src"], dest)
                entry = _transfer_entry(direction, result)
                record["transfers"].append(entry)
                if not result.get("failed"):
                    record[f"{_step_name(direction)}_bytes"] = entry["bytes"]
                    record[f"{_step_name(direction)}_sha256"] = entry["sha256"]
                    if direction == "from_device":
                        record["collect_path"] = entry["dest"]
                record["changed"] = record["changed"] or bool(result.get("changed"))
                if result.get("failed"):
                    record["reason"] = f"{_step_name(direction)}: {result.get('msg')}"
                    record["check"] = _transfer_check(result)
                    return record
            record["status"] = "done"
            verified = "".join(f", {_step_name(entry['direction'])} verified" for entry in record["transfers"])
            record["reason"] = "authorized" + verified
            return record
        finally:
            if ours and self.options["end_session"]:
                self._end(record)

    def _not_authorized(self, record: dict[str, t.Any], authorization: dict[str, t.Any]) -> dict[str, t.Any]:
        device_status = authorization.get("device_status")
        state = authorization.get("state")
        record["reason"] = authorization.get("msg") or ""
        if device_status == "unreachable":
            connection = authorization.get("connection") or {}
            record["status"] = "unreachable"
            message = str(authorization.get("msg") or "")
            # The module's message already quotes the connection's when it has one: say it once.
            record["reason"] = "; ".join(part for part in (
                f"{message} ({connection.get('reason')})",
                None if str(connection.get("message") or "") in message else str(connection["message"])) if part)
        elif device_status == "idle":
            record["status"] = "idle"
        elif state in ("denied", "timed_out"):
            record["status"] = state
        elif "state" not in authorization:
            # The wait ran out before the client answered: read what the device says now, and withdraw the prompt
            # this visit put up, so nothing stays pending after the run.
            now = self.session("query")
            self._session_times(record, now.get("session"))
            if now.get("state") == "pending_confirmation":
                record["status"] = "timed_out"
                record["reason"] = (f"No answer within wait_timeout ({self.options['wait_timeout']} s)"
                                    + ("; the prompt was withdrawn" if self.options["end_session"] else
                                       "; the request stays pending (end_session is off)"))
                if self.options["end_session"] and (now.get("session") or {}).get("requested_by") \
                        == self.options["requested_by"]:
                    self._end(record)
            elif now.get("state") in ("denied", "timed_out"):
                record["status"] = now["state"]
        record["check"] = CHECKS[record["status"]]
        if record["status"] == "failed" and authorization.get("detail"):
            record["check"] = authorization["detail"]
        return record

    def _end(self, record: dict[str, t.Any]) -> None:
        ended = self.session("deauthorized")
        if ended.get("failed"):
            record["end_failed"] = ended.get("msg")
            if record["status"] == "done":
                record["status"] = "failed"
                record["reason"] = f"the session could not be ended: {ended.get('msg')}"
                record["check"] = "End it with the end_sessions playbook once the device answers again."
            return
        record["changed"] = record["changed"] or bool(ended.get("changed"))
        session = ended.get("session") or {}
        record["ended_at"] = session.get("ended_at")

    @staticmethod
    def _session_times(record: dict[str, t.Any], session: t.Mapping[str, t.Any] | None) -> None:
        if not session:
            return
        record["session_id"] = session.get("id")
        for name in ("requested_at", "authorized_at", "expires_at", "ended_at"):
            record[name] = session.get(name)


def _step_name(direction: str) -> str:
    return "push" if direction == "to_device" else "collect"


def _transfer_entry(direction: str, result: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    return {"direction": direction, "src": result.get("src"), "dest": result.get("dest"),
            "bytes": result.get("size"), "sha256": result.get("sha256"), "changed": bool(result.get("changed")),
            "result": (result.get("transfer") or {}).get("result"), "error_code": result.get("error_code")}


def _transfer_check(result: t.Mapping[str, t.Any]) -> str:
    code = result.get("error_code")
    hint = file_transfer.HINTS.get(code) if code else None
    return str(hint or CHECKS["failed"])
