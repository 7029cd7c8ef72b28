"""The file-transfer device scripts through real WinRM (pywinrm, stream_bootstrap.ps1, data on stdin and stdout), and
the lab features they need: streaming stdin and stdout, a connection dropped mid-response, the storage state (free
space, ACL denials, files held open) and file digests on the control surface.

Every input sent and every line and result received is checked against the script's written contract.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import itertools
import json
import os
import typing as t

import jsonschema
import pytest
import requests.exceptions
import winrm.exceptions

from lab_fixtures import contract_of, module_lab, protocol_for, run_checked, text_of
from winrm_lab.control import ControlError
from winrm_lab.emulation.powershell import device_scripts_dir

SCRIPTS = device_scripts_dir()
assert SCRIPTS is not None
SESSION_KEY = r"HKLM:\SOFTWARE\RemoteSupport\Session"
POLICY_KEY = r"HKLM:\SOFTWARE\RemoteSupport\Policy"
TRANSFERS_KEY = r"HKLM:\SOFTWARE\RemoteSupport\Transfers"
STREAM_BOOTSTRAP = (SCRIPTS / "stream_bootstrap.ps1").read_text(encoding="utf-8")
FOLDER = "C:\\Users\\Public\\Documents"
CHUNK = 64 * 1024
COMPLETED, STOPPED, FAILED = 1030, 1031, 1032


lab = module_lab("transfers", devices=40, seed=9, slot=83)


_next_device = itertools.count()


def authorize(lab: t.Any, entry: dict[str, t.Any], session_id: str = "s-1", ttl: int = 3600) -> None:
    """An authorized session record, written as set_support_session writes it (through the control surface)."""
    now = datetime.datetime.strptime(lab.control.device(entry["name"])["clock"]["device_time"], "%Y-%m-%dT%H:%M:%SZ")
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    values = {"Id": session_id, "State": "authorized", "RequestedBy": "tester", "Reason": "lab test",
              "RequestedAt": stamp, "ConfirmationRequired": 0, "AuthorizedAt": stamp,
              "ExpiresAt": (now + datetime.timedelta(seconds=ttl)).strftime("%Y-%m-%dT%H:%M:%SZ"), "Version": 1,
              "TtlSeconds": ttl, "ConfirmationTimeoutSeconds": 300, "ChangedBy": "tester", "ChangedAt": stamp}
    for name, value in values.items():
        lab.control.set_registry_value(entry["name"], SESSION_KEY, name, value)


@pytest.fixture
def device(lab):
    """A device of its own for each test, with an authorized session."""
    entry = lab.devices[next(_next_device) % len(lab.devices)]
    authorize(lab, entry)
    return entry


def stream_arguments() -> list[str]:
    encoded = base64.b64encode(STREAM_BOOTSTRAP.encode("utf-16-le")).decode("ascii")
    return ["-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-EncodedCommand", encoded]


class Stream:
    """One streaming script run over pywinrm, read a Receive at a time."""

    def __init__(self, lab: t.Any, entry: dict[str, t.Any], name: str, script_input: dict[str, t.Any],
                 script_text: str | None = None) -> None:
        self.name = name
        self.contract = contract_of(name) if script_text is None else None
        if self.contract is not None:
            jsonschema.validate(script_input, self.contract["input"])
        self.protocol = protocol_for(entry, lab.manifest["ca_file"])
        self.shell = self.protocol.open_shell(codepage=65001)
        self.command = self.protocol.run_command(self.shell, "powershell.exe", stream_arguments(), skip_cmd_shell=True)
        body = json.dumps({"script": script_text or text_of(name), "input": script_input}).encode("utf-8")
        self.send(str(len(body)).encode("ascii") + b"\n" + body)
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.done = False
        self.exit_code: int | None = None

    def send(self, data: bytes, end: bool = False) -> None:
        for offset in range(0, max(len(data), 1), 100_000):
            piece = data[offset:offset + 100_000]
            self.protocol.send_command_input(self.shell, self.command, piece,
                                             end=end and offset + 100_000 >= len(data))

    def receive(self) -> None:
        try:
            stdout, stderr, code, done = self.protocol.get_command_output_raw(self.shell, self.command)
        except winrm.exceptions.WinRMOperationTimeoutError:
            return
        self.stdout.extend(stdout)
        self.stderr.extend(stderr)
        if done:
            self.done, self.exit_code = True, code

    def line(self) -> dict[str, t.Any]:
        while b"\n" not in self.stdout:
            assert not self.done, f"ended without a line: {bytes(self.stderr)!r}"
            self.receive()
        end = self.stdout.index(b"\n")
        message = json.loads(bytes(self.stdout[:end]))
        del self.stdout[:end + 1]
        if self.contract is not None:
            schema = self.contract["output"] if message["kind"] == "result" else \
                self.contract["messages"][message["kind"]]
            jsonschema.validate(message, schema)
        return message

    def take(self, count: int) -> bytes:
        while len(self.stdout) < count:
            assert not self.done
            self.receive()
        data = bytes(self.stdout[:count])
        del self.stdout[:count]
        return data

    def finish(self) -> None:
        while not self.done:
            self.receive()
        self.protocol.close_shell(self.shell)


def send_input(path: str, size: int, transfer_id: str = "0123456789abcdef", **changes: t.Any) -> dict[str, t.Any]:
    return {"path": path, "size": size, "transfer_id": transfer_id, "session_id": "s-1", "chunk_bytes": CHUNK,
            "overwrite": True, "resume": True, "source": "ctl:/tmp/x", "requested_by": "tester", **changes}


def events(lab: t.Any, entry: dict[str, t.Any]) -> list[int]:
    return [e["event_id"] for e in lab.control.events(entry["name"], log="Application")
            if e["source"] == "RemoteSupport.Windows"]


def partials(lab: t.Any, entry: dict[str, t.Any], folder: str = FOLDER) -> list[str]:
    try:
        return [e["name"] for e in lab.control.list_files(entry["name"], folder) if e["name"].endswith(".partial")]
    except ControlError:
        return []


# --- sending ------------------------------------------------------------------------------------------------------

def test_a_file_streams_in_through_one_command_and_is_renamed_into_place(lab, device):
    data = os.urandom(5 * CHUNK + 3)
    path = FOLDER + "\\Relatório ação 日本.bin"
    stream = Stream(lab, device, "file_transfer_send", send_input(path, len(data)))
    ready = stream.line()
    assert ready == {"kind": "ready", "offset": 0, "prefix_sha256": hashlib.sha256(b"").hexdigest()}
    stream.send(b"0\n" + data + hashlib.sha256(data).hexdigest().encode() + b"\n", end=True)
    progress = []
    while True:
        message = stream.line()
        if message["kind"] == "result":
            break
        progress.append(message["bytes"])
    stream.finish()
    assert progress[-1] == len(data) and progress == sorted(progress) and len(progress) == 6  # a check per chunk
    assert message["outcome"] == "completed" and message["sha256"] == hashlib.sha256(data).hexdigest()
    assert message["audit_event_id"] == COMPLETED and events(lab, device)[-1] == COMPLETED
    assert lab.control.file_digest(device["name"], path) == {"path": path, "type": "file", "size": len(data),
                                                            "sha256": hashlib.sha256(data).hexdigest()}
    assert not partials(lab, device)
    with pytest.raises(ControlError):
        lab.control.registry(device["name"], TRANSFERS_KEY + "\\0123456789abcdef")


def test_a_wrong_hash_writes_nothing(lab, device):
    path = FOLDER + "\\damaged.bin"
    stream = Stream(lab, device, "file_transfer_send", send_input(path, 10))
    stream.line()
    stream.send(b"0\n" + b"x" * 10 + b"0" * 64 + b"\n", end=True)
    while (result := stream.line())["kind"] != "result":
        pass
    stream.finish()
    assert result["outcome"] == "failed" and result["error"]["code"] == "hash_mismatch"
    assert not partials(lab, device) and events(lab, device)[-1] == FAILED
    with pytest.raises(ControlError):
        lab.control.file_digest(device["name"], path)


def test_an_interrupted_run_is_resumed_and_its_process_stopped(lab, device):
    data = os.urandom(4 * CHUNK)
    path = FOLDER + "\\resumed.bin"
    first = Stream(lab, device, "file_transfer_send", send_input(path, len(data)))
    first.line()
    first.send(b"0\n" + data[:2 * CHUNK])
    while first.line()["bytes"] < 2 * CHUNK:
        pass
    # The controller is gone; its command still runs on the device, holding the temporary file.
    second = Stream(lab, device, "file_transfer_send", send_input(path, len(data)))
    ready = second.line()
    assert ready["offset"] == 2 * CHUNK and ready["prefix_sha256"] == hashlib.sha256(data[:2 * CHUNK]).hexdigest()
    first.receive()
    assert first.done and first.exit_code == 0xC000013A  # stopped, as Stop-Process ends it
    second.send(f"{2 * CHUNK}\n".encode() + data[2 * CHUNK:] + hashlib.sha256(data).hexdigest().encode() + b"\n",
                end=True)
    while (result := second.line())["kind"] != "result":
        pass
    second.finish()
    assert result["outcome"] == "completed" and result["offset"] == 2 * CHUNK
    assert result["bytes_written"] == 2 * CHUNK
    assert lab.control.file_digest(device["name"], path)["sha256"] == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("how", ["deauthorized", "expired"])
def test_a_session_that_ends_mid_way_stops_the_transfer_cleanly(lab, device, how):
    path = FOLDER + f"\\{how}.bin"
    data = os.urandom(6 * CHUNK)
    stream = Stream(lab, device, "file_transfer_send", send_input(path, len(data)))
    stream.line()
    stream.send(b"0\n" + data[:2 * CHUNK])
    assert stream.line()["bytes"] == CHUNK
    if how == "deauthorized":  # what set_support_session does with end_activities
        lab.control.set_registry_value(device["name"], SESSION_KEY, "State", "deauthorized")
        lab.control.set_registry_value(device["name"], SESSION_KEY, "EndedBy", "boss")
        lab.control.set_registry_value(device["name"], SESSION_KEY, "EndedAt", "2026-01-01T00:00:00Z")
        lab.control.delete_registry(device["name"], TRANSFERS_KEY)
    else:  # the device's clock passes expires_at
        lab.control.advance_clock(device["name"], 3601)
    stream.send(data[2 * CHUNK:4 * CHUNK])
    while (result := stream.line())["kind"] != "result":
        pass
    stream.finish()
    assert result["outcome"] == "stopped" and result["error"]["code"] == "session_ended"
    assert ("deauthorized by boss" if how == "deauthorized" else "expired at") in result["error"]["message"]
    assert result["session"]["id"] == "s-1" and result["audit_event_id"] == STOPPED
    assert not partials(lab, device) and events(lab, device)[-1] == STOPPED
    with pytest.raises(ControlError):
        lab.control.file_digest(device["name"], path)


def test_without_an_authorized_session_nothing_starts(lab):
    entry = lab.devices[next(_next_device) % len(lab.devices)]
    try:
        lab.control.delete_registry(entry["name"], SESSION_KEY)
    except ControlError:
        pass  # it had none
    stream = Stream(lab, entry, "file_transfer_send", send_input(FOLDER + "\\x.bin", 1))
    result = stream.line()
    stream.finish()
    assert result["kind"] == "result" and result["error"]["code"] == "session_not_authorized"
    assert result["audit_event_id"] is None


# --- receiving ------------------------------------------------------------------------------------------------------

def receive_input(path: str, transfer_id: str, destination: str, offset: int = 0) -> dict[str, t.Any]:
    return {"path": path, "offset": offset, "transfer_id": transfer_id, "session_id": "s-1", "chunk_bytes": CHUNK,
            "destination": destination, "requested_by": "tester"}


def read_frames(stream: Stream) -> bytes:
    body = bytearray()
    while True:
        length = int.from_bytes(stream.take(4), "big")
        if length == 0:
            return bytes(body)
        body.extend(stream.take(length))


def test_a_file_streams_out_in_frames_and_resumes_where_asked(lab, device):
    data = os.urandom(3 * CHUNK + 11)
    path = FOLDER + "\\out.bin"
    lab.control.write_file(device["name"], path, data)
    request = receive_input(path, "fedcba9876543210", "ctl:/tmp/out.bin", offset=CHUNK)
    stream = Stream(lab, device, "file_transfer_receive", request)
    ready = stream.line()
    assert ready == {"kind": "ready", "offset": CHUNK, "size": len(data),
                     "prefix_sha256": hashlib.sha256(data[:CHUNK]).hexdigest()}
    stream.send(f"{CHUNK}\n".encode(), end=True)
    assert read_frames(stream) == data[CHUNK:]
    result = stream.line()
    stream.finish()
    assert result["outcome"] == "completed" and result["sha256"] == hashlib.sha256(data).hexdigest()
    assert result["offset"] == CHUNK and result["bytes_sent"] == len(data) - CHUNK
    assert events(lab, device)[-1] == COMPLETED


def test_receiving_stops_when_the_transfer_entry_is_removed(lab, device):
    path = FOLDER + "\\long.bin"
    lab.control.write_file(device["name"], path, os.urandom(8 * CHUNK))
    request = receive_input(path, "aaaaaaaaaaaaaaaa", "ctl:/tmp/long.bin")
    stream = Stream(lab, device, "file_transfer_receive", request)
    stream.line()
    stream.send(b"0\n", end=True)
    stream.take(4 + CHUNK)
    lab.control.delete_registry(device["name"], TRANSFERS_KEY)
    body = read_frames(stream)
    result = stream.line()
    stream.finish()
    assert len(body) < 7 * CHUNK and result["outcome"] == "stopped" and result["sha256"] is None
    assert "was removed" in result["error"]["message"] and events(lab, device)[-1] == STOPPED


# --- prepare and the device's limits ---------------------------------------------------------------------------------

def prepare(lab: t.Any, entry: dict[str, t.Any], **changes: t.Any) -> dict[str, t.Any]:
    request = {"direction": "to_device", "path": FOLDER + "\\p.bin", "file_name": "p.bin", "size": 100,
               "hash_if_size": 100, "transfer_id": "1111111111111111", **changes}
    return run_checked(protocol_for(entry, lab.manifest["ca_file"]), "file_transfer_prepare", request)


def test_prepare_reads_the_envelope_the_policy_and_a_folder_destination(lab, device):
    lab.control.update_service(device["name"], max_envelope_size_kb=8192)
    answer = prepare(lab, device, path=FOLDER + "\\")
    assert answer["max_envelope_size_kb"] == 8192 and answer["refusal"] is None
    assert answer["path"] == FOLDER + "\\p.bin" and answer["policy"]["allowed_roots"] == ["C:\\Users"]
    assert answer["policy"]["max_size_bytes"] == 4 * 1024**3 and answer["file"]["exists"] is False


def test_names_compare_as_windows_compares_them(lab, device):
    lab.control.write_file(device["name"], FOLDER + "\\Report.TXT", b"x" * 100)
    answer = prepare(lab, device, path="c:\\users\\public\\documents\\report.txt.  ")
    assert answer["file"]["exists"] is True and answer["file"]["sha256"] == hashlib.sha256(b"x" * 100).hexdigest()


@pytest.mark.parametrize("scene,changes,code,words", [
    ({}, {"path": "C:\\Windows\\System32\\drivers\\etc\\hosts"}, "path_not_allowed", "FileTransferAllowedRoots"),
    ({}, {"path": "C:\\Users\\..\\Windows\\x.bin"}, "path_not_allowed", "'C:\\Windows\\x.bin'"),
    ({}, {"path": "C:\\Users\\Public\\CON"}, "reserved_name", "a name Windows reserves for a device"),
    ({}, {"path": "relative\\x.bin"}, "invalid_path", "not an absolute Windows path"),
    ({}, {"path": "C:\\Users\\a<b.txt"}, "invalid_path", "Illegal characters in path."),
    ({}, {"path": "C:\\Users\\" + "d" * 240 + "\\x.bin"}, "name_too_long", "less than 260 characters"),
    ({"storage": {"free_space_bytes": 50}}, {}, "disk_full", "There is not enough space on the disk"),
    ({"policy": {"FileTransferMaxSizeBytes": 10}}, {}, "too_large", "at most 10 bytes"),
    ({"policy": {"FileTransferAllowedRoots": ["C:\\Data"]}}, {}, "path_not_allowed", "C:\\Data"),
    ({"file": b"old", "storage": {"locked_files": [FOLDER + "\\p.bin"]}}, {}, "in_use", "another process"),
    ({"file": b"old", "storage": {"denied_paths": [FOLDER]}}, {}, "access_denied", "is denied"),
    ({}, {"direction": "from_device", "path": FOLDER + "\\none.bin"}, "not_found", "Could not find file"),
    ({}, {"direction": "from_device", "path": "C:\\Users\\Public"}, "is_directory", "is a folder"),
])
def test_prepare_refuses_what_windows_or_the_policy_refuses(lab, device, scene, changes, code, words):
    for name, value in scene.get("policy", {}).items():
        lab.control.set_registry_value(device["name"], POLICY_KEY, name, value)
    if "file" in scene:
        lab.control.write_file(device["name"], FOLDER + "\\p.bin", scene["file"])
    if "storage" in scene:
        lab.control.set_storage(device["name"], **scene["storage"])
    try:
        refusal = prepare(lab, device, **changes)["refusal"]
    finally:
        lab.control.set_storage(device["name"], free_space_bytes=50 * 1024**3, denied_paths=[], locked_files=[])
        for name in scene.get("policy", {}):
            lab.control.delete_registry(device["name"], POLICY_KEY, name)
    assert refusal is not None and refusal["code"] == code and words in refusal["message"], refusal


# --- the lab's own features ----------------------------------------------------------------------------------------------

def test_the_streaming_bootstrap_refuses_an_unknown_script(lab, device):
    stream = Stream(lab, device, "x", {}, script_text="# device-script: not_a_script\n# version: 1\nGet-Thing\n")
    stream.finish()
    assert stream.exit_code == 1 and b"not_a_script" in bytes(stream.stderr)


def test_a_connection_is_dropped_once_mid_response(lab, device):
    path = FOLDER + "\\download.bin"
    lab.control.write_file(device["name"], path, os.urandom(6 * CHUNK))
    request = receive_input(path, "bbbbbbbbbbbbbbbb", "ctl:/tmp/d.bin")
    stream = Stream(lab, device, "file_transfer_receive", request)
    stream.line()
    lab.control.set_faults(device["name"], drop_after_response_bytes=2 * CHUNK)
    stream.send(b"0\n", end=True)
    # A response cut short: requests names it ChunkedEncodingError (IncompleteRead) or ConnectionError.
    with pytest.raises(requests.exceptions.RequestException):
        for _ in range(20):
            stream.receive()
    assert lab.control.faults(device["name"])["drop_after_response_bytes"] is None  # fired once
    assert len(stream.stdout) < 3 * CHUNK


def test_storage_state_is_validated(lab, device):
    assert lab.control.storage(device["name"])["denied_paths"] == []
    for bad in ({"free_space_bytes": -1}, {"denied_paths": "C:\\x"}, {"locked_files": ["relative"]}, {"other": 1}):
        with pytest.raises(ControlError) as error:
            lab.control.set_storage(device["name"], **bad)
        assert error.value.status == 400
    state = lab.control.set_storage(device["name"], denied_paths=["C:/Users/Secret/"])
    assert state["denied_paths"] == ["c:\\users\\secret"]
    lab.control.set_storage(device["name"], denied_paths=[])
