# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""file_transfer's core against a lab device in process: the transfer scripts' emulations read and write the device's
drive C:, speak the stream protocol, check the session every chunk and are held to file_transfer_*.contract.json by
the lab, as the lab's server holds them."""

from __future__ import annotations

import datetime
import hashlib
import os
import random
import shutil

import pytest
from winrm_lab import in_process
from winrm_lab.emulation import session as lab_session
from winrm_lab.emulation import transfers as lab_transfers
from winrm_lab.process import EXIT_CODE_TERMINATED, ReceiveResult

from ansible_collections.remote_support.windows.plugins.module_utils import file_transfer
from ansible_collections.remote_support.windows.plugins.module_utils import session_state as sm
from ansible_collections.remote_support.windows.plugins.module_utils.device_info import format_utc
from ansible_collections.remote_support.windows.plugins.module_utils.errors import DeviceError
from ansible_collections.remote_support.windows.plugins.module_utils.file_transfer_framing import (
    FrameReader,
    LineReader,
    chunk_for,
)
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_streaming import envelope_bytes

START = datetime.datetime(2026, 11, 24, 10, 0, 0, tzinfo=datetime.timezone.utc)
ENVELOPE_KB = 64  # small chunks keep the tests quick and make several chunks out of little data
CHUNK = chunk_for(envelope_bytes(ENVELOPE_KB))
FOLDER = "C:\\Users\\ana\\Documents"


def authorized_record(now=START, ttl=3600):
    return sm.request(None, now, requested_by="jdoe", reason="INC-4711", confirmation_required=False,
                      ttl_seconds=ttl, session_id="s-1").to_dict()


def transfer_device(lab, record="authorized", active=True, os_caption=None, envelope_kb=ENVELOPE_KB):
    """A lab device with a support session (`record`; None: none), the folder FOLDER, and WinRM's MaxEnvelopeSizekb."""
    device = lab()
    lab_device = device.device
    lab_device.service.max_envelope_size_kb = envelope_kb
    lab_device.windows_path(FOLDER).mkdir(parents=True, exist_ok=True)
    if record is not None:
        lab_session.write_record(lab_device, authorized_record() if record == "authorized" else record)
    if os_caption is not None:
        lab_device.hardware.os_caption = os_caption
    if not active:
        agent = lab_device.agent
        agent.running = False
        agent.stopped_last_checkin = device.now() - datetime.timedelta(days=1)
        lab_device.sync_agent_registry()
    return device


def put(device, path, data):
    """A file on the device's drive."""
    host = device.device.windows_path(path)
    host.parent.mkdir(parents=True, exist_ok=True)
    host.write_bytes(data)


def read(device, path):
    """A file of the device's drive (None: there is none)."""
    host = device.device.windows_path(path)
    return host.read_bytes() if host.is_file() else None


def partials(device, folder=FOLDER):
    """The transfer temporary files in a folder of the device."""
    return [name for name in os.listdir(device.device.windows_path(folder)) if name.endswith(".partial")]


def names(device):
    return [name for name, _input in device.calls]


def audit_ids(device):
    return device.events(lab_session.EVENT_SOURCE)


def deauthorize(device):
    record = sm.SessionRecord.from_dict(lab_session.read_record(device.device))
    lab_session.write_record(device.device, sm.deauthorize(record, device.now(), ended_by="boss").record.to_dict())


def drop_during(device, script_name, **fault):
    """The connection drops once, in the stream of `script_name` (the lab's drop_after_bytes or
    drop_after_response_bytes, set as that command starts)."""
    device.before(script_name, lambda: [setattr(device.device.faults, name, value) for name, value in fault.items()])


def after_bytes(monkeypatch, count, action):
    """Runs `action` once the device has received (to_device) or sent (from_device) `count` bytes of the stream."""
    moved = {"bytes": 0}
    send, receive = in_process.StreamingCommand.send_message, in_process.StreamingCommand.receive

    def step(size):
        before = moved["bytes"]
        moved["bytes"] += size
        if before < count <= moved["bytes"]:
            action()

    def counted_send(self, message):
        send(self, message)
        step(len(message[0]))

    def counted_receive(self):
        output = receive(self)
        step(len(output.stdout))
        return output

    monkeypatch.setattr(in_process.StreamingCommand, "send_message", counted_send)
    monkeypatch.setattr(in_process.StreamingCommand, "receive", counted_receive)


# --- running the core ------------------------------------------------------------------------------------------------

