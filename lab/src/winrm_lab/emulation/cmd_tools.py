"""The console tools cmd.exe starts (cmd.py resolves a name to one of these): hostname, whoami, ping, timeout, more,
findstr, cmd itself and powershell. Each writes what the Windows tool writes, byte for byte where tests compare it.
"""

from __future__ import annotations

import asyncio
import re
import typing as t

from ..process import Program, ProcessIO
from .cmdline import split_argv

if t.TYPE_CHECKING:
    from .cmd import Interpreter, Streams

# Under WinRS stdin is a pipe, and timeout.exe refuses to run without a console: scripts run remotely wait with
# `ping -n` instead.
TIMEOUT_REDIRECTED = "ERROR: Input redirection is not supported, exiting the process immediately.\r\n"


def load_powershell() -> t.Callable[[list[str]], Program] | None:
    try:
        from .powershell import powershell_program
    except ImportError:
        return None
    return powershell_program


async def _tool_hostname(interp: Interpreter, args: str, streams: Streams) -> int:
    if args.strip():
        await streams.stderr.write(
            interp.encode("sethostname: Use the Network Control Panel Applet to set hostname.\r\n"))
        return 1
    await streams.stdout.write(interp.encode(interp.io.device.name + "\r\n"))
    return 0


async def _tool_whoami(interp: Interpreter, args: str, streams: Streams) -> int:
    words = split_argv(args)
    domain = interp.get("USERDOMAIN") or interp.io.device.name
    user = interp.get("USERNAME") or "user"
    if words:
        await streams.stderr.write(interp.encode(
            f"ERROR: Invalid argument/option - '{words[0]}'.\r\nType \"WHOAMI /?\" for usage.\r\n"))
        return 1
    await streams.stdout.write(interp.encode(f"{domain}\\{user}".lower() + "\r\n"))
    return 0


async def _tool_ping(interp: Interpreter, args: str, streams: Streams) -> int:
    words = split_argv(args)
    count, target = 4, None
    i = 0
    while i < len(words):
        word = words[i]
        if word.lower() in ("-n", "/n") and i + 1 < len(words):
            if not words[i + 1].isdigit() or int(words[i + 1]) < 1:
                await streams.stderr.write(
                    interp.encode("Bad value for option -n, valid range is from 1 to 4294967295.\r\n"))
                return 1
            count = int(words[i + 1])
            i += 2
            continue
        if word.startswith(("-", "/")) and i + 1 < len(words) and word.lower() in ("-w", "/w", "-l", "/l", "-i", "/i"):
            i += 2
            continue
        target = word
        i += 1
    if target is None:
        await streams.stdout.write(
            interp.encode("\r\nUsage: ping [-t] [-a] [-n count] [-l size] [-f] [-i TTL] [-v TOS]\r\n"))
        return 1
    device = interp.io.device
    loopback = target.lower() in ("localhost", device.name.lower(), getattr(device, "address", "")) \
        or target.startswith("127.")
    by_name = target.lower() in ("localhost", device.name.lower())
    # Windows resolves its own name and localhost to ::1 first, and IPv6 replies carry no bytes/TTL fields.
    address = "::1" if by_name else target
    reply = f"Reply from {address}: time<1ms\r\n" if by_name else f"Reply from {address}: bytes=32 time<1ms TTL=128\r\n"
    header = f"\r\nPinging {device.name} [{address}] with 32 bytes of data:\r\n" if by_name \
        else f"\r\nPinging {address} with 32 bytes of data:\r\n"
    await streams.stdout.write(interp.encode(header))
    for index in range(count):
        if index:
            await asyncio.sleep(1)  # ping waits a second between echo requests: `ping -n N` sleeps N-1 seconds
        await streams.stdout.write(interp.encode(reply))
    await streams.stdout.write(interp.encode(
        f"\r\nPing statistics for {address}:\r\n"
        f"    Packets: Sent = {count}, Received = {count}, Lost = 0 (0% loss),\r\n"
        "Approximate round trip times in milli-seconds:\r\n"
        "    Minimum = 0ms, Maximum = 0ms, Average = 0ms\r\n"))
    return 0


async def _tool_timeout(interp: Interpreter, args: str, streams: Streams) -> int:
    await streams.stderr.write(interp.encode(TIMEOUT_REDIRECTED))
    return 1


async def _read_input_or_files(interp: Interpreter, files: list[str], streams: Streams) -> tuple[str | None, int]:
    if not files:
        return (await streams.read_stdin()).decode(interp.io.encoding, errors="replace"), 0
    texts = []
    for name in files:
        path = interp.host_path(name)
        if path is None or not path.is_file():
            return None, 1
        texts.append(path.read_bytes().decode(interp.io.encoding, errors="replace"))
    return "".join(texts), 0


