"""Confinement of the file-transfer scripts by what a path is, attacked as a local user of the device would attack it:
junctions planted in folders the user owns (through the lab's file tree), Windows' own junctions (C:\\Users\\All
Users is C:\\ProgramData), a folder replaced by a junction while a transfer runs, and paths written to slip past a
text check (device namespace, streams, reserved names, .., case, trailing dots and spaces). Through real WinRM, every
input and output checked against the scripts' contracts.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import pathlib
import typing as t

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from lab_fixtures import module_lab
from test_file_transfer_scripts import CHUNK, POLICY_KEY, Stream, authorize, partials, prepare, send_input
from winrm_lab import drives
from winrm_lab.control import ControlError

PUBLIC = "C:\\Users\\Public"
INNOCENT = "C:\\Windows\\System32\\config\\innocent.bin"  # what a planted link would expose or overwrite


lab = module_lab("confinement", devices=12, seed=12, slot=84)


_next_device = itertools.count()


@pytest.fixture
def device(lab):
    entry = lab.devices[next(_next_device) % (len(lab.devices) - 1)]  # the last one is the maze's
    authorize(lab, entry)
    return entry


def file_root(lab: t.Any, entry: dict[str, t.Any]) -> pathlib.Path:
    return pathlib.Path(lab.manifest["lab"]["work_dir"]) / "devices" / entry["name"]


def run_send(lab: t.Any, entry: dict[str, t.Any], path: str, data: bytes, **changes: t.Any) -> dict[str, t.Any]:
    stream = Stream(lab, entry, "file_transfer_send", send_input(path, len(data), **changes))
    ready = stream.line()
    if ready["kind"] == "result":
        stream.finish()
        return ready
    stream.send(b"0\n" + data + hashlib.sha256(data).hexdigest().encode() + b"\n", end=True)
    while (message := stream.line())["kind"] != "result":
        pass
    stream.finish()
    return message


def run_receive(lab: t.Any, entry: dict[str, t.Any], path: str) -> tuple[dict[str, t.Any], bytes]:
    request = {"path": path, "offset": 0, "transfer_id": "cccccccccccccccc", "session_id": "s-1",
               "chunk_bytes": CHUNK, "destination": "ctl:/tmp/r.bin", "requested_by": "tester"}
    stream = Stream(lab, entry, "file_transfer_receive", request)
    first = stream.line()
    if first["kind"] == "result":
        stream.finish()
        return first, b""
    stream.send(b"0\n", end=True)
    body = bytearray()
    while length := int.from_bytes(stream.take(4), "big"):
        body.extend(stream.take(length))
    result = stream.line()
    stream.finish()
    return result, bytes(body)


# --- the lab models Windows' reparse points -------------------------------------------------------------------------

def test_every_device_has_windows_builtin_junctions(lab, device):
    root = file_root(lab, device)
    for link, target in drives.BUILTIN_JUNCTIONS:
        host = root / "C" / link.replace("\\", "/")
        assert host.is_symlink(), link
        assert drives.windows_path_of(root, host) == "C:\\" + target
    profiles = [p for p in (root / "C" / "Users").iterdir() if (p / "AppData").is_dir()]
    assert profiles and all((p / "Application Data").is_symlink() for p in profiles)
    # Reading through a junction shows its target, as on Windows.
    lab.control.write_file(device["name"], "C:\\ProgramData\\seen.txt", b"through")
    assert lab.control.read_file(device["name"], "C:\\Users\\All Users\\seen.txt") == b"through"


def test_a_link_out_of_the_devices_drives_is_dangling_on_the_device(lab, device, tmp_path):
    outside = tmp_path / "host-secret.txt"
    outside.write_bytes(b"the lab host's own file")
    link = file_root(lab, device) / "C" / "Users" / "Public" / "Escape"
    os.symlink(outside.parent, link)
    try:
        result, body = run_receive(lab, device, PUBLIC + "\\Escape\\host-secret.txt")
        assert result["outcome"] == "failed" and result["error"]["code"] == "reparse_point" and body == b""
    finally:
        link.unlink()


def test_planting_a_link_is_validated(lab, device):
    lab.control.write_file(device["name"], PUBLIC + "\\Busy\\x.txt", b"x")
    for body in ({"path": PUBLIC + "\\Busy", "target": "C:\\Windows"},  # something is there: say what to do
                 {"path": PUBLIC + "\\Other", "target": "C:\\Windows", "move_existing_to": PUBLIC + "\\Moved"},
                 {"path": "relative", "target": "C:\\Windows"}, {"path": PUBLIC + "\\L", "target": "C:\\W", "x": 1}):
        with pytest.raises(ControlError) as error:
            lab.control.request("POST", f"/devices/{device['name']}/links", body)
        assert error.value.status == 400
    assert lab.control.read_file(device["name"], PUBLIC + "\\Busy\\x.txt") == b"x"


# --- planted links, both directions ---------------------------------------------------------------------------------

@pytest.fixture
def planted(lab, device):
    """A junction a standard user made in a folder they own: C:\\Users\\Public\\Shared -> C:\\Windows\\System32\\config,
    with a file there they must not read or overwrite."""
    lab.control.write_file(device["name"], INNOCENT, b"system data")
    lab.control.plant_link(device["name"], PUBLIC + "\\Shared", "C:\\Windows\\System32\\config")
    yield device
    lab.control.delete_file(device["name"], PUBLIC + "\\Shared")


def test_a_planted_junction_is_refused_sending(lab, planted):
    path = PUBLIC + "\\Shared\\innocent.bin"
    answer = prepare(lab, planted, path=path)
    assert answer["refusal"]["code"] == "reparse_point"
    assert "'C:\\Users\\Public\\Shared', a junction, symbolic link or mount point" in answer["refusal"]["message"]
    result = run_send(lab, planted, path, b"attacker's bytes")
    assert result["outcome"] == "failed" and result["error"]["code"] == "reparse_point"
    assert lab.control.read_file(planted["name"], INNOCENT) == b"system data"
    assert not partials(lab, planted, "C:\\Windows\\System32\\config")


def test_a_planted_junction_is_refused_receiving(lab, planted):
    path = PUBLIC + "\\shared\\INNOCENT.bin"  # any case
    answer = prepare(lab, planted, direction="from_device", path=path)
    assert answer["refusal"]["code"] == "reparse_point" and answer["file"] is None
    result, body = run_receive(lab, planted, path)
    assert result["outcome"] == "failed" and result["error"]["code"] == "reparse_point" and body == b""


def test_a_link_to_a_file_is_refused(lab, device):
    lab.control.write_file(device["name"], INNOCENT, b"system data")
    link = file_root(lab, device) / "C" / "Users" / "Public" / "report.bin"
    os.symlink(os.path.relpath(file_root(lab, device) / "C" / "Windows" / "System32" / "config" / "innocent.bin",
                               link.parent), link)
    try:
        assert run_receive(lab, device, PUBLIC + "\\report.bin")[0]["error"]["code"] == "reparse_point"
        assert run_send(lab, device, PUBLIC + "\\report.bin", b"x")["error"]["code"] == "reparse_point"
        assert lab.control.read_file(device["name"], INNOCENT) == b"system data"
    finally:
        link.unlink()


def test_the_all_users_junction_of_windows_is_refused(lab, device):
    script = "C:\\ProgramData\\RemoteSupport\\scripts\\expire_session.ps1"
    lab.control.write_file(device["name"], script, b"# the expiry task's script")
    through = "C:\\Users\\All Users\\RemoteSupport\\scripts\\expire_session.ps1"  # under the default root C:\Users
    assert prepare(lab, device, path=through)["refusal"]["code"] == "reparse_point"
    assert run_send(lab, device, through, b"Start-Process evil.exe")["error"]["code"] == "reparse_point"
    assert run_receive(lab, device, through)[0]["error"]["code"] == "reparse_point"
    for other in ("C:\\Users\\Default User\\x.txt", "C:\\Documents and Settings\\Public\\x.txt"):
        assert prepare(lab, device, path=other)["refusal"]["code"] in ("reparse_point", "path_not_allowed")
    assert lab.control.read_file(device["name"], script) == b"# the expiry task's script"


def test_an_allowed_root_must_be_a_real_folder(lab, device):
    lab.control.plant_link(device["name"], PUBLIC + "\\Drop", "C:\\Windows\\Temp")
    lab.control.set_registry_value(device["name"], POLICY_KEY, "FileTransferAllowedRoots", [PUBLIC + "\\Drop"])
    try:
        refusal = prepare(lab, device, path=PUBLIC + "\\Drop\\x.bin")["refusal"]
        assert refusal["code"] == "reparse_point"
        assert "The allowed folder 'C:\\Users\\Public\\Drop' is not a real folder" in refusal["message"]
    finally:
        lab.control.delete_registry(device["name"], POLICY_KEY, "FileTransferAllowedRoots")
        lab.control.delete_file(device["name"], PUBLIC + "\\Drop")


@pytest.mark.parametrize("path,code,words", [
    ("\\\\?\\C:\\Users\\Public\\x.bin", "device_path", "device namespace"),
    ("\\\\.\\C:\\Users\\Public\\x.bin", "device_path", "device namespace"),
    ("//?/C:/Users/Public/x.bin", "device_path", "device namespace"),
    ("C:\\Users\\Public\\x.bin:hidden", "alternate_stream", "alternate data stream"),
    ("C:\\Users\\Public\\x.bin::$DATA", "alternate_stream", "alternate data stream"),
    ("C:\\Users\\Public\\NUL", "reserved_name", "a name Windows reserves for a device"),
    ("C:\\Users\\Public\\com1.txt", "reserved_name", "a name Windows reserves for a device"),
    ("C:\\Users\\Public\\Lpt9 .log", "reserved_name", "a name Windows reserves for a device"),
    ("C:\\Users\\Public\\aux\\x.bin", "reserved_name", "a name Windows reserves for a device"),
])
def test_each_rule_names_itself(lab, device, path, code, words):
    for direction in ("to_device", "from_device"):
        refusal = prepare(lab, device, direction=direction, path=path)["refusal"]
        assert refusal["code"] == code and words in refusal["message"], refusal
        assert "outside the folders" not in refusal["message"]
    assert run_send(lab, device, path, b"x")["error"]["code"] == code
    assert run_receive(lab, device, path)[0]["error"]["code"] == code


def test_a_reserved_file_name_in_a_folder_destination_is_refused(lab, device):
    refusal = prepare(lab, device, path=PUBLIC + "\\", file_name="CON.txt")["refusal"]
    assert refusal["code"] == "reserved_name"


def test_short_names_lead_where_windows_leads_them(lab, device):
    assert drives.short_names(["All Users", "Default User", "Public", "ToWindows", "ToWindows2", "a.b.c.txt"]) == {
        "All Users": "ALLUSE~1", "Default User": "DEFAUL~1", "ToWindows": "TOWIND~1", "ToWindows2": "TOWIND~2",
        "a.b.c.txt": "ABC~1.TXT"}
    lab.control.write_file(device["name"], "C:\\ProgramData\\short.txt", b"behind All Users")
    refusal = prepare(lab, device, direction="from_device", path="C:\\Users\\ALLUSE~1\\short.txt")["refusal"]
    assert refusal["code"] == "reparse_point" and "'C:\\Users\\ALLUSE~1'" in refusal["message"]


# --- a folder replaced by a link while the transfer runs ---------------------------------------------------------------

def test_a_folder_swapped_for_a_junction_mid_send_stops_the_transfer(lab, device):
    folder = PUBLIC + "\\Incoming"
    lab.control.write_file(device["name"], folder + "\\keep.txt", b"k")
    lab.control.write_file(device["name"], "C:\\Windows\\Temp\\placeholder", b"")
    data = os.urandom(6 * CHUNK)
    stream = Stream(lab, device, "file_transfer_send", send_input(folder + "\\report.bin", len(data)))
    assert stream.line()["kind"] == "ready"
    stream.send(b"0\n" + data[:CHUNK])
    assert stream.line() == {"kind": "progress", "bytes": CHUNK}
    # Between chunks, the user renames the folder and puts a junction to C:\Windows\Temp in its place.
    lab.control.plant_link(device["name"], folder, "C:\\Windows\\Temp", move_existing_to=PUBLIC + "\\Moved")
    try:
        stream.send(data[CHUNK:] + hashlib.sha256(data).hexdigest().encode() + b"\n", end=True)
        while (result := stream.line())["kind"] != "result":
            pass
        stream.finish()
        assert result["outcome"] == "failed" and result["error"]["code"] == "path_changed", result
        assert "a folder on its way was moved or replaced by a link" in result["error"]["message"]
        names = [e["name"] for e in lab.control.list_files(device["name"], "C:\\Windows\\Temp")]
        assert names == ["placeholder"]  # nothing arrived behind the link
        assert not partials(lab, device, PUBLIC + "\\Moved")  # the temporary file went, through its handle
    finally:
        lab.control.delete_file(device["name"], folder)


def test_a_folder_swapped_for_a_junction_mid_receive_stops_the_transfer(lab, device):
    folder = PUBLIC + "\\Outgoing"
    data = os.urandom(6 * CHUNK)
    lab.control.write_file(device["name"], folder + "\\report.bin", data)
    lab.control.write_file(device["name"], "C:\\Windows\\Temp\\report.bin", b"secret " * 1000)
    request = {"path": folder + "\\report.bin", "offset": 0, "transfer_id": "dddddddddddddddd", "session_id": "s-1",
               "chunk_bytes": CHUNK, "destination": "ctl:/tmp/r.bin", "requested_by": "tester"}
    stream = Stream(lab, device, "file_transfer_receive", request)
    assert stream.line()["kind"] == "ready"
    stream.send(b"0\n", end=True)
    first = stream.take(4 + CHUNK)
    lab.control.plant_link(device["name"], folder, "C:\\Windows\\Temp", move_existing_to=PUBLIC + "\\Sent")
    try:
        body = bytearray(first[4:])
        while length := int.from_bytes(stream.take(4), "big"):
            body.extend(stream.take(length))
        result = stream.line()
        stream.finish()
        assert result["outcome"] == "failed" and result["error"]["code"] == "path_changed", result
        assert b"secret" not in body and data.startswith(bytes(body))
    finally:
        lab.control.delete_file(device["name"], folder)


# --- however the path is written ------------------------------------------------------------------------------------------

ROOT = PUBLIC + "\\Allowed"
NAMES = ["ToWindows", "ToAllowedSub", "sub", "..", ".", "All Users", "file.bin", "Windows", "Temp", "Allowed",
         "ALLOWE~1", "TOWIND~1", "ALLUSE~1", "PROGRA~1", "ProgramData", "x.bin:s", "NUL", "com1.bin"]
# In the allowed folder most often: that is where a path has to be written to slip past the text check.
PREFIXES = ["C:\\Users\\Public\\Allowed\\"] * 4 + ["c:/users/public/allowed/", "C:\\Users\\Public\\Allowed\\..\\",
            "C:\\", "C:\\Users\\", "\\\\?\\C:\\Users\\Public\\Allowed\\", "\\\\.\\C:\\Users\\Public\\Allowed\\"]


@st.composite
def device_paths(draw: t.Any) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        name = draw(st.sampled_from(NAMES))
        name = draw(st.sampled_from([name, name.upper(), name.lower()]))
        parts.append(name + draw(st.sampled_from(["", "", ".", " ", ". ."])))
    return draw(st.sampled_from(PREFIXES)) + draw(st.sampled_from(["\\", "/"])).join(parts)


@pytest.fixture(scope="module")
def maze(lab):
    """A device whose only allowed folder holds files and links every way out: to C:\\Windows, back into the allowed
    folder, and Windows' own All Users."""
    entry = lab.devices[-1]
    name = entry["name"]
    for path in (ROOT + "\\file.bin", ROOT + "\\sub\\file.bin", "C:\\Windows\\file.bin", "C:\\Windows\\Temp\\file.bin",
                 "C:\\ProgramData\\file.bin", PUBLIC + "\\file.bin"):
        lab.control.write_file(name, path, b"data at " + path.encode())
    lab.control.plant_link(name, ROOT + "\\ToWindows", "C:\\Windows")
    lab.control.plant_link(name, ROOT + "\\ToAllowedSub", ROOT + "\\sub")
    lab.control.set_registry_value(name, POLICY_KEY, "FileTransferAllowedRoots", [ROOT])
    return entry