def run(device, check_mode=False, diff=False, progress=None, **options):
    base = {"direction": "to_device", "src": "", "dest": FOLDER + "\\report.bin", "force": True,
            "requested_by": "jdoe", "idle_after": 900}
    base.update(options)
    return file_transfer.run(device, base, check_mode=check_mode, diff=diff, controller_now=device.now,
                             monotonic=device.monotonic, progress=progress or (lambda line: None),
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
def test_sending_any_size_arrives_whole_in_one_command(lab, local_file, size):
    device = transfer_device(lab)
    src = local_file(size)
    result = run(device, src=src)
    data = open(src, "rb").read()
    assert "failed" not in result, result["msg"]
    assert result["changed"] is True and result["transfer"]["result"] == "Successfully sent"
    assert read(device, FOLDER + "\\report.bin") == data
    assert result["sha256"] == hashlib.sha256(data).hexdigest()
    assert result["transfer"]["bytes_transferred"] == size and result["transfer"]["percent"] == 100
    stream, = device.streams
    # One Send per chunk of the file (the first also carries the start line, the last the SHA-256): exactly one
    # chunk is one Send, one byte more is two.
    assert len(stream.sends) == max(1, -(-size // CHUNK))
    assert result["transfer"]["chunk_bytes"] == CHUNK
    assert not partials(device)
    assert audit_ids(device) == [1030]


@pytest.mark.parametrize("size", SIZES)
def test_receiving_any_size_arrives_whole(lab, tmp_path, size):
    device = transfer_device(lab)
    data = random.Random(size).randbytes(size)
    put(device, FOLDER + "\\log.bin", data)
    dest = tmp_path / "out" / "log.bin"
    result = run(device, direction="from_device", src=FOLDER + "\\log.bin", dest=str(dest))
    assert "failed" not in result, result["msg"]
    assert result["transfer"]["result"] == "Successfully received" and result["transfer"]["direction"] == "receiving"
    assert dest.read_bytes() == data
    assert not [p for p in os.listdir(dest.parent) if p.endswith(".partial")]


def test_a_folder_as_destination_receives_the_file_under_its_name(lab, local_file, tmp_path):
    device = transfer_device(lab)
    result = run(device, src=local_file(10, name="notes.txt"), dest=FOLDER + "\\")
    assert result["dest"] == FOLDER + "\\notes.txt"
    assert read(device, FOLDER + "\\notes.txt") is not None
    put(device, FOLDER + "\\a.log", b"x")
    back = run(device, direction="from_device", src=FOLDER + "\\a.log", dest=str(tmp_path) + os.sep)
    assert back["dest"] == str(tmp_path / "a.log") and (tmp_path / "a.log").read_bytes() == b"x"


def test_identical_content_is_not_changed_and_nothing_streams(lab, local_file):
    device = transfer_device(lab)
    src = local_file(5000)
    put(device, FOLDER + "\\report.bin", open(src, "rb").read())
    result = run(device, src=src, diff=True)
    assert result["changed"] is False and "failed" not in result
    assert not device.streams
    assert result["diff"]["before"] == result["diff"]["after"]


def test_force_false_keeps_a_different_file(lab, local_file):
    device = transfer_device(lab)
    put(device, FOLDER + "\\report.bin", b"the user's own version")
    result = run(device, src=local_file(5000), force=False)
    assert result["changed"] is False and "failed" not in result and result["transfer"]["result"] == "Not sent"
    assert read(device, FOLDER + "\\report.bin") == b"the user's own version"
    assert not device.streams


def test_force_replaces_a_different_file(lab, local_file):
    device = transfer_device(lab)
    put(device, FOLDER + "\\report.bin", b"old")
    src = local_file(5000)
    result = run(device, src=src, diff=True)
    assert result["changed"] is True and read(device, FOLDER + "\\report.bin") == open(src, "rb").read()
    assert "size: 3 bytes" in result["diff"]["before"] and "not computed" in result["diff"]["before"]
    assert result["sha256"] in result["diff"]["after"]


@pytest.mark.parametrize("direction", ["to_device", "from_device"])
def test_check_mode_changes_nothing_and_shows_the_diff(lab, local_file, tmp_path, direction):
    device = transfer_device(lab)
    if direction == "to_device":
        src, dest = local_file(5000), FOLDER + "\\report.bin"
    else:
        put(device, FOLDER + "\\log.bin", b"y" * 5000)
        src, dest = FOLDER + "\\log.bin", str(tmp_path / "log.bin")
    before = sorted(os.listdir(device.device.windows_path(FOLDER)))
    result = run(device, check_mode=True, diff=True, direction=direction, src=src, dest=dest)
    assert result["changed"] is True and "failed" not in result and result["msg"].startswith("Would ")
    assert result["diff"]["before"] == "(absent)\n" and "size: 5000 bytes" in result["diff"]["after"]
    assert not device.streams and sorted(os.listdir(device.device.windows_path(FOLDER))) == before
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
def test_only_an_authorized_session_may_transfer(lab, local_file, state, words):
    device = transfer_device(lab, record=_record(state))
    result = run(device, src=local_file(10))
    assert result["failed"] is True and result["changed"] is False
    assert result["msg"].startswith("Sending failed: ") and words in result["msg"]
    assert result["error_code"] == "session_not_authorized"
    assert "file_transfer_prepare" not in names(device) and not device.streams


def test_an_idle_device_is_unavailable(lab, local_file):
    result = run(transfer_device(lab, active=False), src=local_file(10))
    assert result["failed"] is True and result["state"] == "unavailable"
    assert "Unable to connect to the device" in result["msg"] and result["error_code"] == "device_not_active"


def test_file_transfer_is_windows_only(lab, local_file):
    result = run(transfer_device(lab, os_caption="Ubuntu 24.04"), src=local_file(10))
    assert result["failed"] is True and "only on Windows devices" in result["msg"]


def test_an_unreachable_device_says_so(lab):
    result = run(lab("port_closed"), src="/x", dest="C:\\x")
    assert result["failed"] is True and result["connection"]["reason"] == "refused"
    assert result["msg"].startswith("Sending failed: Unable to connect to the device: ")
    assert "refused the connection. Check that the device is on" in result["msg"]


# --- refusals -------------------------------------------------------------------------------------------------------

def _existing(device, marks):
    """An existing x.bin, held open by another program or denied to the WinRM account by its ACL."""
    getattr(device.device, marks).add((FOLDER + "\\x.bin").lower())
    put(device, FOLDER + "\\x.bin", b"1")


@pytest.mark.parametrize("setup,dest,code,words", [
    (lambda d: None, "C:\\Windows\\System32\\x.bin", "path_not_allowed", "FileTransferAllowedRoots"),
    (lambda d: setattr(d.device, "free_space_bytes", 100), FOLDER + "\\x.bin", "disk_full", "not enough space"),
    (lambda d: d.device.registry.set(lab_transfers.POLICY_KEY, lab_transfers.MAX_SIZE_VALUE, 1000), FOLDER + "\\x.bin", "too_large", "support_policy"),
    (lambda d: _existing(d, "locked_files"), FOLDER + "\\x.bin", "in_use", "being used by another process"),
    (lambda d: _existing(d, "denied_paths"), FOLDER + "\\x.bin", "access_denied", "is denied"),
    (lambda d: None, FOLDER + "\\" + "n" * 250 + ".bin", "name_too_long", "too long"),
    # the destination folder holds a folder of the file's name
    (lambda d: d.device.windows_path(FOLDER + "\\x.bin").mkdir(), FOLDER + "\\", "is_directory", "folder"),
])
def test_refusals_say_what_happened_and_what_to_do(lab, local_file, setup, dest, code, words):
    device = transfer_device(lab)
    setup(device)
    result = run(device, src=local_file(5000, name="x.bin"), dest=dest)
    assert result["failed"] is True and result["error_code"] == code, result["msg"]
    assert words in result["msg"] and result["transfer"]["result"] == "Sending failed"
    assert not device.streams


def test_a_local_folder_is_refused_as_the_product_refuses_folders(lab, tmp_path):
    device = transfer_device(lab)
    result = run(device, src=str(tmp_path))
    assert result["failed"] is True and result["error_code"] == "is_directory"
    assert "Folders are not transferred" in result["msg"]


def test_a_missing_source_is_named(lab, tmp_path):
    device = transfer_device(lab)
    sent = run(device, src=str(tmp_path / "nope"))
    assert sent["error_code"] == "not_found"
    assert sent["msg"] == f"Sending failed: Could not find file '{tmp_path / 'nope'}' on the controller."
    received = run(device, direction="from_device", src=FOLDER + "\\nope.txt", dest=str(tmp_path))
    assert received["error_code"] == "not_found" and received["transfer"]["result"] == "Sending failed"
    # A receive says so, names the path on the device and what to check there.
    assert received["msg"].startswith(f"Receiving failed: Could not find file '{FOLDER}\\nope.txt'."), received["msg"]
    assert f"Check src: it must name an existing file on {device.device.name} " in received["msg"]


def test_a_receive_the_controller_has_no_room_for_is_refused_before_a_byte_moves(lab, tmp_path, monkeypatch):
    device = transfer_device(lab)
    _received(device)
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=1000))
    result = run(device, direction="from_device", src=FOLDER + "\\log.bin", dest=str(tmp_path / "log.bin"))
    assert result["failed"] is True and result["error_code"] == "disk_full", result["msg"]
    assert "not enough space on the controller: 60000 bytes are needed and 1000 bytes are free" in result["msg"]
    assert not device.streams and os.listdir(tmp_path) == []


def test_a_device_folder_is_not_received(lab, tmp_path):
    device = transfer_device(lab)
    result = run(device, direction="from_device", src=FOLDER, dest=str(tmp_path / "x"))
    assert result["failed"] is True and result["error_code"] == "is_directory"


# --- interruptions ----------------------------------------------------------------------------------------------------

def test_a_lost_connection_leaves_no_destination_and_the_rerun_resumes(lab, local_file):
    device = transfer_device(lab)
    src = local_file(10 * CHUNK + 123)
    drop_during(device, "file_transfer_send", drop_after_bytes=4 * CHUNK + 50)
    first = run(device, src=src)
    assert first["failed"] is True and first["error_code"] == "connection_lost"
    assert "Connection to workstation lost" in first["msg"] and "resumes" in first["msg"]
    # Said once, with how far it got: the classifier's words are not repeated after the transfer's own.
    assert first["msg"].count("Connection to workstation lost") == 1, first["msg"]
    assert first["msg"].lower().count("run the task again") == 1, first["msg"]
    assert read(device, FOLDER + "\\report.bin") is None
    partial = partials(device)
    assert partial and len(read(device, FOLDER + "\\" + partial[0])) == 4 * CHUNK
    second = run(device, src=src)
    assert "failed" not in second, second["msg"]
    assert second["transfer"]["resumed_from"] == 4 * CHUNK
    assert second["transfer"]["bytes_transferred"] == 6 * CHUNK + 123
    assert read(device, FOLDER + "\\report.bin") == open(src, "rb").read()
    assert not partials(device)


def test_a_partial_of_other_content_is_not_resumed(lab, local_file):
    device = transfer_device(lab)
    src = local_file(5 * CHUNK)
    drop_during(device, "file_transfer_send", drop_after_bytes=2 * CHUNK + 1)
    run(device, src=src)
    src = local_file(5 * CHUNK, seed=99)  # the same name, other content
    second = run(device, src=src)
    assert "failed" not in second and second["transfer"]["resumed_from"] == 0
    assert read(device, FOLDER + "\\report.bin") == open(src, "rb").read()


def test_receiving_resumes_after_a_lost_connection(lab, tmp_path):
    device = transfer_device(lab)
    data = random.Random(3).randbytes(8 * CHUNK + 5)
    put(device, FOLDER + "\\log.bin", data)
    dest = tmp_path / "log.bin"
    drop_during(device, "file_transfer_receive", drop_after_response_bytes=3 * CHUNK)
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
def test_deauthorizing_or_expiry_mid_way_stops_cleanly(lab, local_file, tmp_path, monkeypatch, direction, how,
                                                       words):
    device = transfer_device(lab)
    after_bytes(monkeypatch, 3 * CHUNK, lambda: deauthorize(device) if how == "deauthorize" else device.advance(3600))
    if direction == "to_device":
        src, dest = local_file(8 * CHUNK), FOLDER + "\\report.bin"
    else:
        put(device, FOLDER + "\\log.bin", b"z" * (8 * CHUNK))
        src, dest = FOLDER + "\\log.bin", str(tmp_path / "log.bin")
    result = run(device, direction=direction, src=src, dest=dest)
    assert result["failed"] is True and result["error_code"] == "session_ended"
    failed = "Sending failed: " if direction == "to_device" else "Receiving failed: "
    assert result["msg"].startswith(failed) and words in result["msg"]
    assert result["transfer"]["result"] == "Sending failed"
    assert audit_ids(device) == [1031]
    if direction == "to_device":
        assert read(device, dest) is None and not partials(device)
    else:
        assert os.listdir(tmp_path) == []


def test_a_source_that_changes_while_it_is_sent_is_not_written(lab, local_file, monkeypatch):
    device = transfer_device(lab)
    src = local_file(6 * CHUNK)
    real_fstat = os.fstat

    def grown(fd):
        stat = real_fstat(fd)
        return os.stat_result((stat.st_mode, stat.st_ino, stat.st_dev, stat.st_nlink, stat.st_uid, stat.st_gid,
                               stat.st_size + 1, stat.st_atime, stat.st_mtime, stat.st_ctime))

    monkeypatch.setattr(file_transfer.os, "fstat", grown)
    result = run(device, src=src)
    assert result["failed"] is True and result["error_code"] == "source_changed"
    assert read(device, FOLDER + "\\report.bin") is None


def test_progress_lines_name_the_workstation_the_file_and_the_percent(lab, local_file):
    lines = []
    device = transfer_device(lab)
    run(device, src=local_file(10 * CHUNK), progress=lines.append)
    assert lines and lines[-1].startswith(f"{device.device.name}: sending report.bin: ") and lines[-1].endswith("(100%)")


def test_the_report_has_what_the_product_shows(lab, local_file):
    device = transfer_device(lab)
    result = run(device, src=local_file(1234))
    transfer = result["transfer"]
    assert set(transfer) >= {"workstation", "file_name", "size", "source", "destination", "date", "direction",
                             "bytes_transferred", "percent", "result"}
    assert transfer["workstation"] == device.device.name and transfer["file_name"] == "report.bin"
    assert transfer["size"] == 1234 and transfer["direction"] == "sending" and transfer["date"] == format_utc(START)


def test_chunks_follow_the_devices_envelope_and_fall_back_to_a_safe_one(lab, local_file):
    for envelope_kb, chunk in ((500, chunk_for(512000)), (None, chunk_for(153600))):
        device = transfer_device(lab, envelope_kb=envelope_kb)
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


def test_a_device_that_stops_answering_is_given_up_on(lab, local_file, monkeypatch):
    device = transfer_device(lab)

    def silent_receive(self):
        device.advance(in_process.OPERATION_TIMEOUT_SECONDS)  # the device holds each Receive, and has nothing
        return ReceiveResult(b"", b"", False, None)

    monkeypatch.setattr(in_process.StreamingCommand, "receive", silent_receive)
    started = device.monotonic()
    result = run(device, src=local_file(10), dest=FOLDER + "\\x.bin")
    assert result["failed"] is True and result["error_code"] == "connection_lost"
    assert "has sent nothing for" in result["msg"] and device.monotonic() - started > file_transfer.STALL_SECONDS


def test_a_refusal_before_the_first_frame_keeps_what_an_interrupted_run_left(lab, tmp_path):
    device = transfer_device(lab)
    put(device, FOLDER + "\\log.bin", b"q" * (6 * CHUNK))
    dest = tmp_path / "log.bin"
    drop_during(device, "file_transfer_receive", drop_after_response_bytes=2 * CHUNK)
    run(device, direction="from_device", src=FOLDER + "\\log.bin", dest=str(dest))
    partial = [p for p in os.listdir(tmp_path) if p.endswith(".partial")]
    assert partial
    # The session ends between prepare and the stream: the device refuses before the first frame.
    device.before("file_transfer_receive", lambda: device.device.registry.delete_key(lab_session.SESSION_KEY))
    refused = run(device, direction="from_device", src=FOLDER + "\\log.bin", dest=str(dest))
    assert refused["failed"] is True and refused["error_code"] == "session_not_authorized"
    assert [p for p in os.listdir(tmp_path) if p.endswith(".partial")] == partial


def test_a_receiving_script_that_dies_mid_file_is_named_and_leaves_no_destination(lab, tmp_path, monkeypatch):
    # The device's script ends (say powershell.exe is killed) after three frames, with no result line: the output
    # received ahead of the controller is written first, then the end is reported, not before.
    device = transfer_device(lab)
    put(device, FOLDER + "\\log.bin", random.Random(5).randbytes(6 * CHUNK))
    sent = {"bytes": 0}
    receive = in_process.StreamingCommand.receive

    def killed_after_three_frames(self):
        output = receive(self)
        sent["bytes"] += len(output.stdout)
        if sent["bytes"] >= 3 * CHUNK and not self.process.done:
            self.process.signal("terminate")  # powershell.exe is ended on the device
            device.settle()
        return output

    monkeypatch.setattr(in_process.StreamingCommand, "receive", killed_after_three_frames)
    dest = tmp_path / "log.bin"
    result = run(device, direction="from_device", src=FOLDER + "\\log.bin", dest=str(dest))
    assert result["failed"] is True and result["error_code"] == "script", result["msg"]
    assert f"ended (exit code {EXIT_CODE_TERMINATED}) without a result" in result["msg"]
    assert result["transfer"]["bytes_transferred"] >= 3 * CHUNK  # what arrived before the end was written
    assert not dest.exists()


# --- the controller's side under attack: a shared destination folder, hostile option text --------------------------

def _received(device, data=b"device data " * 5000, name="log.bin"):
    put(device, FOLDER + "\\" + name, data)
    return data


@pytest.mark.parametrize("option", ["src", "dest", "requested_by"])
@pytest.mark.parametrize("character", ["\x00", "\n", "\x1b", "\x7f"])
@pytest.mark.parametrize("direction", ["to_device", "from_device"])
def test_an_option_with_a_control_character_is_refused_before_anything_starts(lab, tmp_path, local_file, option,
                                                                              character, direction):
    device = transfer_device(lab)
    _received(device)
    options = {"src": local_file(10) if direction == "to_device" else FOLDER + "\\log.bin",
               "dest": FOLDER + "\\x.bin" if direction == "to_device" else str(tmp_path / "out.bin"),
               "requested_by": "jdoe"}
    options[option] = options[option][:3] + character + options[option][3:]
    result = run(device, direction=direction, **options)
    assert result["failed"] is True and result["error_code"] == "invalid_option"
    assert f"The option {option} contains" in result["msg"] and "at position 3" in result["msg"]
    assert ("a NUL byte" in result["msg"]) == (character == "\x00")
    assert names(device) == [] and device.streams == []  # the device was not even asked
    assert sorted(os.listdir(tmp_path)) == (["report.bin"] if direction == "to_device" else [])


def test_a_planted_link_in_the_destination_folder_is_neither_followed_nor_touched(lab, tmp_path):
    device = transfer_device(lab)
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


def test_a_partial_file_of_another_user_or_readable_by_others_is_not_resumed(lab, tmp_path):
    device = transfer_device(lab)
    data = _received(device)
    identity = file_transfer.transfer_id("from_device", FOLDER + "\\log.bin", "controller-1",
                                         str(tmp_path / "log.bin"))
    foreign = tmp_path / f".~rs-{identity}-{'a' * 32}.partial"
    foreign.write_bytes(b"planted content " * 100)
    os.chmod(foreign, 0o644)  # not made by the collection, which makes its files 0600
    result = run(device, direction="from_device", src=FOLDER + "\\log.bin", dest=str(tmp_path / "log.bin"))
    assert "failed" not in result and result["transfer"]["resumed_from"] == 0
    assert [request for name, request in device.calls if name == "file_transfer_receive"][0]["offset"] == 0
    assert (tmp_path / "log.bin").read_bytes() == data and foreign.read_bytes() == b"planted content " * 100


def test_the_temporary_file_is_private_and_unpredictable_and_resume_finds_it(lab, tmp_path):
    device = transfer_device(lab)
    data = _received(device, random.Random(5).randbytes(8 * CHUNK))
    drop_during(device, "file_transfer_receive", drop_after_response_bytes=3 * CHUNK)
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


def test_a_destination_that_is_a_link_is_refused_and_left_alone(lab, tmp_path):
    device = transfer_device(lab)
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
def test_a_replaced_destination_keeps_its_mode(lab, tmp_path, mode):
    device = transfer_device(lab)
    data = _received(device)
    dest = tmp_path / "log.bin"
    dest.write_bytes(b"older content")
    os.chmod(dest, mode)
    result = run(device, direction="from_device", src=FOLDER + "\\log.bin", dest=str(dest))
    assert "failed" not in result and result["changed"] is True
    assert dest.read_bytes() == data and dest.stat().st_mode & 0o777 == mode


def test_a_new_destination_gets_the_mode_of_any_new_file(lab, tmp_path):
    device = transfer_device(lab)
    _received(device)
    old = os.umask(0o027)
    try:
        result = run(device, direction="from_device", src=FOLDER + "\\log.bin", dest=str(tmp_path / "log.bin"))
    finally:
        os.umask(old)
    assert "failed" not in result and (tmp_path / "log.bin").stat().st_mode & 0o777 == 0o640
