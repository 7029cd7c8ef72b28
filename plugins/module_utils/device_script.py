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
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import os
import re
import typing as t

from ansible_collections.remote_support.windows.plugins.module_utils.errors import DeviceError

SCRIPTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "device_scripts")
LIBRARY_DIR = os.path.join(SCRIPTS_DIR, "library")

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
def library(name: str) -> str:
    """The text of device_scripts/library/NAME.ps1, which must name itself in its first line."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"'{name}' is not a device-script library name")
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
