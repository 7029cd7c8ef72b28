# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""file_transfer's core against an in-memory device that speaks the transfer scripts' stream protocol as their
contracts describe it: every input the engine sends and every line, frame and result the fake answers is checked
against file_transfer_*.contract.json, so the fake cannot drift from what the lab and Windows do."""

from __future__ import annotations

import datetime
import hashlib
import json
import ntpath
import os
import random
import shutil
import types

import jsonschema
import pytest

from ansible_collections.remote_support.windows.plugins.module_utils import device_script, file_transfer
from ansible_collections.remote_support.windows.plugins.module_utils.file_transfer_framing import (
    FrameReader,
    LineReader,
    chunk_for,
)
from ansible_collections.remote_support.windows.plugins.module_utils import session_state as sm
from ansible_collections.remote_support.windows.plugins.module_utils.device_info import format_utc
from ansible_collections.remote_support.windows.plugins.module_utils.errors import DeviceError
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_streaming import (
    StreamOutput,
    envelope_bytes,
    send_chunk_bytes,
)

START = datetime.datetime(2026, 11, 24, 10, 0, 0, tzinfo=datetime.timezone.utc)
ENVELOPE_KB = 64  # small chunks keep the tests quick and make several chunks out of little data
CHUNK = chunk_for(envelope_bytes(ENVELOPE_KB))
FOLDER = "C:\\Users\\ana\\Documents"
LOST = "The connection to 10.0.0.5:5986 was lost in the middle of an exchange (Connection to workstation lost)."


def _contract(name):
    with open(os.path.join(device_script.SCRIPTS_DIR, f"{name}.contract.json"), encoding="utf-8") as handle:
        return json.load(handle)


SCRIPT_NAMES = ("get_device_facts", "get_support_session", "file_transfer_prepare", "file_transfer_send",
                "file_transfer_receive")
CONTRACTS = {name: _contract(name) for name in SCRIPT_NAMES}


@pytest.fixture(autouse=True)
def scripts_by_name(monkeypatch):
    """The fake dispatches on the script's name; the scripts' text and contracts are checked elsewhere."""
    monkeypatch.setattr(file_transfer.device_script, "load",
                        lambda name: types.SimpleNamespace(name=name, text=f"# device-script: {name}\n"))
    monkeypatch.setattr(file_transfer.session_gate.device_script, "load",
                        lambda name: types.SimpleNamespace(name=name, text=f"# device-script: {name}\n"))


def authorized_record(now=START, ttl=3600):
    return sm.request(None, now, requested_by="jdoe", reason="INC-4711", confirmation_required=False,
                      ttl_seconds=ttl, session_id="s-1").to_dict()


class FakeDevice:
    """A Windows device as the transfer scripts' contracts describe it: files, a session, a policy."""

    def __init__(self, record="authorized", active=True, os_caption="Microsoft Windows 11 Pro", free=10**12,
                 max_size=4 * 1024**3, roots=("C:\\Users",), envelope_kb=ENVELOPE_KB):
        self.now = START
        self.record = authorized_record() if record == "authorized" else record
        self.active = active
        self.os_caption = os_caption
        self.free = free
        self.policy = {"allowed_roots": list(roots), "max_size_bytes": max_size, "source": "device"}
        self.envelope_kb = envelope_kb
        self.files: dict[str, bytearray] = {}
        self.folders = {"c:\\users", "c:\\users\\ana", FOLDER.lower()}
        self.denied: set[str] = set()
        self.locked: set[str] = set()
        self.transfers: set[str] = set()
        self.events: list[int] = []
        self.streams: list[FakeStream] = []
        self.ran: list[str] = []
        # Faults: raise "connection lost" once the device received this many file bytes (to_device) or on this
        # Receive of a from_device stream; call on_bytes(device, bytes so far) after every chunk.
        self.drop_after_bytes = None
        self.drop_on_receive = None
        self.on_bytes = None

    # --- the shell -----------------------------------------------------------------------------------------------
    def shell(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def run(self, script, script_input=None):
        contract = CONTRACTS[script.name]
        jsonschema.validate(script_input or {}, contract["input"])
        self.ran.append(script.name)
        answer = getattr(self, script.name)(script_input or {})
        jsonschema.validate(answer, contract["output"])
        return answer

    def start_stream(self, script, script_input, envelope=None):
        stream = FakeStream(self, script.name, script_input, envelope)
        self.streams.append(stream)
        return stream

    # --- the scripts ---------------------------------------------------------------------------------------------
    def get_device_facts(self, _input):
        last = self.now - datetime.timedelta(seconds=30 if self.active else 86400)
        return {"computer_name": "DESK-1", "serial_number": "SN1", "manufacturer": "HP", "model": "EliteDesk",
                "chassis_types": [3], "device_type": "desktop", "os_caption": self.os_caption,
                "os_version": "10.0.22631", "os_product_type": 1, "last_checkin": format_utc(last),
                "device_time": format_utc(self.now), "script_version": 1}

    def get_support_session(self, _input):
        return {"script_version": 2, "device_time": format_utc(self.now),
                "policy": {"confirmation_required": False, "confirmation_timeout_seconds": 300,
                           "session_ttl_seconds": 3600, "source": "device"},
                "interactive_user": {"name": "CONTOSO\\ana", "session_id": 1}, "session": self.record}

    def file_transfer_prepare(self, request):
        result = {"script_version": 2, "device_time": format_utc(self.now), "max_envelope_size_kb": self.envelope_kb,
                  "policy": self.policy, "path": None, "file": None, "parent_exists": False, "partial": None,
                  "free_space_bytes": None, "refusal": None}
        try:
            path = request["path"]
            if request["direction"] == "to_device" and (path.endswith("\\") or path.lower() in self.folders):
                path = ntpath.join(path.rstrip("\\"), request["file_name"])
            if len(path) >= 260:
                raise Refused("name_too_long", "The specified path, file name, or both are too long.")
            result["path"] = path
            if not any(path.lower().startswith(root.lower() + "\\") for root in self.policy["allowed_roots"]):
                raise Refused("path_not_allowed", f"'{path}' is outside the folders this device allows file "
                                                  "transfers in (policy FileTransferAllowedRoots: C:\\Users).")
            parent = ntpath.dirname(path)
            result["parent_exists"] = parent.lower() in self.folders
            result["free_space_bytes"] = self.free
            data = self.files.get(path.lower())
            is_folder = path.lower() in self.folders
            result["file"] = {"exists": data is not None or is_folder, "is_directory": is_folder,
                              "size": None if data is None else len(data), "sha256": None,
                              "last_write_time": None if data is None else format_utc(self.now), "read_only": False}
            if data is not None and request["hash_if_size"] == len(data):
                self.check_open(path)
                result["file"]["sha256"] = hashlib.sha256(data).hexdigest()
            if request["direction"] == "to_device":
                if is_folder:
                    raise Refused("is_directory", f"'{path}' is a folder.")
                if request["size"] > self.policy["max_size_bytes"]:
                    raise Refused("too_large", "The file is too large for this device's policy.")
                partial = self.files.get(self.partial_path(path, request["transfer_id"]).lower())
                if partial is not None:
                    result["partial"] = {"path": self.partial_path(path, request["transfer_id"]), "size": len(partial)}
                needed = request["size"] - (len(partial) if partial is not None and len(partial) <= request["size"]
                                            else 0)
                if needed > self.free:
                    raise Refused("disk_full", "There is not enough space on the disk.")
                if data is not None:
                    self.check_open(path)
            else:
                if data is None and not is_folder:
                    raise Refused("not_found", f"Could not find file '{path}'.")
                if is_folder:
                    raise Refused("is_directory", f"'{path}' is a folder.")
                if len(data) > self.policy["max_size_bytes"]:
                    raise Refused("too_large", "The file is too large for this device's policy.")
                self.check_open(path)
        except Refused as refusal:
            result["refusal"] = {"code": refusal.code, "message": refusal.message}
        return result

    # --- what the scripts share ----------------------------------------------------------------------------------
    @staticmethod
    def partial_path(path, transfer_id):
        return ntpath.join(ntpath.dirname(path), f"~rs-{transfer_id}.partial")

    def check_open(self, path):
        if path.lower() in self.denied:
            raise Refused("access_denied", f"Access to the path '{path}' is denied.")
        if path.lower() in self.locked:
            raise Refused("in_use", f"The process cannot access the file '{path}' because it is being used by "
                                    "another process.")

    def session_stop(self, session_id, transfer_id):
        record = self.record
        message = None
        if record is None:
            message = "The device has no support session."
        elif record["id"] != session_id:
            message = "The support session was replaced."
        elif record["state"] == "deauthorized":
            message = f"The support session was deauthorized by {record['ended_by']} at {record['ended_at']}."
        elif record["state"] == "expired" or (record["state"] == "authorized" and
                                              format_utc(self.now) >= record["expires_at"]):
            message = f"The support session's authorization expired at {record['expires_at']}."
        elif record["state"] != "authorized":
            message = f"The support session is {record['state']}."
        elif transfer_id is not None and transfer_id not in self.transfers:
            message = "The transfer was ended on the device."
        return None if message is None else {"message": message, "session": record}

    def deauthorize(self):
        self.record = sm.deauthorize(sm.SessionRecord.from_dict(self.record), self.now, ended_by="boss").record.to_dict()
        self.transfers.clear()  # what set_support_session's end_activities does

    def expire(self, seconds=3600):
        self.now += datetime.timedelta(seconds=seconds)


class Refused(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


class FakeStream:
    """The device side of one file_transfer_send or file_transfer_receive command, as its contract describes it."""

    def __init__(self, device, name, request, envelope):
        jsonschema.validate(request, CONTRACTS[name]["input"])
        self.device = device
        self.name = name
        self.request = request
        self.envelope = envelope
        self.chunk_bytes = send_chunk_bytes(envelope)  # what one Send may carry; the engine's chunk is smaller
        self.done = False
        self.exit_code = None
        self.stdout = bytearray()
        self.stdin = bytearray()
        self.sends = []  # sizes of the Sends' data
        self.receives = 0
        self.received_file_bytes = 0
        self.ended = False
        self.state = "start"
        self.result = {"kind": "result", "script_version": 2, "device_time": None, "outcome": "failed",
                       "path": request["path"], "offset": None, "error": None, "session": None, "audit_event_id": None}
        if name == "file_transfer_send":
            self.result.update(size=request["size"], bytes_written=0, sha256=None, replaced=False)
            self.start_send()
        else:
            self.result.update(size=None, bytes_sent=0, sha256=None)
            self.start_receive()

    # --- the engine's side of WinRM ------------------------------------------------------------------------------
    def send_envelope(self, data, end=False):
        assert len(data) <= self.chunk_bytes, "a Send larger than the envelope allows"
        return (b"E" if end else b"-") + bytes(data)

    def send_message(self, message):
        data, end = message[1:], message[:1] == b"E"
        assert not self.ended, "a Send after End"
        self.sends.append(len(data))
        drop = self.device.drop_after_bytes
        if drop is not None and self.received_file_bytes + len(data) > drop:
            self.device.drop_after_bytes = None
            raise DeviceError("protocol", LOST)
        self.ended = end
        if self.done:
            return  # a finished command's stdin is not read
        self.stdin.extend(data)
        if self.name == "file_transfer_send":
            self.feed_send()
        else:
            self.feed_receive()

    def send(self, data, end=False):
        self.send_message(self.send_envelope(data, end))

    def receive(self):
        self.receives += 1
        if self.device.drop_on_receive is not None and self.receives >= self.device.drop_on_receive:
            self.device.drop_on_receive = None
            raise DeviceError("protocol", LOST)
        if self.name == "file_transfer_receive" and self.state == "frames":
            self.next_frame()
        output = StreamOutput(bytes(self.stdout), b"", self.done, self.exit_code)
        self.stdout.clear()
        return output

    def terminate(self):
        self.done = True

    # --- the device ----------------------------------------------------------------------------------------------
    def write_line(self, message, kind):
        schema = CONTRACTS[self.name]["output"] if kind == "result" else CONTRACTS[self.name]["messages"][kind]
        jsonschema.validate(message, schema)
        self.stdout.extend(json.dumps(message).encode() + b"\n")

    def finish(self, outcome, error=None, session=None):
        device = self.device
        self.result.update(outcome=outcome, error=error, session=session, device_time=format_utc(device.now))
        if self.state != "refused":
            device.transfers.discard(self.request["transfer_id"])
            self.result["audit_event_id"] = {"completed": 1030, "stopped": 1031, "failed": 1032}[outcome]
            device.events.append(self.result["audit_event_id"])
        if self.name == "file_transfer_receive" and self.state in ("frames", "ready"):
            self.stdout.extend(b"\0\0\0\0")
        self.write_line(self.result, "result")
        self.state = "done"
        self.done = True
        self.exit_code = 0

    def register(self):
        stop = self.device.session_stop(self.request["session_id"], None)
        if stop is not None:
            self.state = "refused"
            self.finish("failed", {"code": "session_not_authorized", "message": stop["message"]}, stop["session"])
            return False
        self.device.transfers.add(self.request["transfer_id"])
        return True

    # file_transfer_send -----------------------------------------------------------------------------------------
    def start_send(self):
        if not self.register():
            return
        path = self.request["path"]
        self.temp = self.device.partial_path(path, self.request["transfer_id"]).lower()
        files = self.device.files
        kept = files.setdefault(self.temp, bytearray())
        if not self.request["resume"] or len(kept) > self.request["size"]:
            kept.clear()
        self.write_line({"kind": "ready", "offset": len(kept), "prefix_sha256": hashlib.sha256(kept).hexdigest()},
                        "ready")
        self.state = "ready"

    def feed_send(self):
        files, request = self.device.files, self.request
        if self.state == "ready":
            end = self.stdin.find(b"\n")
            if end < 0:
                return
            start = int(self.stdin[:end])
            del self.stdin[:end + 1]
            kept = files[self.temp]
            assert start in (0, len(kept))
            del kept[start:]
            self.result["offset"] = start
            self.state = "data"
            self.since_check = 0
        if self.state == "data":
            remaining = request["size"] - len(files[self.temp])
            take = bytes(self.stdin[:remaining])
            del self.stdin[:len(take)]
            position = 0
            while position < len(take):
                piece = take[position:position + request["chunk_bytes"] - self.since_check]
                files[self.temp].extend(piece)
                position += len(piece)
                self.received_file_bytes += len(piece)
                self.result["bytes_written"] += len(piece)
                self.since_check += len(piece)
                if self.since_check >= request["chunk_bytes"] or len(files[self.temp]) == request["size"]:
                    self.since_check = 0
                    if self.device.on_bytes:
                        self.device.on_bytes(self.device, len(files[self.temp]))
                    stop = self.device.session_stop(request["session_id"], request["transfer_id"])
                    if stop is not None:
                        del files[self.temp]
                        self.finish("stopped", {"code": "session_ended", "message": stop["message"]}, stop["session"])
                        return
                    self.write_line({"kind": "progress", "bytes": len(files[self.temp])}, "progress")
            if len(files[self.temp]) == request["size"]:
                self.state = "trailer"
        if self.state == "trailer":
            end = self.stdin.find(b"\n")
            if end < 0:
                return
            expected = bytes(self.stdin[:end]).decode()
            data = files.pop(self.temp)
            actual = hashlib.sha256(data).hexdigest()
            self.result["sha256"] = actual
            if actual != expected:
                self.finish("failed", {"code": "hash_mismatch", "message": "The file arrived damaged."})
                return
            path = request["path"].lower()
            if path in files and not request["overwrite"]:
                self.finish("failed", {"code": "exists", "message": "The file already exists."})
                return
            self.result["replaced"] = path in files
            files[path] = data
            self.device.folders.add(ntpath.dirname(path))
            self.finish("completed")

    # file_transfer_receive ----------------------------------------------------------------------------------------
    def start_receive(self):
        if not self.register():
            return
        self.data = bytes(self.device.files[self.request["path"].lower()])
        self.result["size"] = len(self.data)
        kept = self.request["offset"] if self.request["offset"] <= len(self.data) else 0
        self.write_line({"kind": "ready", "offset": kept, "size": len(self.data),
                         "prefix_sha256": hashlib.sha256(self.data[:kept]).hexdigest()}, "ready")
        self.kept = kept
        self.state = "ready"

    def feed_receive(self):
        if self.state == "ready" and b"\n" in self.stdin:
            start = int(self.stdin[:self.stdin.find(b"\n")])
            assert start in (0, self.kept)
            self.position = start
            self.result["offset"] = start
            self.state = "frames"

    def next_frame(self):
        if self.position >= len(self.data):
            self.result["sha256"] = hashlib.sha256(self.data).hexdigest()
            self.finish("completed")
            return
        piece = self.data[self.position:self.position + self.request["chunk_bytes"]]
        self.stdout.extend(len(piece).to_bytes(4, "big") + piece)
        self.position += len(piece)
        self.result["bytes_sent"] += len(piece)
        if self.device.on_bytes:
            self.device.on_bytes(self.device, self.position)
        stop = self.device.session_stop(self.request["session_id"], self.request["transfer_id"])
        if stop is not None:
            self.finish("stopped", {"code": "session_ended", "message": stop["message"]}, stop["session"])


# --- running the core ------------------------------------------------------------------------------------------------

def run(device, check_mode=False, diff=False, progress=None, **options):
    base = {"direction": "to_device", "src": "", "dest": FOLDER + "\\report.bin", "force": True,
            "requested_by": "jdoe", "idle_after": 900}
    base.update(options)
    return file_transfer.run(device, base, check_mode=check_mode, diff=diff, controller_now=lambda: device.now,
                             monotonic=lambda: 0.0, progress=progress or (lambda line: None),
                             controller_host="controller-1")


@pytest.fixture
def local_file(tmp_path):
    def make(size, name="report.bin", seed=7):
        path = tmp_path / name
        path.write_bytes(random.Random(seed).randbytes(size))
        return str(path)
    return make


SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17]


@pytest.mark.parametrize("size", SIZES)
def test_sending_any_size_arrives_whole_in_one_command(local_file, size):
    device = FakeDevice()
    src = local_file(size)
    result = run(device, src=src)
    data = open(src, "rb").read()
    assert "failed" not in result, result["msg"]
    assert result["changed"] is True and result["transfer"]["result"] == "Successfully sent"
    assert bytes(device.files[(FOLDER + "\\report.bin").lower()]) == data
    assert result["sha256"] == hashlib.sha256(data).hexdigest()
    assert result["transfer"]["bytes_transferred"] == size and result["transfer"]["percent"] == 100
    stream, = device.streams
    # One Send per chunk of the file (the first also carries the start line, the last the SHA-256): exactly one
    # chunk is one Send, one byte more is two.
    assert len(stream.sends) == max(1, -(-size // CHUNK))
    assert result["transfer"]["chunk_bytes"] == CHUNK
    assert not [name for name in device.files if name.endswith(".partial")]
    assert device.events == [1030]


@pytest.mark.parametrize("size", SIZES)
def test_receiving_any_size_arrives_whole(tmp_path, size):
    device = FakeDevice()
    data = random.Random(size).randbytes(size)
    device.files[(FOLDER + "\\log.bin").lower()] = bytearray(data)
    dest = tmp_path / "out" / "log.bin"
    result = run(device, direction="from_device", src=FOLDER + "\\log.bin", dest=str(dest))
    assert "failed" not in result, result["msg"]
    assert result["transfer"]["result"] == "Successfully received" and result["transfer"]["direction"] == "receiving"
    assert dest.read_bytes() == data
    assert not [p for p in os.listdir(dest.parent) if p.endswith(".partial")]


def test_a_folder_as_destination_receives_the_file_under_its_name(local_file, tmp_path):
    device = FakeDevice()
    result = run(device, src=local_file(10, name="notes.txt"), dest=FOLDER + "\\")
    assert result["dest"] == FOLDER + "\\notes.txt"
    assert (FOLDER + "\\notes.txt").lower() in device.files
    device.files[(FOLDER + "\\a.log").lower()] = bytearray(b"x")
    back = run(device, direction="from_device", src=FOLDER + "\\a.log", dest=str(tmp_path) + os.sep)
    assert back["dest"] == str(tmp_path / "a.log") and (tmp_path / "a.log").read_bytes() == b"x"


def test_identical_content_is_not_changed_and_nothing_streams(local_file):
    device = FakeDevice()
    src = local_file(5000)
    device.files[(FOLDER + "\\report.bin").lower()] = bytearray(open(src, "rb").read())
    result = run(device, src=src, diff=True)
    assert result["changed"] is False and "failed" not in result
    assert not device.streams
    assert result["diff"]["before"] == result["diff"]["after"]


def test_force_false_keeps_a_different_file(local_file):
    device = FakeDevice()
    device.files[(FOLDER + "\\report.bin").lower()] = bytearray(b"the user's own version")
    result = run(device, src=local_file(5000), force=False)
    assert result["changed"] is False and "failed" not in result and result["transfer"]["result"] == "Not sent"
    assert bytes(device.files[(FOLDER + "\\report.bin").lower()]) == b"the user's own version"
    assert not device.streams


def test_force_replaces_a_different_file(local_file):
    device = FakeDevice()
    device.files[(FOLDER + "\\report.bin").lower()] = bytearray(b"old")
    src = local_file(5000)
    result = run(device, src=src, diff=True)
    assert result["changed"] is True and bytes(device.files[(FOLDER + "\\report.bin").lower()]) == open(src, "rb").read()
    assert "size: 3 bytes" in result["diff"]["before"] and "not computed" in result["diff"]["before"]
    assert result["sha256"] in result["diff"]["after"]


@pytest.mark.parametrize("direction", ["to_device", "from_device"])
def test_check_mode_changes_nothing_and_shows_the_diff(local_file, tmp_path, direction):
    device = FakeDevice()
    if direction == "to_device":
        src, dest = local_file(5000), FOLDER + "\\report.bin"
    else:
        device.files[(FOLDER + "\\log.bin").lower()] = bytearray(b"y" * 5000)
        src, dest = FOLDER + "\\log.bin", str(tmp_path / "log.bin")
    before = {name: bytes(data) for name, data in device.files.items()}
    result = run(device, check_mode=True, diff=True, direction=direction, src=src, dest=dest)
    assert result["changed"] is True and "failed" not in result and result["msg"].startswith("Would ")
    assert result["diff"]["before"] == "(absent)\n" and "size: 5000 bytes" in result["diff"]["after"]
    assert not device.streams and {n: bytes(d) for n, d in device.files.items()} == before
    assert not os.listdir(tmp_path) or direction == "to_device"


# --- the session decides --------------------------------------------------------------------------------------------

def _record(state):
    record = sm.SessionRecord.from_dict(authorized_record())
    if state == "pending_confirmation":
        return sm.request(None, START, requested_by="jdoe", reason="x", session_id="s-2").to_dict()
    if state == "deauthorized":
        return sm.deauthorize(record, START, ended_by="boss").record.to_dict()
    if state == "expired":
        return authorized_record(now=START - datetime.timedelta(hours=2))  # expires_at passed by the device's clock
    return None


@pytest.mark.parametrize("state,words", [
    (None, "request authorization first"),
    ("pending_confirmation", "waiting for the client to confirm"),
    ("deauthorized", "ended by boss"),
    ("expired", "expired at 2026-11-24T09:00:00Z; request authorization again"),
])
def test_only_an_authorized_session_may_transfer(local_file, state, words):
    device = FakeDevice(record=_record(state))
    result = run(device, src=local_file(10))
    assert result["failed"] is True and result["changed"] is False
    assert result["msg"].startswith("Sending failed: ") and words in result["msg"]
    assert result["error_code"] == "session_not_authorized"
    assert "file_transfer_prepare" not in device.ran and not device.streams


def test_an_idle_device_is_unavailable(local_file):
    result = run(FakeDevice(active=False), src=local_file(10))
    assert result["failed"] is True and result["state"] == "unavailable"
    assert "Unable to connect to the device" in result["msg"] and result["error_code"] == "device_not_active"


def test_file_transfer_is_windows_only(local_file):
    result = run(FakeDevice(os_caption="Ubuntu 24.04"), src=local_file(10))
    assert result["failed"] is True and "only on Windows devices" in result["msg"]


def test_an_unreachable_device_says_so():
    class Unreachable:
        def shell(self):
            raise DeviceError("refused", "10.0.0.5:5986 refused the connection.")

    result = file_transfer.run(Unreachable(), {"direction": "to_device", "src": "/x", "dest": "C:\\x",
                                               "force": True, "requested_by": "j", "idle_after": 900},
                               check_mode=False, diff=False, controller_now=lambda: START, monotonic=lambda: 0.0,
                               progress=lambda line: None, controller_host="c")
    assert result["failed"] is True and result["connection"]["reason"] == "refused"
    assert result["msg"] == "Sending failed: Unable to connect to the device: 10.0.0.5:5986 refused the connection."


# --- refusals -------------------------------------------------------------------------------------------------------

def _existing(device, marks):
    """An existing x.bin, marked held open or denied."""
    marks.add((FOLDER + "\\x.bin").lower())
    device.files[(FOLDER + "\\x.bin").lower()] = bytearray(b"1")


@pytest.mark.parametrize("setup,dest,code,words", [
    (lambda d: None, "C:\\Windows\\System32\\x.bin", "path_not_allowed", "FileTransferAllowedRoots"),
    (lambda d: setattr(d, "free", 100), FOLDER + "\\x.bin", "disk_full", "not enough space"),
    (lambda d: d.policy.update(max_size_bytes=1000), FOLDER + "\\x.bin", "too_large", "support_policy"),
    (lambda d: _existing(d, d.locked), FOLDER + "\\x.bin", "in_use", "being used by another process"),
    (lambda d: _existing(d, d.denied), FOLDER + "\\x.bin", "access_denied", "is denied"),
    (lambda d: None, FOLDER + "\\" + "n" * 250 + ".bin", "name_too_long", "too long"),
    # the destination folder holds a folder of the file's name
    (lambda d: d.folders.add((FOLDER + "\\x.bin").lower()), FOLDER + "\\", "is_directory", "folder"),
])
def test_refusals_say_what_happened_and_what_to_do(local_file, setup, dest, code, words):
    device = FakeDevice()
    setup(device)
    result = run(device, src=local_file(5000, name="x.bin"), dest=dest)
    assert result["failed"] is True and result["error_code"] == code, result["msg"]
    assert words in result["msg"] and result["transfer"]["result"] == "Sending failed"
    assert not device.streams


def test_a_local_folder_is_refused_as_the_product_refuses_folders(tmp_path):
    device = FakeDevice()
    result = run(device, src=str(tmp_path))
    assert result["failed"] is True and result["error_code"] == "is_directory"
    assert "Folders are not transferred" in result["msg"]


def test_a_missing_source_is_named(tmp_path):
    device = FakeDevice()
    sent = run(device, src=str(tmp_path / "nope"))
    assert sent["error_code"] == "not_found"
    assert sent["msg"] == f"Sending failed: Could not find file '{tmp_path / 'nope'}' on the controller."
    received = run(device, direction="from_device", src=FOLDER + "\\nope.txt", dest=str(tmp_path))
    assert received["error_code"] == "not_found" and received["transfer"]["result"] == "Sending failed"
    # A receive says so, names the path on the device and what to check there.
    assert received["msg"].startswith(f"Receiving failed: Could not find file '{FOLDER}\\nope.txt'."), received["msg"]
    assert "Check src: it must name an existing file on DESK-1 " in received["msg"]


def test_a_receive_the_controller_has_no_room_for_is_refused_before_a_byte_moves(tmp_path, monkeypatch):
    device = FakeDevice()
    _received(device)
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=1000))
    result = run(device, direction="from_device", src=FOLDER + "\\log.bin", dest=str(tmp_path / "log.bin"))
    assert result["failed"] is True and result["error_code"] == "disk_full", result["msg"]
    assert "not enough space on the controller: 60000 bytes are needed and 1000 bytes are free" in result["msg"]
    assert not device.streams and os.listdir(tmp_path) == []


def test_a_device_folder_is_not_received(tmp_path):
    device = FakeDevice()
    result = run(device, direction="from_device", src=FOLDER, dest=str(tmp_path / "x"))
    assert result["failed"] is True and result["error_code"] == "is_directory"


# --- interruptions ----------------------------------------------------------------------------------------------------

def test_a_lost_connection_leaves_no_destination_and_the_rerun_resumes(local_file):
    device = FakeDevice()
    src = local_file(10 * CHUNK + 123)
    device.drop_after_bytes = 4 * CHUNK + 50
    first = run(device, src=src)
    assert first["failed"] is True and first["error_code"] == "connection_lost"
    assert "Connection to workstation lost" in first["msg"] and "resumes" in first["msg"]
    assert (FOLDER + "\\report.bin").lower() not in device.files
    partial = [name for name in device.files if name.endswith(".partial")]
    assert partial and len(device.files[partial[0]]) == 4 * CHUNK
    second = run(device, src=src)
    assert "failed" not in second, second["msg"]
    assert second["transfer"]["resumed_from"] == 4 * CHUNK
    assert second["transfer"]["bytes_transferred"] == 6 * CHUNK + 123
    assert bytes(device.files[(FOLDER + "\\report.bin").lower()]) == open(src, "rb").read()
    assert not [name for name in device.files if name.endswith(".partial")]


def test_a_partial_of_other_content_is_not_resumed(local_file):
    device = FakeDevice()
    src = local_file(5 * CHUNK)
    device.drop_after_bytes = 2 * CHUNK + 1
    run(device, src=src)
    src = local_file(5 * CHUNK, seed=99)  # the same name, other content
    second = run(device, src=src)
    assert "failed" not in second and second["transfer"]["resumed_from"] == 0
    assert bytes(device.files[(FOLDER + "\\report.bin").lower()]) == open(src, "rb").read()


def test_receiving_resumes_after_a_lost_connection(tmp_path):
    device = FakeDevice()
    data = random.Random(3).randbytes(8 * CHUNK + 5)
    device.files[(FOLDER + "\\log.bin").lower()] = bytearray(data)
    dest = tmp_path / "log.bin"
    device.drop_on_receive = 4
    first = run(device, direction="from_device", src=FOLDER + "\\log.bin", dest=str(dest))
    assert first["failed"] is True and first["error_code"] == "connection_lost"
    assert not dest.exists()
    partials = [p for p in os.listdir(tmp_path) if p.endswith(".partial")]
    assert partials
    second = run(device, direction="from_device", src=FOLDER + "\\log.bin", dest=str(dest))
    assert "failed" not in second, second["msg"]
    assert second["transfer"]["resumed_from"] > 0
    assert dest.read_bytes() == data and not [p for p in os.listdir(tmp_path) if p.endswith(".partial")]


@pytest.mark.parametrize("direction", ["to_device", "from_device"])
@pytest.mark.parametrize("how,words", [("deauthorize", "ended by boss"), ("expire", "expired at")])
def test_deauthorizing_or_expiry_mid_way_stops_cleanly(local_file, tmp_path, direction, how, words):
    device = FakeDevice()

    def stop_at_the_third_chunk(dev, done):
        if done >= 3 * CHUNK and dev.record["state"] == "authorized" and dev.now == START:
            dev.deauthorize() if how == "deauthorize" else dev.expire()

    device.on_bytes = stop_at_the_third_chunk
    if direction == "to_device":
        src, dest = local_file(8 * CHUNK), FOLDER + "\\report.bin"
    else:
        device.files[(FOLDER + "\\log.bin").lower()] = bytearray(b"z" * (8 * CHUNK))
        src, dest = FOLDER + "\\log.bin", str(tmp_path / "log.bin")
    result = run(device, direction=direction, src=src, dest=dest)
    assert result["failed"] is True and result["error_code"] == "session_ended"
    failed = "Sending failed: " if direction == "to_device" else "Receiving failed: "
    assert result["msg"].startswith(failed) and words in result["msg"]
    assert result["transfer"]["result"] == "Sending failed"
    assert device.events == [1031]
    if direction == "to_device":
        assert dest.lower() not in device.files and not [n for n in device.files if n.endswith(".partial")]
    else:
        assert os.listdir(tmp_path) == []


def test_a_source_that_changes_while_it_is_sent_is_not_written(local_file, monkeypatch):
    device = FakeDevice()
    src = local_file(6 * CHUNK)
    real_fstat = os.fstat

    def grown(fd):
        stat = real_fstat(fd)
        return os.stat_result((stat.st_mode, stat.st_ino, stat.st_dev, stat.st_nlink, stat.st_uid, stat.st_gid,
                               stat.st_size + 1, stat.st_atime, stat.st_mtime, stat.st_ctime))

    monkeypatch.setattr(file_transfer.os, "fstat", grown)
    result = run(device, src=src)
    assert result["failed"] is True and result["error_code"] == "source_changed"
    assert (FOLDER + "\\report.bin").lower() not in device.files


def test_progress_lines_name_the_workstation_the_file_and_the_percent(local_file):
    lines = []
    run(FakeDevice(), src=local_file(10 * CHUNK), progress=lines.append)
    assert lines and lines[-1].startswith("DESK-1: sending report.bin: ") and lines[-1].endswith("(100%)")


def test_the_report_has_what_the_product_shows(local_file):
    result = run(FakeDevice(), src=local_file(1234))
    transfer = result["transfer"]
    assert set(transfer) >= {"workstation", "file_name", "size", "source", "destination", "date", "direction",
                             "bytes_transferred", "percent", "result"}
    assert transfer["workstation"] == "DESK-1" and transfer["file_name"] == "report.bin"
    assert transfer["size"] == 1234 and transfer["direction"] == "sending" and transfer["date"] == format_utc(START)


def test_chunks_follow_the_devices_envelope_and_fall_back_to_a_safe_one(local_file):
    for envelope_kb, chunk in ((500, chunk_for(512000)), (None, chunk_for(153600))):
        device = FakeDevice(envelope_kb=envelope_kb)
        result = run(device, src=local_file(10))
        assert result["transfer"]["chunk_bytes"] == chunk
    assert chunk_for(512000) > 360 * 1024 > 110 * 1024 > chunk_for(153600)


# --- the stream readers -------------------------------------------------------------------------------------------------

def _splits(data, seed):
    rng = random.Random(seed)
    pieces, position = [], 0
    while position < len(data):
        step = rng.choice([1, 2, 3, 5, 64, 4096])
        pieces.append(data[position:position + step])
        position += step
    return pieces


@pytest.mark.parametrize("seed", range(5))
def test_frames_parse_however_the_receives_split_them(seed):
    body = random.Random(seed).randbytes(20000)
    stream = b'{"kind":"ready","offset":0,"size":20000,"prefix_sha256":"x"}\n'
    for position in range(0, len(body), 7000):
        piece = body[position:position + 7000]
        stream += len(piece).to_bytes(4, "big") + piece
    stream += b"\0\0\0\0" + b'{"kind":"result","outcome":"completed"}\n'
    received = bytearray()
    reader = FrameReader(received.extend)
    messages = []
    for piece in _splits(stream, seed):
        messages += reader.feed(piece)
    assert [m["kind"] for m in messages] == ["ready", "result"] and bytes(received) == body and reader.done


def test_lines_parse_however_the_receives_split_them():
    stream = b'{"kind":"ready","offset":0,"prefix_sha256":"x"}\n{"kind":"progress","bytes":5}\n{"kind":"result"}\r\n'
    reader = LineReader()
    messages = []
    for piece in _splits(stream, 1):
        messages += reader.feed(piece)
    assert [m["kind"] for m in messages] == ["ready", "progress", "result"]


def test_a_line_that_is_not_json_is_a_script_error():
    with pytest.raises(DeviceError) as caught:
        LineReader().feed(b"oops\n")
    assert caught.value.reason == "script"


def test_the_transfer_id_is_stable_and_tells_transfers_apart():
    first = file_transfer.transfer_id("to_device", "C:\\Users\\A\\x.bin", "ctl", "/src/x.bin")
    assert first == file_transfer.transfer_id("to_device", "c:/users/a/X.BIN".replace("X.BIN", "x.bin"), "CTL",
                                              "/src/x.bin")
    assert first != file_transfer.transfer_id("from_device", "C:\\Users\\A\\x.bin", "ctl", "/src/x.bin")
    assert first != file_transfer.transfer_id("to_device", "C:\\Users\\A\\x.bin", "ctl", "/src/y.bin")


def test_a_device_that_stops_answering_is_given_up_on(local_file, monkeypatch):
    device = FakeDevice()
    clock = {"now": 0.0}

    def silent_receive(self):
        clock["now"] += 30  # each empty Receive is the device holding it for its OperationTimeout
        return StreamOutput(b"", b"", False, None)

    monkeypatch.setattr(FakeStream, "receive", silent_receive)
    result = file_transfer.run(device, {"direction": "to_device", "src": local_file(10), "dest": FOLDER + "\\x.bin",
                                        "force": True, "requested_by": "j", "idle_after": 900},
                               check_mode=False, diff=False, controller_now=lambda: device.now,
                               monotonic=lambda: clock["now"], progress=lambda line: None, controller_host="c")
    assert result["failed"] is True and result["error_code"] == "connection_lost"
    assert "has sent nothing for" in result["msg"] and clock["now"] > file_transfer.STALL_SECONDS


def test_a_refusal_before_the_first_frame_keeps_what_an_interrupted_run_left(tmp_path):
    device = FakeDevice()
    device.files[(FOLDER + "\\log.bin").lower()] = bytearray(b"q" * (6 * CHUNK))
    dest = tmp_path / "log.bin"
    device.drop_on_receive = 3
    run(device, direction="from_device", src=FOLDER + "\\log.bin", dest=str(dest))
    partial = [p for p in os.listdir(tmp_path) if p.endswith(".partial")]
    assert partial
    # The session ends between prepare and the stream: the device refuses before the first frame.
    original = device.session_stop
    device.session_stop = lambda session_id, transfer_id: {"message": "The device has no support session.",
                                                           "session": None} if transfer_id is None else \
        original(session_id, transfer_id)
    refused = run(device, direction="from_device", src=FOLDER + "\\log.bin", dest=str(dest))
    assert refused["failed"] is True and refused["error_code"] == "session_not_authorized"
    assert [p for p in os.listdir(tmp_path) if p.endswith(".partial")] == partial


def test_a_receiving_script_that_dies_mid_file_is_named_and_leaves_no_destination(tmp_path, monkeypatch):
    # The device's script ends (say powershell.exe is killed) after three frames, with no result line: the output
    # received ahead of the controller is written first, then the end is reported, not before.
    device = FakeDevice()
    device.files[(FOLDER + "\\log.bin").lower()] = bytearray(random.Random(5).randbytes(6 * CHUNK))
    frame = FakeStream.next_frame

    def dying_frame(self):
        if self.result["bytes_sent"] >= 3 * CHUNK:
            self.state, self.done, self.exit_code = "done", True, -1
            return
        frame(self)

    monkeypatch.setattr(FakeStream, "next_frame", dying_frame)
    dest = tmp_path / "log.bin"
    result = run(device, direction="from_device", src=FOLDER + "\\log.bin", dest=str(dest))
    assert result["failed"] is True and result["error_code"] == "script", result["msg"]
    assert "ended (exit code -1) without a result" in result["msg"]
    assert result["transfer"]["bytes_transferred"] == 3 * CHUNK
    assert not dest.exists()


# --- the controller's side under attack: a shared destination folder, hostile option text --------------------------

def _received(device, data=b"device data " * 5000, name="log.bin"):
    device.files[(FOLDER + "\\" + name).lower()] = bytearray(data)
    return data


@pytest.mark.parametrize("option", ["src", "dest", "requested_by"])
@pytest.mark.parametrize("character", ["\x00", "\n", "\x1b", "\x7f"])
@pytest.mark.parametrize("direction", ["to_device", "from_device"])
def test_an_option_with_a_control_character_is_refused_before_anything_starts(tmp_path, local_file, option,
                                                                              character, direction):
    device = FakeDevice()
    _received(device)
    options = {"src": local_file(10) if direction == "to_device" else FOLDER + "\\log.bin",
               "dest": FOLDER + "\\x.bin" if direction == "to_device" else str(tmp_path / "out.bin"),
               "requested_by": "jdoe"}
    options[option] = options[option][:3] + character + options[option][3:]
    result = run(device, direction=direction, **options)
    assert result["failed"] is True and result["error_code"] == "invalid_option"
    assert f"The option {option} contains" in result["msg"] and "at position 3" in result["msg"]
    assert ("a NUL byte" in result["msg"]) == (character == "\x00")
    assert device.ran == [] and device.streams == []  # the device was not even asked
    assert sorted(os.listdir(tmp_path)) == (["report.bin"] if direction == "to_device" else [])


def test_a_planted_link_in_the_destination_folder_is_neither_followed_nor_touched(tmp_path):
    device = FakeDevice()
    data = _received(device)
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    identity = file_transfer.transfer_id("from_device", FOLDER + "\\log.bin", "controller-1",
                                         str(tmp_path / "log.bin"))
    # Every name an attacker might guess: the old fixed one, and the collection's prefix with any suffix.
    planted = [tmp_path / f".~rs-{identity}.partial", tmp_path / f".~rs-{identity}-0.partial",
               tmp_path / f".~rs-{identity}-{'f' * 32}.partial"]
    for link in planted:
        os.symlink(victim, link)
    result = run(device, direction="from_device", src=FOLDER + "\\log.bin", dest=str(tmp_path / "log.bin"))
    assert "failed" not in result, result["msg"]
    assert (tmp_path / "log.bin").read_bytes() == data and victim.read_bytes() == b"precious"
    assert all(link.is_symlink() and os.readlink(link) == str(victim) for link in planted)
    assert sorted(os.listdir(tmp_path)) == sorted(["log.bin", "victim"] + [link.name for link in planted])


def test_a_partial_file_of_another_user_or_readable_by_others_is_not_resumed(tmp_path):
    device = FakeDevice()
    data = _received(device)
    identity = file_transfer.transfer_id("from_device", FOLDER + "\\log.bin", "controller-1",
                                         str(tmp_path / "log.bin"))
    foreign = tmp_path / f".~rs-{identity}-{'a' * 32}.partial"
    foreign.write_bytes(b"planted content " * 100)
    os.chmod(foreign, 0o644)  # not made by the collection, which makes its files 0600
    result = run(device, direction="from_device", src=FOLDER + "\\log.bin", dest=str(tmp_path / "log.bin"))
    assert "failed" not in result and result["transfer"]["resumed_from"] == 0
    assert device.streams[0].request["offset"] == 0
    assert (tmp_path / "log.bin").read_bytes() == data and foreign.read_bytes() == b"planted content " * 100


def test_the_temporary_file_is_private_and_unpredictable_and_resume_finds_it(tmp_path):
    device = FakeDevice()
    data = _received(device, random.Random(5).randbytes(8 * CHUNK))
    device.drop_on_receive = 4
    first = run(device, direction="from_device", src=FOLDER + "\\log.bin", dest=str(tmp_path / "log.bin"))
    assert first["error_code"] == "connection_lost"
    partial, = [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    assert partial.stat().st_mode & 0o777 == 0o600 and not partial.is_symlink()
    identity = file_transfer.transfer_id("from_device", FOLDER + "\\log.bin", "controller-1",
                                         str(tmp_path / "log.bin"))
    suffix = partial.name[len(f".~rs-{identity}-"):-len(".partial")]
    assert partial.name.startswith(f".~rs-{identity}-") and len(suffix) == 32  # 128 random bits
    second = run(device, direction="from_device", src=FOLDER + "\\log.bin", dest=str(tmp_path / "log.bin"))
    assert "failed" not in second and second["transfer"]["resumed_from"] > 0
    assert (tmp_path / "log.bin").read_bytes() == data


def test_a_destination_that_is_a_link_is_refused_and_left_alone(tmp_path):
    device = FakeDevice()
    _received(device)
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    os.symlink(victim, tmp_path / "log.bin")
    result = run(device, direction="from_device", src=FOLDER + "\\log.bin", dest=str(tmp_path / "log.bin"))
    assert result["failed"] is True and result["error_code"] == "dest_is_link"
    assert "neither followed nor replaced" in result["msg"]
    assert victim.read_bytes() == b"precious" and os.readlink(tmp_path / "log.bin") == str(victim)
    assert device.streams == [] and sorted(os.listdir(tmp_path)) == ["log.bin", "victim"]


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o755])
def test_a_replaced_destination_keeps_its_mode(tmp_path, mode):
    device = FakeDevice()
    data = _received(device)
    dest = tmp_path / "log.bin"
    dest.write_bytes(b"older content")
    os.chmod(dest, mode)
    result = run(device, direction="from_device", src=FOLDER + "\\log.bin", dest=str(dest))
    assert "failed" not in result and result["changed"] is True
    assert dest.read_bytes() == data and dest.stat().st_mode & 0o777 == mode


def test_a_new_destination_gets_the_mode_of_any_new_file(tmp_path):
    device = FakeDevice()
    _received(device)
    old = os.umask(0o027)
    try:
        result = run(device, direction="from_device", src=FOLDER + "\\log.bin", dest=str(tmp_path / "log.bin"))
    finally:
        os.umask(old)
    assert "failed" not in result and (tmp_path / "log.bin").stat().st_mode & 0o777 == 0o640
