# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Device scripts: the PowerShell 5.1 files under device_scripts/ and how their input and output travel.

Every device-side step is one `.ps1` file with a written contract (`NAME.contract.json`: input and output JSON
Schemas). A script is started as `powershell.exe -EncodedCommand <bootstrap.ps1>`; the script text and its input go
in on stdin as one JSON document and the script answers with one JSON document on stdout. Nothing a user typed is
ever pasted into script text or a command line.

What several scripts share (the session lock, the session record, the transfer policy, ...) is written once, in
device_scripts/library/NAME.ps1, and a script takes it with a line `# library: NAME` where its code belongs (after
`param(...)`). `load` puts the library's text in place of that line, so a device always receives, and a scheduled task
always runs, one self-contained script.

What the collection leaves on a device (registry keys, folders, task names, the event source and event ids, the script
folder's ACL) is declared once, in device_scripts/device_layout.json: the controller reads it with `layout()`, the lab
reads the file, and the scripts take it as the library `device_layout`, which `library` renders from the file into
PowerShell variables (so it has no .ps1 of its own that could drift from the data).

Each contract pins its script: `script_sha256` is the SHA-256 of the script's text as the device receives it (what
`load(NAME).text` is). A unit test fails when the text changes and the pin does not, so that nobody changes a script
without looking at its contract and at the lab's emulation of it. Once both are right, `scripts/pin-device-scripts [NAME ...]` rewrites the pins.
"""

from __future__ import annotations

import base64
import hashlib
import dataclasses
import functools
import json
import os
import re
import typing as t

from ansible_collections.remote_support.windows.plugins.module_utils.errors import DeviceError

SCRIPTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "device_scripts")
LIBRARY_DIR = os.path.join(SCRIPTS_DIR, "library")
LAYOUT_PATH = os.path.join(SCRIPTS_DIR, "device_layout.json")
LAYOUT_LIBRARY = "device_layout"

_HEADER = re.compile(r"^# (device-script|version): *(\S+)", re.MULTILINE)
_LIBRARY_LINE = re.compile(r"^# library: *(\S+?)[ \t]*$", re.MULTILINE)


@dataclasses.dataclass(frozen=True)
class DeviceScript:
    name: str
    version: int
    text: str
    contract: dict[str, t.Any] = dataclasses.field(repr=False, compare=False)

    def command_arguments(self) -> list[str]:
        """powershell.exe arguments that run the bootstrap, which then reads this script from stdin."""
        return ["-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-EncodedCommand", _encoded_bootstrap()]

    def stdin_payload(self, script_input: t.Mapping[str, t.Any]) -> bytes:
        return json.dumps({"script": self.text, "input": dict(script_input)}, separators=(",", ":")).encode("utf-8")

    def parse_result(self, stdout: bytes, stderr: bytes, exit_code: int) -> dict[str, t.Any]:
        """The script's JSON result, or a DeviceError('script') that quotes what the device said."""
        err_text = _decode(stderr).strip()
        if exit_code != 0:
            raise DeviceError("script", f"The device script '{self.name}' failed on the device (exit code {exit_code}): "
                                        f"{_first_lines(err_text) or 'no error text'}. Check the device's PowerShell "
                                        "and WMI health.", err_text)
        out_text = _decode(stdout).strip()
        lines = [line for line in out_text.splitlines() if line.strip()]
        try:
            result = json.loads(lines[-1]) if lines else None
        except ValueError:
            result = None
        if not isinstance(result, dict):
            raise DeviceError("script", f"The device script '{self.name}' did not answer with a JSON object. Its output "
                                        f"began: {out_text[:200]!r}.", out_text[:2000])
        missing = [key for key in self.contract["output"].get("required", []) if key not in result]
        if missing:
            raise DeviceError("script", f"The device script '{self.name}' answered without {', '.join(missing)}; the "
                                        "device may run a different version of the collection's scripts.")
        return result


def _decode(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return data.decode("utf-8", errors="replace")


def _first_lines(text: str, count: int = 3) -> str:
    return " ".join(line.strip() for line in text.splitlines()[:count] if line.strip())


@functools.lru_cache(maxsize=None)
def _encoded_bootstrap() -> str:
    with open(os.path.join(SCRIPTS_DIR, "bootstrap.ps1"), encoding="utf-8") as handle:
        return base64.b64encode(handle.read().encode("utf-16-le")).decode("ascii")


@functools.lru_cache(maxsize=None)
def layout() -> dict[str, t.Any]:
    """device_layout.json: what the collection leaves on a device, as the scripts and the lab know it."""
    with open(LAYOUT_PATH, encoding="utf-8") as handle:
        return json.load(handle)


def event_id(name: str) -> int:
    """The Application log event id device_layout.json gives NAME: 'group.what' (session.authorized) or 'what'."""
    value: t.Any = layout()["events"]
    for part in name.split("."):
        value = value[part]
    if not isinstance(value, int):
        raise KeyError(f"device_layout.json names no single event {name}")
    return value


def _camel(*words: str) -> str:
    parts = "_".join(words).split("_")
    return parts[0] + "".join(part[:1].upper() + part[1:] for part in parts[1:])


def _ps_value(value: t.Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, list)):
        raise ValueError(f"device_layout.json: {value!r} has no PowerShell rendering")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return "@(" + ", ".join(_ps_value(item) for item in value) + ")"


