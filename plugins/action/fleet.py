# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for remote_support.windows.fleet: one task serves many devices from the controller.

Ansible's per-host worker costs more controller CPU than a device probe itself, so fleet-wide playbooks run this
task once (run_once) and it serves every device of the play on a bounded pool of threads. Each device's connection
settings come from its own host variables, resolved exactly as the per-host modules resolve them (DeviceAction).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import typing as t

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.utils.display import Display

from ansible_collections.remote_support.windows.plugins.module_utils import device_info, fleet, mass_support_report
from ansible_collections.remote_support.windows.plugins.module_utils import file_transfer, session_gate, support_session
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_client import HAS_WINRM, WinRMClient
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_settings import WINRM_ARGUMENT_SPEC
from ansible_collections.remote_support.windows.plugins.plugin_utils.device_action import DeviceAction, utc_now

display = Display()

ARGUMENT_SPEC: dict[str, dict[str, t.Any]] = {
    "action": {"type": "str", "required": True, "choices": list(fleet.ACTIONS)},
    "options": {"type": "dict", "default": {}},
    "hosts": {"type": "list", "elements": "str"},
    "concurrency": {"type": "int", "default": fleet.DEFAULT_CONCURRENCY},
    "journal": {"type": "path"},
    "report": {"type": "dict", "options": {"dir": {"type": "path", "required": True},
                                           "earlier": {"type": "dict", "default": {}}}},
    "progress_every": {"type": "int", "default": 0},
}


