# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet core: bounded concurrency, one device's failure kept to itself, and the support visit's outcome for
each way a device can answer. The per-device cores are replaced by recorders here; they have tests of their own and
the mass_support integration target runs them for real against lab fleets."""

from __future__ import annotations

import contextlib
import datetime
import threading
import time

import pytest

from ansible_collections.remote_support.windows.plugins.module_utils import fleet

NOW = datetime.datetime(2026, 11, 24, 10, 0, 0, tzinfo=datetime.timezone.utc)


def test_serve_keeps_to_the_concurrency_and_returns_every_host_in_order():
    running, peak, lock = [0], [0], threading.Lock()

    def work(host):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.01)
        with lock:
            running[0] -= 1
        return {"host": host}

    hosts = [f"desk-{i:03d}" for i in range(40)]
    seen = []
    results = fleet.serve(hosts, work, 5, lambda done, total, host, result: seen.append((done, total)))
    assert list(results) == hosts
    assert peak[0] <= 5
    assert [done for done, _total in seen] == list(range(1, 41)) and {total for _d, total in seen} == {40}


def test_one_devices_exception_is_its_own_named_failure():
    def work(host):
        if host == "bad":
            raise KeyError("boom")
        return {"changed": False}

    results = fleet.serve(["good", "bad", "other"], work, 3)
    assert results["good"] == {"changed": False} and results["other"] == {"changed": False}
    assert results["bad"]["failed"] is True
    assert "bad" in results["bad"]["msg"] and "KeyError" in results["bad"]["msg"]


def test_devices_not_started_have_no_result_and_no_progress():
    def work(host):
        if host.startswith("late"):
            raise fleet.NotStarted(host)
        return {}

    seen = []
    results = fleet.serve(["a", "late-1", "b", "late-2"], work, 1, lambda d, t, h, r: seen.append(h))
    assert list(results) == ["a", "b"] and sorted(seen) == ["a", "b"]


class Device:
    """Plays one device for SupportVisit: what support_session and file_transfer return, and what was asked."""

    def __init__(self, authorize, transfers=None, query=None):
        self.authorize = authorize
        self.transfers = transfers or {}
        self.query = query
        self.calls = []

    def session(self, client, options, **_kwargs):
        self.calls.append(options["state"])
        if options["state"] == "authorized":
            return self.authorize
        if options["state"] == "query":
            return self.query
        return {"changed": True, "state": "deauthorized", "session": {"id": "s1", "ended_at": "2026-11-24T10:05:00Z"}}

    def transfer(self, client, options, **_kwargs):
        self.calls.append(options["direction"])
        return self.transfers[options["direction"]]


def visit(monkeypatch, tmp_path, device, **options):
    monkeypatch.setattr(fleet.support_session, "run", device.session)
    monkeypatch.setattr(fleet.file_transfer, "run", device.transfer)
    settings = {"reason": "INC-1", "requested_by": "alice", "wait_timeout": 30, "poll_interval": 2,
                "idle_after": 900, "push": None, "collect": None, "end_session": True}
    settings.update(options)
    return fleet.SupportVisit(None, "desk-001", settings, check_mode=False, controller_now=lambda: NOW,
                              monotonic=time.monotonic, controller_host="ctl").run()


SESSION = {"id": "s1", "requested_by": "alice", "requested_at": "2026-11-24T10:00:00Z",
           "authorized_at": "2026-11-24T10:00:10Z", "expires_at": "2026-11-24T11:00:10Z", "ended_at": None}
AUTHORIZED = {"changed": True, "state": "authorized", "session": SESSION, "device_status": "active"}


def test_an_accepted_visit_pushes_collects_ends_and_records_each_file(monkeypatch, tmp_path):
    sent = {"changed": True, "size": 10, "sha256": "a" * 64, "src": "/x", "dest": "C:\\x", "transfer": {}}
    received = {"changed": True, "size": 20, "sha256": "b" * 64, "src": "C:\\y", "dest": str(tmp_path / "y")}
    device = Device(AUTHORIZED, {"to_device": sent, "from_device": received})
    record = visit(monkeypatch, tmp_path, device, push={"src": "/x", "dest": "C:\\x"},
                   collect={"src": "C:\\y", "dest": str(tmp_path)})
    assert device.calls == ["authorized", "to_device", "from_device", "deauthorized"]
    assert record["status"] == "done"
    assert (record["push_bytes"], record["push_sha256"]) == (10, "a" * 64)
    assert (record["collect_bytes"], record["collect_sha256"]) == (20, "b" * 64)
    assert record["ended_at"] == "2026-11-24T10:05:00Z" and record["authorized_at"] == SESSION["authorized_at"]
    assert (tmp_path / "desk-001").is_dir(), "each device's files land in a folder of its own"


@pytest.mark.parametrize("answer, status", [
    ({"failed": True, "state": "denied", "device_status": "active", "msg": "denied", "session": SESSION}, "denied"),
    ({"failed": True, "state": "timed_out", "device_status": "active", "msg": "no answer", "session": SESSION},
     "timed_out"),
    ({"failed": True, "state": "unavailable", "device_status": "idle", "msg": "Unable to connect"}, "idle"),
    ({"failed": True, "state": "unavailable", "device_status": "unreachable", "msg": "Unable to connect",
      "connection": {"reason": "refused", "message": "refused the connection"}}, "unreachable"),
    ({"failed": True, "msg": "Nobody is logged on at the device"}, "failed"),
])
def test_a_visit_that_is_not_authorized_is_classified_and_transfers_nothing(monkeypatch, tmp_path, answer, status):
    device = Device(answer, query={"state": "not_authorized", "session": None})
    record = visit(monkeypatch, tmp_path, device, push={"src": "/x", "dest": "C:\\x"})
    assert record["status"] == status
    assert "to_device" not in device.calls and "deauthorized" not in device.calls
    assert record["check"] and record["push_sha256"] is None


@pytest.mark.parametrize("msg, reason", [
    ("Unable to connect to the device: refused the connection",
     "Unable to connect to the device: refused the connection (refused)"),
    ("Unable to connect", "Unable to connect (refused); refused the connection"),
])
def test_an_unreachable_device_s_reason_says_why_once(monkeypatch, tmp_path, msg, reason):
    answer = {"failed": True, "state": "unavailable", "device_status": "unreachable", "msg": msg,
              "connection": {"reason": "refused", "message": "refused the connection"}}
    record = visit(monkeypatch, tmp_path, Device(answer, query={"state": "not_authorized", "session": None}))
    assert record["reason"] == reason


def test_a_prompt_still_open_when_the_wait_runs_out_is_timed_out_and_withdrawn(monkeypatch, tmp_path):
    pending = dict(SESSION, authorized_at=None)
    device = Device({"changed": False, "failed": True, "msg": "The client has not answered after 30 s"},
                    query={"state": "pending_confirmation", "session": pending})
    record = visit(monkeypatch, tmp_path, device)
    assert record["status"] == "timed_out" and "withdrawn" in record["reason"]
    assert device.calls == ["authorized", "query", "deauthorized"]


def test_a_session_someone_else_opened_is_used_but_not_ended(monkeypatch, tmp_path):
    theirs = dict(AUTHORIZED, changed=False, session=dict(SESSION, requested_by="bob"))
    device = Device(theirs)
    record = visit(monkeypatch, tmp_path, device)
    assert record["status"] == "done" and device.calls == ["authorized"]


def test_a_failed_transfer_fails_the_visit_and_still_ends_the_session(monkeypatch, tmp_path):
    refused = {"failed": True, "changed": False, "msg": "Sending failed: not allowed", "error_code": "path_not_allowed"}
    device = Device(AUTHORIZED, {"to_device": refused})
    record = visit(monkeypatch, tmp_path, device, push={"src": "/x", "dest": "C:\\x"})
    assert record["status"] == "failed" and record["reason"].startswith("push: ")
    assert "policy" in record["check"]
    assert device.calls[-1] == "deauthorized"


class ShellCounter:
    """A client that counts the shells opened and closed on it."""

    def __init__(self):
        self.opened = self.closed = 0

    @contextlib.contextmanager
    def shell(self):
        self.opened += 1
        try:
            yield f"shell-{self.opened}"
        finally:
            self.closed += 1


def test_a_visit_runs_its_steps_in_one_shell_and_opens_a_new_one_after_a_failed_step(monkeypatch, tmp_path):
    client = ShellCounter()
    shells = []

    def step(result):
        def run(steps, options, **_kwargs):
            with steps.shell() as shell:
                shells.append(shell)
            return result(options) if callable(result) else result
        return run

    sent = {"changed": True, "size": 10, "sha256": "a" * 64, "src": "/x", "dest": "C:\\x", "transfer": {}}
    lost = {"changed": False, "failed": True, "msg": "connection lost", "error_code": "connection_lost"}
    monkeypatch.setattr(fleet.support_session, "run", step(
        lambda options: AUTHORIZED if options["state"] == "authorized" else
        {"changed": True, "state": "deauthorized", "session": {"id": "s1", "ended_at": None}}))
    monkeypatch.setattr(fleet.file_transfer, "run", step(lambda options: sent if options["direction"] == "to_device"
                                                         else lost))
    settings = {"reason": "INC-1", "requested_by": "alice", "wait_timeout": 30, "poll_interval": 2,
                "idle_after": 900, "push": {"src": "/x", "dest": "C:\\x"},
                "collect": {"src": "C:\\y", "dest": str(tmp_path)}, "end_session": True}
    record = fleet.SupportVisit(client, "desk-001", settings, check_mode=False, controller_now=lambda: NOW,
                                monotonic=time.monotonic, controller_host="ctl").run()
    assert record["status"] == "failed" and record["reason"].startswith("collect:")
    # authorize, push and collect share the first shell; the collect failed, so ending the session opens another.
    assert shells == ["shell-1", "shell-1", "shell-1", "shell-2"]
    assert client.opened == client.closed == 2
