# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The support agent's device-side pieces, and the core of the support_agent module that keeps them in place.

The agent is what runs on the device without any controller:

- the check-in heartbeat: heartbeat.ps1, run every minute as SYSTEM by the scheduled task RemoteSupport-Heartbeat,
  writes HKLM:\\SOFTWARE\\RemoteSupport\\Agent LastCheckIn, which device_info reads as the last activity;
- the support session's task scripts (consent_prompt, apply_consent, expire_session), the same texts
  set_support_session ships with every arming, loaded here through device_script.load so there is one source.

All live in C:\\ProgramData\\RemoteSupport\\scripts, a folder only SYSTEM and Administrators may change. Each script
carries its version in its header (`# version: N`); the installed file is compared with the shipped text by SHA-256,
so an unchanged collection changes nothing, a newer one upgrades, and a file altered on the device is repaired.
A device that runs a newer version than this collection ships is left alone unless downgrades are allowed, so two
controllers of different versions do not take turns rewriting a fleet.

`state: absent` removes everything the collection leaves on a device (uninstall_agent.ps1): the scheduled tasks,
C:\\ProgramData\\RemoteSupport, HKLM:\\SOFTWARE\\RemoteSupport, transfer temporary files and the event source. It
refuses while a session, a remote-control grant or a transfer is live, so nothing the session changed is left
without the script that would put it back.
"""

from __future__ import annotations

import dataclasses
import hashlib
import typing as t

from ansible_collections.remote_support.windows.plugins.module_utils import device_script
from ansible_collections.remote_support.windows.plugins.module_utils import support_policy
from ansible_collections.remote_support.windows.plugins.module_utils.errors import DeviceError

HEARTBEAT = "heartbeat"
# The session route's scripts, the ones support_session.TASK_SCRIPTS names (kept equal by a unit test).
SESSION_TASK_SCRIPTS = ("consent_prompt", "apply_consent", "expire_session")
COMPONENTS = (HEARTBEAT, *SESSION_TASK_SCRIPTS)

HEARTBEAT_TASK = device_script.layout()["tasks"]["heartbeat"]
HEARTBEAT_INTERVAL_SECONDS = 60
SYSTEM_ACCOUNTS = ("system", "nt authority\\system", "localsystem", "s-1-5-18")
TASK_ARGUMENTS = '-NoProfile -NonInteractive -ExecutionPolicy Bypass -WindowStyle Hidden -File "{path}"'

# Application event log id of an agent install, upgrade or repair, and of its removal (device_layout.json).
AGENT_CHANGED_EVENT_ID = device_script.event_id("agent.changed")
AGENT_REMOVED_EVENT_ID = device_script.event_id("agent.removed")

ARGUMENT_SPEC: dict[str, dict[str, t.Any]] = {
    "state": {"type": "str", "default": "present", "choices": ["present", "absent", "query"]},
    "allow_downgrade": {"type": "bool", "default": False},
}

# What happens to one script: nothing (current, newer_kept) or a write (installed, upgraded, repaired, downgraded).
WRITING = ("installed", "upgraded", "repaired", "downgraded")


def file_bytes(text: str) -> bytes:
    """A script as install_agent.ps1 (and set_support_session.ps1) writes it: UTF-8 with a byte-order mark."""
    return b"\xef\xbb\xbf" + text.encode("utf-8")


def file_sha256(text: str) -> str:
    return hashlib.sha256(file_bytes(text)).hexdigest()


def shipped() -> dict[str, device_script.DeviceScript]:
    return {name: device_script.load(name) for name in COMPONENTS}


@dataclasses.dataclass(frozen=True)
class ScriptPlan:
    name: str
    installed_version: int | None
    shipped_version: int
    action: str  # current | newer_kept | installed | upgraded | repaired | downgraded

    @property
    def writes(self) -> bool:
        return self.action in WRITING

    def as_dict(self) -> dict[str, t.Any]:
        version = self.shipped_version if self.writes else self.installed_version
        return {"installed_version": self.installed_version, "shipped_version": self.shipped_version,
                "version": version, "action": self.action}


def plan_script(name: str, script: t.Any, found: t.Mapping[str, t.Any] | None, allow_downgrade: bool) -> ScriptPlan:
    if not found or not found.get("present"):
        return ScriptPlan(name, None, script.version, "installed")
    installed = found.get("version")
    if found.get("sha256") == file_sha256(script.text):
        return ScriptPlan(name, installed, script.version, "current")
    if installed is None or installed == script.version:
        return ScriptPlan(name, installed, script.version, "repaired")  # altered, or not that script at all
    if installed < script.version:
        return ScriptPlan(name, installed, script.version, "upgraded")
    if allow_downgrade:
        return ScriptPlan(name, installed, script.version, "downgraded")
    return ScriptPlan(name, installed, script.version, "newer_kept")


def heartbeat_task_action(state: t.Mapping[str, t.Any]) -> tuple[str, str]:
    """What the heartbeat task needs (current, registered, repaired, enabled) and why."""
    task = state.get("heartbeat_task")
    if task is None:
        return "registered", f"the scheduled task {HEARTBEAT_TASK} is not registered"
    folder = state["folder"]["path"].rstrip("\\")
    execute = state["system_root"].rstrip("\\") + "\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"
    arguments = TASK_ARGUMENTS.format(path=f"{folder}\\{HEARTBEAT}.ps1")
    problems = []
    if task["execute"].strip().strip('"').lower() != execute.lower():
        problems.append(f"it runs {task['execute']!r}")
    if " ".join(task["arguments"].split()).lower() != arguments.lower():
        problems.append(f"its arguments are {task['arguments']!r}")
    if task["user_id"].strip().lower() not in SYSTEM_ACCOUNTS:
        problems.append(f"it runs as {task['user_id']!r}, not SYSTEM")
    if task["interval_seconds"] != HEARTBEAT_INTERVAL_SECONDS:
        problems.append(f"it repeats every {task['interval_seconds']} s, not {HEARTBEAT_INTERVAL_SECONDS} s")
    if problems:
        return "repaired", f"the scheduled task {HEARTBEAT_TASK} differs: " + "; ".join(problems)
    if task["state"].lower() == "disabled":
        return "enabled", f"the scheduled task {HEARTBEAT_TASK} is disabled"
    return "current", ""


@dataclasses.dataclass(frozen=True)
class AgentPlan:
    scripts: list[ScriptPlan]
    heartbeat_task: str
    heartbeat_reason: str
    lock_down_folder: bool

    @property
    def changed(self) -> bool:
        return any(s.writes for s in self.scripts) or self.heartbeat_task != "current" or self.lock_down_folder

    def changes(self) -> list[str]:
        found = [f"{s.name} {s.action}" + (f" ({s.installed_version} -> {s.shipped_version})"
                                           if s.action in ("upgraded", "downgraded") else "")
                 for s in self.scripts if s.writes]
        if self.heartbeat_task != "current":
            found.append(f"heartbeat task {self.heartbeat_task}")
        if self.lock_down_folder:
            found.append("scripts folder locked down")
        return found


def plan(state: t.Mapping[str, t.Any], scripts: t.Mapping[str, t.Any], allow_downgrade: bool) -> AgentPlan:
    files = state.get("files") or {}
    script_plans = [plan_script(name, scripts[name], files.get(name), allow_downgrade) for name in COMPONENTS]
    task_action, reason = heartbeat_task_action(state)
    # Writing any script locks the folder down as well; lock it down on its own only when nothing else is written.
    lock_down = not state["folder"]["locked_down"]
    return AgentPlan(script_plans, task_action, reason, lock_down)


def describe(state: t.Mapping[str, t.Any], work: AgentPlan, *, after: bool) -> dict[str, t.Any]:
    """The agent as the diff and the result show it: each script's version, the heartbeat task, the folder."""
    shown: dict[str, t.Any] = {}
    for script in work.scripts:
        shown[script.name] = script.shipped_version if after and script.writes else script.installed_version
    task = state.get("heartbeat_task")
    if after and work.heartbeat_task != "current":
        shown["heartbeat_task"] = "registered, every 60 s"
    elif task is None:
        shown["heartbeat_task"] = "not registered"
    else:
        shown["heartbeat_task"] = "disabled" if task["state"].lower() == "disabled" else \
            ("registered, every 60 s" if work.heartbeat_task == "current" else "registered, differs")
    shown["folder_locked_down"] = True if after else bool(state["folder"]["locked_down"])
    return shown


