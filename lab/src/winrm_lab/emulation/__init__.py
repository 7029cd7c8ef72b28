"""Emulation of the programs a WinRS Command can start on a simulated device.

`start_command` is the one entry point the WinRS layer uses. It decides, as Windows does, whether the command line
goes through `cmd.exe /c` (WINRS_SKIP_CMD_SHELL false, the default) or is started directly, and picks the program:
cmd.exe's built-ins and a few system tools live in cmd.py, powershell.exe (which runs the collection's device
scripts) in powershell.py. Anything else fails the way Windows fails.
"""

from __future__ import annotations

from ..device import Device
from ..process import Identity, Process, ProcessIO


def start_command(device: Device, command: str, arguments: list[str], *, skip_cmd_shell: bool, codepage: int,
                  environment: dict[str, str], working_directory: str | None,
                  identity: Identity | None = None) -> Process:
    """Starts `command` with `arguments` on `device` and returns the running process. `identity`: who runs it and
    in which logon session (None: the WinRM caller, in session 0)."""
    from . import cmd  # imported here so each module can import this package's helpers without a cycle

    io = ProcessIO(device, command, list(arguments), dict(environment), codepage, working_directory, identity)
    if skip_cmd_shell:
        program = cmd.direct_program(command, arguments)
    else:
        program = cmd.cmd_program(command, arguments)
    process = Process(program, io)
    process.start()
    return process
