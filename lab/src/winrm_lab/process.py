"""A program running on a simulated device, as WinRS sees it: stdin in, stdout/stderr out, an exit code.

The WinRS layer (winrs.py) creates a `Process` for every Command and drives it with `send_stdin`, `receive` and
`signal`. The emulated program itself is an async function that gets a `ProcessIO` and returns its exit code; the
emulation package (emulation/) provides those functions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import typing as t

# NTSTATUS STATUS_CONTROL_C_EXIT, the exit code Windows gives a console process ended by ctrl_c or terminate.
EXIT_CODE_TERMINATED = 0xC000013A

Program = t.Callable[["ProcessIO"], t.Awaitable[int]]


def codepage_encoding(codepage: int) -> str:
    """Python codec for a Windows console codepage (WINRS_CODEPAGE)."""
    return {65001: "utf-8", 437: "cp437", 850: "cp850", 1252: "cp1252"}.get(codepage, f"cp{codepage}")


@dataclasses.dataclass
class ReceiveResult:
    stdout: bytes
    stderr: bytes
    done: bool
    exit_code: int | None


@dataclasses.dataclass(frozen=True)
class Identity:
    """Who a process runs as and in which Windows logon session. WinRS commands have none set: they run as the
    WinRM caller in session 0, which has no desktop; scheduled tasks set it (SYSTEM in session 0, or the
    interactive user in their own session)."""

    user: str  # DOMAIN\user, or NT AUTHORITY\SYSTEM
    session_id: int = 0


def windows_account_name(user: str) -> str:
    """WindowsIdentity.Name of a logon: DOMAIN\\name (COMPUTER\\name for a local account). A logon given as a user
    principal name (name@dns.domain) is named by the domain's NetBIOS name, the first label of its DNS name."""
    if "\\" not in user and "@" in user:
        name, _, realm = user.rpartition("@")
        return f"{realm.split('.')[0].upper()}\\{name}"
    return user


class ProcessIO:
    """What an emulated program sees: its arguments, environment, stdin and output streams."""

    def __init__(self, device: t.Any, command: str, arguments: list[str], environment: dict[str, str],
                 codepage: int, working_directory: str | None, identity: Identity | None = None) -> None:
        self.device = device
        self.identity = identity
        self.command = command
        self.arguments = arguments
        self.environment = environment
        self.codepage = codepage
        self.working_directory = working_directory
        self._stdin = bytearray()
        self._stdin_closed = asyncio.Event()
        # For programs that read stdin as it arrives (read_stdin_some): how much of _stdin they consumed, and a
        # signal that more arrived.
        self._stdin_consumed = 0
        self._stdin_arrived = asyncio.Event()
        self._output = asyncio.Condition()
        self._stdout = bytearray()
        self._stderr = bytearray()

    @property
    def encoding(self) -> str:
        return codepage_encoding(self.codepage)

    # stdin -----------------------------------------------------------------------------------------------------
    def _feed_stdin(self, data: bytes, end: bool) -> None:
        self._stdin.extend(data)
        if end:
            self._stdin_closed.set()
        self._stdin_arrived.set()

    async def read_stdin(self) -> bytes:
        """All of stdin, once the client has sent its last block (End="true")."""
        await self._stdin_closed.wait()
        return bytes(self._stdin)

    async def read_stdin_text(self) -> str:
        data = await self.read_stdin()
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        return data.decode(self.encoding, errors="replace")

    async def read_stdin_some(self, max_bytes: int) -> bytes:
        """Up to `max_bytes` of stdin as soon as there are any, as a read of a pipe returns; b"" once the client
        closed stdin and everything was read. For programs that stream their input; do not mix with read_stdin."""
        while self._stdin_consumed >= len(self._stdin):
            if self._stdin_closed.is_set():
                return b""
            self._stdin_arrived.clear()
            await self._stdin_arrived.wait()
        start = self._stdin_consumed
        with memoryview(self._stdin) as view:
            data = bytes(view[start:start + max_bytes])
        self._stdin_consumed += len(data)
        if self._stdin_consumed >= 1024 * 1024 and self._stdin_consumed * 2 >= len(self._stdin):
            del self._stdin[:self._stdin_consumed]  # what was read is not kept
            self._stdin_consumed = 0
        return data

    async def read_stdin_exactly(self, count: int) -> bytes:
        """Exactly `count` bytes of stdin; fewer only when stdin ends first."""
        parts = []
        while count > 0:
            data = await self.read_stdin_some(count)
            if not data:
                break
            parts.append(data)
            count -= len(data)
        return b"".join(parts)

    async def read_stdin_line(self, max_length: int) -> bytes | None:
        """One line of stdin without its line feed, read byte by byte as a script must when binary data follows;
        None when stdin ends first, ValueError past `max_length` bytes."""
        line = bytearray()
        while True:
            data = await self.read_stdin_some(1)
            if not data:
                return None
            if data == b"\n":
                return bytes(line)
            if len(line) >= max_length:
                raise ValueError("stdin line too long")
            line.extend(data)

    # output ----------------------------------------------------------------------------------------------------
    def _encode(self, data: str | bytes) -> bytes:
        if isinstance(data, bytes):
            return data
        return data.encode(self.encoding, errors="replace")

    async def write_stdout(self, data: str | bytes) -> None:
        async with self._output:
            self._stdout.extend(self._encode(data))
            self._output.notify_all()

    async def write_stderr(self, data: str | bytes) -> None:
        async with self._output:
            self._stderr.extend(self._encode(data))
            self._output.notify_all()

    async def wait_stdout_below(self, limit: int) -> None:
        """Waits while more than `limit` bytes of stdout are not yet received: a writer to a full pipe blocks until
        the reader (here WinRS, on the client's Receive) takes some. It waits forever if nobody receives again."""
        async with self._output:
            await self._output.wait_for(lambda: len(self._stdout) <= limit)