def found_lines(found: t.Mapping[str, t.Any]) -> list[str]:
    """What uninstall_agent.ps1 found (or removed), one line a piece."""
    lines = [f"scheduled task {name}" for name in found["tasks"]]
    for field, what in (("folder", "folder"), ("registry_key", "registry key"), ("event_source", "event source")):
        if found[field]:
            lines.append(f"{what} {found[field]}")
    lines += [f"transfer temporary file {path}" for path in found["partial_files"]]
    return lines


def remove(client: t.Any, *, check_mode: bool, diff: bool) -> dict[str, t.Any]:
    """support_agent state=absent on one device: one run of uninstall_agent.ps1 (check_only in check mode)."""
    try:
        with client.shell() as shell:
            done = shell.run(device_script.load("uninstall_agent"), {
                "check_only": check_mode,
                "audit": {"event_id": AGENT_REMOVED_EVENT_ID, "entry_type": "Information",
                          "message": "Support agent removed: scheduled tasks, scripts folder, registry key, transfer "
                                     "temporary files and this event source."},
            })
    except DeviceError as error:
        return support_policy.failure(error)
    pieces = found_lines(done["found"])
    result: dict[str, t.Any] = {
        "changed": False,
        "removed": pieces if done["removed"] else [],
        "device_time": done["device_time"],
        "device_status": "reachable",
        "connection": {"valid": True, "reason": None, "message": "WinRM connection and device script succeeded"},
    }
    if done["refused"] is not None:
        result.update(failed=True, refused=done["refused"]["reason"],
                      msg=f"The agent was not removed, nothing changed: {done['refused']['message']}")
        return result
    if not pieces:
        result["msg"] = "Nothing of the agent is on the device"
        return result
    result["changed"] = True
    result["changes"] = [f"{piece} removed" for piece in pieces]
    if diff:
        result["diff"] = {"before": {"agent": pieces}, "after": {"agent": []}}
    result["msg"] = ("Would remove: " if check_mode else "Removed: ") + ", ".join(pieces)
    return result