class ActionModule(DeviceAction):
    def run(self, tmp: t.Any = None, task_vars: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
        result = super(DeviceAction, self).run(tmp, task_vars)  # ActionBase: this task's own options below
        del tmp
        task_vars = task_vars or {}
        if not HAS_WINRM:
            raise AnsibleActionFail("remote_support.windows needs the Python library pywinrm on the controller: "
                                    "pip install pywinrm")
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        action = args["action"]
        if not 1 <= args["concurrency"] <= fleet.MAX_CONCURRENCY:
            raise AnsibleActionFail(f"concurrency must be between 1 and {fleet.MAX_CONCURRENCY}, "
                                    f"not {args['concurrency']}")
        options = self._action_options(action, args["options"])
        hosts = args["hosts"] if args["hosts"] is not None else list(task_vars.get("ansible_play_batch", []))
        hostvars = task_vars.get("hostvars", {})
        unknown = [host for host in hosts if host not in hostvars]
        if unknown:
            raise AnsibleActionFail(f"hosts names devices the inventory does not have: {', '.join(unknown[:10])}")

        report = args["report"]
        if report is not None:
            problem = "report is for the support action" if action != "support" else \
                mass_support_report.records_problem(report["earlier"])
            if problem:
                raise AnsibleActionFail(f"report: {problem}")

        work = self._work(action, options, hostvars, self.play_credentials(task_vars))
        journal = _Journal(args["journal"], action) if args["journal"] else None
        every = args["progress_every"] or max(1, len(hosts) // 20)

        def progress(done: int, total: int, host: str, outcome: t.Mapping[str, t.Any]) -> None:
            if action == "support":
                outcome["failed"] = outcome.get("status") == "failed"
            if journal is not None:
                journal.write(host, outcome)
            if done % every == 0 or done == total:
                display.display(f"{action}: {done} / {total} devices done (last: {host}, {_word(outcome)})")

        try:
            results = fleet.serve(hosts, work, args["concurrency"], progress)
        finally:
            if journal is not None:
                journal.close()
        result.update({
            "changed": any(r.get("changed") for r in results.values()),
            "results": results,
            "failed_hosts": [host for host, r in results.items() if r.get("failed")],
            "counts": fleet.summarize(results, "status" if action in ("support", "device_info") else None),
            "msg": f"{action} on {len(hosts)} devices: " + ", ".join(
                f"{n} {k}" for k, n in sorted(fleet.summarize(results).items())),
        })
        if report is not None:
            try:
                result["report"] = self._report(report, results)
            except OSError as error:  # the devices' results stay in this result, and in the journal
                result.update(failed=True, msg=(
                    f"The report cannot be written to {report['dir']} ({error.strerror or error}). Every device's "
                    "record is in this task's results (and its journal, when it keeps one); choose a report folder "
                    "the controller's account may write and run again."))
        return result

    def _report(self, report: t.Mapping[str, t.Any], results: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
        """The report of the devices served before (earlier) and now, written to report.json and report.csv."""
        rendered = mass_support_report.render(dict(report["earlier"], **results))
        files: list[str] = []
        if not self._task.check_mode:
            os.makedirs(report["dir"], mode=0o750, exist_ok=True)
            files = mass_support_report.write(report["dir"], rendered)
        return {key: rendered[key] for key in ("records", "summary", "counts", "unhandled")} | {"files": files}

    def _action_options(self, action: str, given: dict[str, t.Any]) -> dict[str, t.Any]:
        """The per-device options, checked once for the whole fleet against the action's own argument spec."""
        spec = dict(WINRM_ARGUMENT_SPEC)
        spec.update(fleet.ARGUMENT_SPECS[action])
        validator = ArgumentSpecValidator(spec, required_if=fleet.REQUIRED_IF.get(action))
        validated = validator.validate(given)
        if validated.error_messages:
            raise AnsibleActionFail(f"options for {action} are not valid: {'; '.join(validated.error_messages)}")
        options = validated.validated_parameters
        problem = fleet.positive_options(action, options)
        if problem:
            raise AnsibleActionFail(problem)
        if action == "support_session":
            options["reason"] = options["reason"] or ""
        if action == "file_transfer" and options["direction"] == "to_device":
            options["src"] = self.local_source(options["src"])
        if action == "support" and options.get("push"):
            options["push"] = dict(options["push"], src=self.local_source(options["push"]["src"]))
        if action == "support" and options.get("collect"):
            options["collect"] = dict(options["collect"], dest=os.path.abspath(os.path.expanduser(
                options["collect"]["dest"])))
        return options

    def _work(self, action: str, options: dict[str, t.Any], hostvars: t.Mapping[str, t.Any],
              play: t.Mapping[str, t.Any]) -> t.Callable[[str], dict[str, t.Any]]:
        check_mode = bool(self._task.check_mode)
        controller_host = socket.gethostname()
        # Host variables are rendered here, one host after the other: Ansible's templar is not made for threads.
        lock = threading.Lock()

        def client_for(host: str) -> WinRMClient:
            with lock:
                settings = self.winrm_settings(options, hostvars[host], template=lambda value: value, play=play)
            return WinRMClient(settings)

        # A worker process outlives an ansible-playbook that is killed outright (Ansible detaches its workers); serving
        # devices on for a run nobody follows would race the rerun, so devices not started yet are left alone.
        controller = os.getppid()

        def work(host: str) -> dict[str, t.Any]:
            if os.getppid() != controller:
                raise fleet.NotStarted(host)
            try:
                client = client_for(host)
            except AnsibleActionFail as error:
                return {"changed": False, "failed": True, "msg": str(error.message), "status": "failed",
                        "reason": str(error.message), "check": "Fix the host's connection variables.", "host": host}
            device_options = options
            if "requested_by" in options:  # each device is told the account that authenticates to it
                device_options = dict(options, requested_by=session_gate.requester(options["requested_by"],
                                                                                   client.settings))
            if action == "device_info":
                record = device_info.probe(client, options["idle_after"], utc_now)
                if options["require_active"] and record["status"] != "active":
                    record["failed"] = True
                return record
            if action == "support_session":
                return support_session.run(client, device_options, check_mode=check_mode, controller_now=utc_now,
                                           monotonic=time.monotonic)
            if action == "file_transfer":
                return file_transfer.run(client, device_options, check_mode=check_mode, diff=False,
                                         controller_now=utc_now, monotonic=time.monotonic,
                                         progress=lambda line: None, controller_host=controller_host)
            return fleet.SupportVisit(client, host, device_options, check_mode=check_mode, controller_now=utc_now,
                                      monotonic=time.monotonic,
                                      controller_host=controller_host).run()

        return work


def _word(outcome: t.Mapping[str, t.Any]) -> str:
    for key in ("status", "state"):
        if outcome.get(key):
            return str(outcome[key])
    return "failed" if outcome.get("failed") else "ok"


class _Journal:
    """One JSON line per device as it finishes, flushed at once, so a run that is killed keeps what it did."""

    def __init__(self, path: str, action: str) -> None:
        self.action = action
        try:
            # Its folder is the run's report folder: readable by the controller's account and its group only.
            os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o750, exist_ok=True)
            self.file = open(path, "a", encoding="utf-8")
        except OSError as error:
            raise AnsibleActionFail(f"The journal {path} cannot be written ({error.strerror or error}). Choose a "
                                    "report folder the controller's account may write. No device was contacted.")

    def write(self, host: str, outcome: t.Mapping[str, t.Any]) -> None:
        self.file.write(json.dumps({"host": host, "action": self.action, "result": outcome}, sort_keys=True) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()