class Process:
    """One command's process on a device."""

    def __init__(self, program: Program, io: ProcessIO) -> None:
        self.io = io
        self._program = program
        self._task: asyncio.Task[int] | None = None
        self.exit_code: int | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> int:
        try:
            code = await self._program(self.io)
        except asyncio.CancelledError:
            code = EXIT_CODE_TERMINATED
        except Exception as exc:  # an emulation bug must look like a crashed process, not hang the client
            await self.io.write_stderr(f"{type(exc).__name__}: {exc}\r\n")
            code = 1
        async with self.io._output:
            self.exit_code = code
            self.io._output.notify_all()
        return code

    @property
    def done(self) -> bool:
        return self.exit_code is not None

    async def send_stdin(self, data: bytes, end: bool) -> None:
        self.io._feed_stdin(data, end)

    async def receive(self, timeout: float, max_bytes: int) -> ReceiveResult | None:
        """Waits up to `timeout` seconds for output or completion; None when nothing happened in time.

        At most `max_bytes` of output are returned per call (the rest stays for the next Receive), so a response
        always fits the client's MaxEnvelopeSize. `done` is reported only once all output has been handed out.
        """
        io = self.io

        def ready() -> bool:
            return bool(io._stdout or io._stderr or self.exit_code is not None)

        async with io._output:
            try:
                await asyncio.wait_for(io._output.wait_for(ready), timeout)
            except asyncio.TimeoutError:
                return None
            stdout = bytes(io._stdout[:max_bytes])
            del io._stdout[:len(stdout)]
            stderr = bytes(io._stderr[:max(0, max_bytes - len(stdout))])
            del io._stderr[:len(stderr)]
            io._output.notify_all()  # a writer waiting in wait_stdout_below may go on
            done = self.exit_code is not None and not io._stdout and not io._stderr
            return ReceiveResult(stdout, stderr, done, self.exit_code if done else None)

    def signal(self, code: str) -> None:
        """ctrl_c or terminate: ends the program as Windows ends a console process."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
