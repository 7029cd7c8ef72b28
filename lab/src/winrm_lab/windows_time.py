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


@functools.lru_cache(maxsize=None)
def wmi_queries(script_name: str) -> int:
    """How many WMI queries the collection's script of this name makes (counted in its text)."""
    from .emulation.powershell import device_scripts_dir  # the emulation imports this module

    directory = device_scripts_dir()
    if directory is None:
        return 0
    try:
        text = (directory / f"{script_name}.ps1").read_text(encoding="utf-8-sig")
    except OSError:
        return 0
    return len(_WMI_QUERY.findall(text))


async def powershell_started(device: t.Any) -> None:
    model = getattr(device, "windows_time", None)
    if model is not None:
        await asyncio.sleep(model.powershell_startup_seconds)


async def script_queries_answered(device: t.Any, script_name: str) -> None:
    model = getattr(device, "windows_time", None)
    if model is not None:
        count = wmi_queries(script_name)
        if count:
            await asyncio.sleep(count * model.wmi_query_seconds)