def run(client: t.Any, options: t.Mapping[str, t.Any], *, check_mode: bool, diff: bool) -> dict[str, t.Any]:
    """The support_agent task on one device; never raises for a device-side failure."""
    if options.get("state") == "absent":
        return remove(client, check_mode=check_mode, diff=diff)
    scripts = shipped()
    try:
        with client.shell() as shell:
            state = shell.run(device_script.load("get_agent_state"), {"components": list(COMPONENTS)})
            work = plan(state, scripts, bool(options.get("allow_downgrade")))
            result: dict[str, t.Any] = {
                "changed": False,
                "scripts": {s.name: s.as_dict() for s in work.scripts},
                "heartbeat_task": {"name": HEARTBEAT_TASK, "action": work.heartbeat_task,
                                   "interval_seconds": HEARTBEAT_INTERVAL_SECONDS,
                                   "registered": state.get("heartbeat_task") is not None},
                "scripts_folder": state["folder"]["path"],
                "last_checkin": state.get("last_checkin"),
                "device_time": state.get("device_time"),
                "device_status": "reachable",
                "connection": {"valid": True, "reason": None,
                               "message": "WinRM connection and device script succeeded"},
            }
            newer = [s.name for s in work.scripts if s.action == "newer_kept"]
            warnings = [f"{name} on the device is version {files_version(state, name)}, newer than the "
                        f"{scripts[name].version} this collection ships; kept (allow_downgrade=true replaces it)"
                        for name in newer]
            if warnings:
                result["warnings"] = warnings
            if not work.changed:
                result["msg"] = "The agent is as this collection ships it"
                return result
            if options.get("state", "present") == "query":
                result["msg"] = "Differs from what this collection ships: " + ", ".join(work.changes())
                return result
            if diff:
                result["diff"] = {"before": describe(state, work, after=False),
                                  "after": describe(state, work, after=True)}
            result["changed"] = True
            result["changes"] = work.changes()
            if check_mode:
                result["msg"] = "Would change: " + ", ".join(work.changes())
                return result
            request = {
                "files": {s.name: scripts[s.name].text for s in work.scripts if s.writes},
                "heartbeat_task": work.heartbeat_task != "current",
                "heartbeat_interval_seconds": HEARTBEAT_INTERVAL_SECONDS,
                "audit": {"event_id": AGENT_CHANGED_EVENT_ID, "entry_type": "Information",
                          "message": "Support agent: " + "; ".join(work.changes())},
            }
            done = shell.run(device_script.load("install_agent"), request)
            result["heartbeat_task"]["registered"] = result["heartbeat_task"]["registered"] or \
                done["heartbeat_task_registered"]
            result["last_checkin"] = done.get("last_checkin") or result["last_checkin"]
            result["device_time"] = done["device_time"]
            result["msg"] = "Changed: " + ", ".join(work.changes())
            return result
    except DeviceError as error:
        return support_policy.failure(error)


def files_version(state: t.Mapping[str, t.Any], name: str) -> t.Any:
    return (state.get("files") or {}).get(name, {}).get("version")