def resolves_to(lab: t.Any, entry: dict[str, t.Any], windows_path: str) -> str | None:
    """Where a device path leads on the lab's disk, every link followed: the ground truth a transfer must respect."""
    root = file_root(lab, entry)
    host = root / windows_path[0].upper()
    for part in [p for p in windows_path[3:].split("\\") if p]:
        host = host / ((drives.match_entry(host, part) if host.is_dir() else None) or part)
    return drives.windows_path_of(root, host)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=device_paths(), direction=st.sampled_from(["to_device", "from_device"]))
@example(path=ROOT + "\\ToWindows\\file.bin", direction="from_device")
@example(path=ROOT + "\\TOWIND~1\\file.bin", direction="from_device")  # the short name of the link
@example(path=ROOT + "\\toallowedsub\\FILE.BIN. ", direction="to_device")
@example(path=ROOT + "\\..\\..\\All Users\\file.bin", direction="from_device")
@example(path=ROOT + "\\file.bin\\ToWindows\\x.bin", direction="to_device")  # a file where a folder should be
def test_no_accepted_path_ever_resolves_outside_the_allowed_folder(lab, maze, path, direction):
    authorize(lab, maze)
    answer = prepare(lab, maze, direction=direction, path=path, file_name="file.bin")
    if answer["refusal"] is not None:
        return
    where = resolves_to(lab, maze, answer["path"])
    assert where is not None and where.lower().startswith(ROOT.lower() + "\\"), (path, answer["path"], where)
    if direction == "from_device":
        result, body = run_receive(lab, maze, path)
        if result["outcome"] == "completed":
            assert body == b"data at " + where.encode() or body.startswith(b"data at " + ROOT.encode()), (path, body)
    else:
        result = run_send(lab, maze, path, b"sent", overwrite=False, transfer_id="eeeeeeeeeeeeeeee")
        if result["outcome"] == "completed":
            landed = resolves_to(lab, maze, result["path"])
            assert landed is not None and landed.lower().startswith(ROOT.lower() + "\\"), (path, landed)
            lab.control.delete_file(maze["name"], landed)