async def _tool_more(interp: Interpreter, args: str, streams: Streams) -> int:
    files = [w for w in split_argv(args) if not w.startswith("/")]
    text, code = await _read_input_or_files(interp, files, streams)
    if text is None:
        await streams.stderr.write(interp.encode(f"Cannot access file {files[0]}\r\n"))
        return 1
    lines = text.splitlines()
    await streams.stdout.write(interp.encode("".join(line + "\r\n" for line in lines)))
    return 0


async def _tool_findstr(interp: Interpreter, args: str, streams: Streams) -> int:
    words = split_argv(args)
    ignore_case = invert = False
    literal: str | None = None
    patterns: list[str] = []
    files: list[str] = []
    for word in words:
        lower = word.lower()
        if lower.startswith("/c:"):
            literal = word[3:]
        elif lower in ("/i",):
            ignore_case = True
        elif lower in ("/v",):
            invert = True
        elif lower.startswith("/") and len(word) <= 3:
            continue  # /l /r /b /e /n and friends: the lab matches plain text
        elif literal is None and not patterns:
            patterns = word.split()
        else:
            files.append(word)
    if literal is not None:
        patterns = [literal]
    if not patterns:
        await streams.stderr.write(interp.encode("FINDSTR: Bad command line\r\n"))
        return 2
    text, code = await _read_input_or_files(interp, files, streams)
    if text is None:
        await streams.stderr.write(interp.encode(f"FINDSTR: Cannot open {files[0]}\r\n"))
        return 1
    found = []
    for line in text.splitlines():
        haystack = line.lower() if ignore_case else line
        hit = any((p.lower() if ignore_case else p) in haystack for p in patterns)
        if hit != invert:
            found.append(line + "\r\n")
    await streams.stdout.write(interp.encode("".join(found)))
    return 0 if found else 1


async def _tool_cmd(interp: Interpreter, args: str, streams: Streams) -> int:
    match = re.match(r"^\s*((?:/[a-bd-jl-rt-z](?::\S*)?\s*)*)/([ck])\s?(.*)$", args, re.I | re.S)
    child = interp.child()
    if match:
        return await child.run_slash_c(match.group(3), streams)
    # cmd reading its commands from stdin: banner, then prompt + command for each line, as with a pipe for input.
    version = getattr(getattr(interp.io.device, "hardware", None), "os_version", "10.0.19045")
    await streams.stdout.write(interp.encode(
        f"Microsoft Windows [Version {version}]\r\n(c) Microsoft Corporation. All rights reserved.\r\n\r\n"))
    text = (await streams.read_stdin()).decode(interp.io.encoding, errors="replace")
    code = 0
    for line in text.splitlines():
        await streams.stdout.write(interp.encode(f"{child.directory}>{line}\r\n"))
        code = await child.run_line(line, streams)
        if child.exit_requested is not None:
            return child.exit_requested
        await streams.stdout.write(b"\r\n")
    await streams.stdout.write(interp.encode(f"{child.directory}>"))
    return code


async def _tool_powershell(interp: Interpreter, args: str, streams: Streams) -> int:
    powershell_program = load_powershell()
    assert powershell_program is not None  # cmd.py resolves powershell only when it loads
    program = powershell_program(split_argv(args))
    if _is_console(interp, streams):
        return await program(interp.io)
    # A stand-in for the process's ProcessIO: what it does not override is the process's own.
    return await program(t.cast(ProcessIO, _RedirectedIO(interp.io, streams)))


def _is_console(interp: Interpreter, streams: Streams) -> bool:
    return getattr(streams.stdout._write, "__self__", None) is interp.io \
        and getattr(streams.stderr._write, "__self__", None) is interp.io


class _RedirectedIO:
    """A ProcessIO whose output goes where cmd redirected it (a pipe, a file, nul)."""

    def __init__(self, io: ProcessIO, streams: Streams) -> None:
        self._io, self._streams = io, streams

    def __getattr__(self, name: str) -> t.Any:
        return getattr(self._io, name)

    async def write_stdout(self, data: str | bytes) -> None:
        await self._streams.stdout.write(self._io._encode(data))

    async def write_stderr(self, data: str | bytes) -> None:
        await self._streams.stderr.write(self._io._encode(data))

    async def read_stdin(self) -> bytes:
        return await self._streams.read_stdin()

    async def read_stdin_text(self) -> str:
        data = await self.read_stdin()
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        return data.decode(self._io.encoding, errors="replace")


TOOLS: dict[str, t.Callable[["Interpreter", str, "Streams"], t.Awaitable[int]]] = {
    "hostname": _tool_hostname,
    "whoami": _tool_whoami,
    "ping": _tool_ping,
    "timeout": _tool_timeout,
    "more": _tool_more,
    "findstr": _tool_findstr,
    "cmd": _tool_cmd,
    "powershell": _tool_powershell,
}
