# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The real-host suite (tests/windows, run by scripts/test-on-windows) uses only what a real device offers: this
collection's modules against the device, and nothing but controller-side steps on localhost. A task that reached for
the lab's control surface (a uri call, the lab manifest) would pass against the lab and fail on every real device."""

from __future__ import annotations

import glob
import os

import yaml

SUITE = os.path.join(os.path.dirname(__file__), "..", "..", "windows")
# Steps that act on the controller, or only steer the play.
CONTROLLER = {"ansible.builtin.command", "ansible.builtin.shell", "ansible.builtin.stat", "ansible.builtin.wait_for"}
STEERING = {"ansible.builtin.include_tasks", "ansible.builtin.set_fact", "ansible.builtin.meta"}
KEYWORDS = {"name", "when", "register", "vars", "delegate_to", "throttle", "ignore_errors", "changed_when", "until",
            "retries", "delay", "timeout", "environment", "block", "rescue", "always", "failed_when", "run_once"}


def _tasks(tasks):
    for task in tasks or []:
        yield task
        for part in ("block", "rescue", "always"):
            yield from _tasks(task.get(part))


def _suite_tasks():
    for path in sorted(glob.glob(os.path.join(SUITE, "*.yml"))):
        with open(path, encoding="utf-8") as handle:
            document = yaml.safe_load(handle)
        plays = document if isinstance(document, list) else []
        if plays and "hosts" in plays[0]:
            for play in plays:
                yield from ((path, task) for task in _tasks(play.get("tasks")))
        else:
            yield from ((path, task) for task in _tasks(plays))


def test_the_suite_has_tasks():
    assert len(list(_suite_tasks())) > 40


def test_the_suite_uses_only_the_collection_on_devices_and_the_controller_for_the_rest():
    for path, task in _suite_tasks():
        actions = [key for key in task if key not in KEYWORDS]
        if "block" in task:
            assert actions == [], (path, task.get("name"))
            continue
        assert len(actions) == 1, (path, task.get("name"), actions)
        action = actions[0]
        if action.startswith("remote_support.windows."):
            assert "delegate_to" not in task, (path, task["name"])
        elif action in CONTROLLER:
            assert task.get("delegate_to") == "localhost", (path, task["name"], "a controller step runs on localhost")
        else:
            assert action in STEERING, (path, task["name"], action)


def test_the_suite_never_reaches_for_the_lab():
    for path in glob.glob(os.path.join(SUITE, "*.yml")):
        with open(path, encoding="utf-8") as handle:
            text = handle.read().lower()
        for lab_only in ("manifest", "control.token", "/devices/", "ansible.builtin.uri", "winrm-lab", "winrm_lab"):
            assert lab_only not in text, (path, lab_only)
