"""Windows' own time per command, for fleets that take as long as real ones (`winrm-lab --device-latency windows`).

A WinRS command that runs a device script on Windows waits for powershell.exe to start and for each WMI query the
script makes, on top of the network and WinRM. The lab answers at once unless asked to model these; the figures are
the published ones cited in lab/README.md ("Windows' own time").
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import re
import typing as t

# Windows PowerShell 5.1 (WMF 5.1 release notes, "Engine improvements"): powershell -command "echo 1", 250 ms.
POWERSHELL_STARTUP_SECONDS = 0.250
# One WQL query for Win32_OperatingSystem on Windows 10, averaged over 100 runs: 26.6 ms (and 23 ms in a second
# measurement of the same query); taken as 25 ms per Get-CimInstance / Get-WmiObject a script makes.
WMI_QUERY_SECONDS = 0.025

_WMI_QUERY = re.compile(r"\b(Get-CimInstance|Get-WmiObject)\b", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class WindowsTime:
    powershell_startup_seconds: float
    wmi_query_seconds: float


MODELS: dict[str, WindowsTime | None] = {
    "none": None,
    "windows": WindowsTime(POWERSHELL_STARTUP_SECONDS, WMI_QUERY_SECONDS),
}


# A library a script calls only when its input asks (get_support_session's `facts`): its queries count only then.
ON_REQUEST: dict[str, dict[str, str]] = {"get_support_session": {"device_facts": "facts"}}
_LIBRARY_LINE = re.compile(r"^# library: *(\S+?)[ \t]*$", re.MULTILINE)


def _queries_in(path: t.Any) -> tuple[int, list[str]]:
    """The WMI queries in one file's text, and the libraries it takes."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError:
        return 0, []
    return len(_WMI_QUERY.findall(text)), _LIBRARY_LINE.findall(text)


@functools.lru_cache(maxsize=None)
def wmi_queries(script_name: str, asked: frozenset[str] = frozenset()) -> int:
    """How many WMI queries the collection's script of this name makes (counted in its text and its libraries'),
    with the libraries it calls on request only when `asked` names their input."""
    from .emulation.powershell import device_scripts_dir  # the emulation imports this module

    directory = device_scripts_dir()
    if directory is None:
        return 0
    count, libraries = _queries_in(directory / f"{script_name}.ps1")
    on_request = ON_REQUEST.get(script_name, {})
    for library in libraries:
        if library in on_request and on_request[library] not in asked:
            continue
        count += _queries_in(directory / "library" / f"{library}.ps1")[0]
    return count


async def powershell_started(device: t.Any) -> None:
    model = getattr(device, "windows_time", None)
    if model is not None:
        await asyncio.sleep(model.powershell_startup_seconds)


async def script_queries_answered(device: t.Any, script_name: str, script_input: t.Any = None) -> None:
    model = getattr(device, "windows_time", None)
    if model is not None:
        asked = frozenset(key for key, value in (script_input or {}).items() if value) \
            if isinstance(script_input, dict) else frozenset()
        count = wmi_queries(script_name, asked & frozenset(ON_REQUEST.get(script_name, {}).values()))
        if count:
            await asyncio.sleep(count * model.wmi_query_seconds)