def render_layout(data: t.Mapping[str, t.Any]) -> str:
    """The library device_layout: one PowerShell variable for each entry of device_layout.json."""
    lines = [f"# device-script-library: {LAYOUT_LIBRARY}",
             "# Rendered from device_layout.json by device_script.py: change the data file, not this text."]
    lines += [f"${_camel(name, 'key')} = {_ps_value(path)}" for name, path in data["registry"].items()]
    lines += [f"${_camel(name, 'folder')} = Join-Path -Path $env:ProgramData -ChildPath {_ps_value(path)}"
              for name, path in data["folders"].items()]
    lines += [f"${_camel(name, 'task')} = {_ps_value(task)}" for name, task in data["tasks"].items()]
    lines += [f"$eventSource = {_ps_value(data['event_source'])}", f"$sessionMutex = {_ps_value(data['session_mutex'])}"]
    for group, events in data["events"].items():
        if isinstance(events, int):
            lines.append(f"${_camel(group, 'event_id')} = {events}")
        else:
            lines += [f"${_camel(group, name, 'event_id')} = {event_id}" for name, event_id in events.items()]
    acl = data["script_folder_acl"]
    lines += [f"$scriptFolderOwner = {_ps_value(acl['owner'])}", f"$scriptFolderGrants = {_ps_value(acl['grants'])}",
              f"$trustedWriters = {_ps_value(data['trusted_writers'])}"]
    return "\n".join(lines)


@functools.lru_cache(maxsize=None)
def library(name: str) -> str:
    """The text of device_scripts/library/NAME.ps1, which must name itself in its first line; device_layout is
    rendered from device_layout.json."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"'{name}' is not a device-script library name")
    if name == LAYOUT_LIBRARY:
        return render_layout(layout())
    with open(os.path.join(LIBRARY_DIR, f"{name}.ps1"), encoding="utf-8") as handle:
        text = handle.read()
    if not text.startswith(f"# device-script-library: {name}\n"):
        raise ValueError(f"device-script library {name}.ps1 does not start with '# device-script-library: {name}'")
    if _LIBRARY_LINE.search(text) or _HEADER.search(text):
        # One level only: a script names every library it takes, in the order they go in.
        raise ValueError(f"device-script library {name}.ps1 takes a library or carries a script header")
    return text.rstrip("\n")


def with_libraries(name: str, text: str) -> str:
    """TEXT with each `# library: NAME` line replaced by that library's text; each library goes in once."""
    taken: list[str] = []

    def insert(match: re.Match[str]) -> str:
        wanted = match.group(1)
        if wanted in taken:
            raise ValueError(f"device script {name} takes the library {wanted} twice")
        taken.append(wanted)
        return library(wanted)

    return _LIBRARY_LINE.sub(insert, text)


@functools.lru_cache(maxsize=None)
def load(name: str) -> DeviceScript:
    """The device script NAME, its libraries in place, with its contract; its header must name it and agree with the
    contract's version."""
    with open(os.path.join(SCRIPTS_DIR, f"{name}.ps1"), encoding="utf-8") as handle:
        text = handle.read()
    with open(os.path.join(SCRIPTS_DIR, f"{name}.contract.json"), encoding="utf-8") as handle:
        contract = json.load(handle)
    header = dict(_HEADER.findall(text))
    if header.get("device-script") != name or contract.get("name") != name or \
            str(contract.get("version")) != header.get("version"):
        raise ValueError(f"device script {name}: header {header} does not match its contract "
                         f"({contract.get('name')} v{contract.get('version')})")
    return DeviceScript(name=name, version=int(contract["version"]), text=with_libraries(name, text),
                        contract=contract)


def script_sha256(name: str) -> str:
    """The SHA-256 (hex) of the script NAME's text as the device receives it: what its contract pins."""
    return hashlib.sha256(load(name).text.encode("utf-8")).hexdigest()


def script_names() -> list[str]:
    """Every script that has a contract."""
    suffix = ".contract.json"
    return sorted(entry[:-len(suffix)] for entry in os.listdir(SCRIPTS_DIR) if entry.endswith(suffix))


_PIN_LINE = re.compile(r'^(  "script_sha256": )"[0-9a-f]*",\n', re.MULTILINE)
_VERSION_LINE = re.compile(r'^  "version": \d+,\n', re.MULTILINE)


def pinned_contract_text(name: str) -> str:
    """NAME.contract.json with `script_sha256` set to the script's present text; the rest of the file as it is."""
    with open(os.path.join(SCRIPTS_DIR, f"{name}.contract.json"), encoding="utf-8") as handle:
        text = handle.read()
    pin = f'  "script_sha256": "{script_sha256(name)}",\n'
    if _PIN_LINE.search(text):
        return _PIN_LINE.sub(lambda match: pin, text, count=1)
    match = _VERSION_LINE.search(text)
    if match is None:
        raise ValueError(f"{name}.contract.json has no top-level version line to put the pin after")
    return text[:match.end()] + pin + text[match.end():]


def write_pins(names: t.Iterable[str]) -> list[str]:
    """Sets script_sha256 in the contracts of NAMES to their scripts' present text; the names whose pin moved."""
    moved = []
    for name in names:
        text = pinned_contract_text(name)
        path = os.path.join(SCRIPTS_DIR, f"{name}.contract.json")
        with open(path, encoding="utf-8") as handle:
            if handle.read() == text:
                continue
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        moved.append(name)
    return moved
