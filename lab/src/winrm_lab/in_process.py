"""A lab device driven in process: the same device model, program emulation and contract checks as a running lab,
without a listener, HTTP or WinRM.

`device(behaviour=...)` builds one device of a scenario (its hardware, the logged-on user, the agent, registry, event
log and drive C:) on a clock that stands still until it is advanced. `InProcessDevice(device)` is a client of it in
the shape WinRM clients have: `shell()` gives an open shell whose `run(script, input)` starts powershell.exe with
the script's own command line and stdin, exactly as a WinRS Command would, and whose `start_stream(script, input)`
starts the streaming bootstrap and is then fed with `send` and read with `receive`. Everything past the command line
is the lab's: the bootstrap is recognised, the script is identified by its header, its input and output are checked
against its `*.contract.json` (emulation/powershell.py), and the script's scheduled tasks run on the device's Task
Scheduler (tasks.py), all on one event loop whose time is the device's clock. So a test moves time with `advance`
and sees every task that time sets off run before `advance` returns: consent prompts answered, sessions expired.

A script is any object with `command_arguments()` (powershell.exe's arguments), `stdin_payload(input)` (the bytes
sent on stdin) and `parse_result(stdout, stderr, exit_code)` (the caller's reading of the output; it raises what the
caller raises for a failed script), and, for `start_stream`, `text`: what a collection's device-script object
carries. The lab imports nothing of the collection.

A fault the lab injects on a listener has its in-process counterpart where it makes sense: `faults.refuse_connections`
refuses the shell (ConnectionRefusedError), `faults.blackhole` never answers it (TimeoutError),
`faults.drop_after_bytes` and `faults.drop_after_response_bytes` drop the connection once that many bytes of input
were sent or of output received (ConnectionLost, a ConnectionResetError; a stream's header is not counted): the OS
errors a WinRM client sees. Turning them into the caller's own errors is the caller's
business (`InProcessDevice(error=...)`).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import datetime
import json
import pathlib
import tempfile
import typing as t

from . import drives
from .clock import DeviceClock
from .device import Device
from .emulation import start_command
from .emulation.powershell import device_scripts_dir
from .process import Identity, Process, ReceiveResult, windows_account_name
from .scenarios import BEHAVIOURS, LAB_USER, DeviceSetup, build_fleet
from .tasks import TaskScheduler
from .winrs import RECEIVE_ENVELOPE_OVERHEAD, default_environment

# A moment every in-process device starts at unless told otherwise (a Tuesday morning, in UTC).
DEFAULT_START = datetime.datetime(2026, 11, 24, 10, 0, 0, tzinfo=datetime.timezone.utc)
# What a Receive waits for output before the device answers that there is none yet (pywinrm's default
# operation timeout): an empty Receive costs the device this much time.
OPERATION_TIMEOUT_SECONDS = 20.0
# What one Receive may carry without an envelope size asked for: a 500 KiB envelope's worth of base64.
DEFAULT_ENVELOPE_BYTES = 500 * 1024
# How long one script command may wait on the device's time before the lab calls it stuck (get_support_session's
# wait is at most 600 s).
MAX_COMMAND_SECONDS = 900.0


class ConnectionLost(ConnectionResetError):
    """The connection to the device was lost in the middle of an exchange (faults.drop_after_bytes)."""


class StillClock(DeviceClock):
    """A device clock that stands still until advanced: what an in-process test reads is what it set."""

    def __init__(self, start: datetime.datetime, offset_seconds: float = 0.0) -> None:
        super().__init__(offset_seconds)
        self._start = start.timestamp()

    def timestamp(self) -> float:
        return self._start + self.offset_seconds


def device(behaviour: str = "active", *, seed: int | str = 1, start: datetime.datetime = DEFAULT_START,
           work_dir: pathlib.Path | str | None = None) -> Device:
    """The first device of a `healthy` fleet for `seed`, with `behaviour` (a name from scenarios.BEHAVIOURS) applied
    as the `mixed` scenario applies it, its clock at `start`, and its drive C: (the folders and junctions every
    Windows has, the user's profile) under `work_dir` (a new temporary directory when None)."""
    root = pathlib.Path(work_dir) if work_dir is not None else pathlib.Path(tempfile.mkdtemp(prefix="winrm-lab-"))
    fleet = build_fleet(1, "healthy", seed, work_dir=root)
    lab_device = fleet.devices[0]
    lab_device.clock = StillClock(start)
    chosen = BEHAVIOURS[behaviour]
    setup = DeviceSetup(scheme="https", username=LAB_USER, password=fleet.accounts[LAB_USER],
                        inventory_host=lab_device.address)
    chosen.apply(lab_device, setup)
    if not isinstance(lab_device.clock, StillClock):  # the behaviour set a clock of its own (clock_behind)
        lab_device.clock = StillClock(start, lab_device.clock.offset_seconds)
    lab_device.sync_agent_registry()
    lab_device.behaviours = [chosen.name]
    lab_device.expected = {"status": chosen.status, "reason": chosen.reason}
    assert lab_device.file_root is not None
    profiles = [] if lab_device.interactive_user is None else [lab_device.interactive_user.name.split("\\")[-1]]
    drives.prepare_drive_c(lab_device.file_root, profiles)
    return lab_device


class _DeviceTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose time is the device's clock: a program that sleeps 30 s wakes when the clock moved 30 s."""

    def __init__(self, clock: DeviceClock) -> None:
        super().__init__()
        self._device_clock = clock
        # asyncio fires a timer once `now + resolution` passes it; at epoch seconds (about 1.8e9) a float cannot hold
        # now + 1 ns, so the resolution must be coarser than the clock's representable steps.
        self._clock_resolution = 1e-3

    def time(self) -> float:
        return self._device_clock.timestamp()

    def next_due(self) -> float | None:
        """Seconds of device time until the next timer is due; None when none is set."""
        scheduled = getattr(self, "_scheduled")
        due = [handle.when() for handle in scheduled if not handle.cancelled()]
        return max(0.0, min(due) - self.time()) + self._clock_resolution if due else None

    def idle(self) -> bool:
        """Nothing can run at this moment of device time: no callback is ready and no timer is due."""
        now = self.time()
        ready = getattr(self, "_ready")
        scheduled = getattr(self, "_scheduled")
        due = now + self._clock_resolution
        return not ready and not any(not handle.cancelled() and handle.when() < due for handle in scheduled)


class _InlineExecutor(concurrent.futures.ThreadPoolExecutor):
    """Runs what a program hands to a thread (asyncio.to_thread: file writes, hashing) at once, in the loop's thread:
    a settled device has no work in flight that the loop cannot see."""

    def submit(self, fn: t.Callable[..., t.Any], /, *args: t.Any, **kwargs: t.Any) -> concurrent.futures.Future[t.Any]:
        future: concurrent.futures.Future[t.Any] = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:  # handed to the awaiting program, as a thread's exception is
            future.set_exception(error)
        return future


class InProcessDevice:
    """A client of one lab device, run in the caller's thread. Use as a context manager (or call `close`)."""

    def __init__(self, lab_device: Device, *, caller: str = LAB_USER,
                 error: t.Callable[[OSError], BaseException] | None = None) -> None:
        self.device = lab_device
        self.caller = caller
        self.calls: list[tuple[str, t.Any]] = []  # (script name, input) of every script run, in order
        self._error = error or (lambda exc: exc)
        self._before: dict[str, t.Callable[[], None]] = {}
        self._counted: dict[str, int] = {}  # bytes since each drop fault was set (input or output)
        self.streams: list[StreamingCommand] = []  # every command start_stream started, in order
        self._loop = _DeviceTimeLoop(lab_device.clock)
        self._loop.set_default_executor(_InlineExecutor(max_workers=1))
        self._scheduler = TaskScheduler([lab_device])
        self._loop.run_until_complete(self._scheduler.start())
        self.settle()

    # Time ----------------------------------------------------------------------------------------------------------
    def now(self) -> datetime.datetime:
        return self.device.clock.now()

    def monotonic(self) -> float:
        return self.device.clock.timestamp()

    def advance(self, seconds: float) -> None:
        """Moves the device's clock forward and runs everything that time sets off (a `sleep` for the caller)."""
        self.device.clock.advance(seconds)
        self.settle()

    sleep = advance

    def events(self, source: str | None = None, log: str = "Application") -> list[int]:
        """The ids of the events written to `log` (by `source` when given), oldest first."""
        return [entry.event_id for entry in self.device.event_log.entries(log)
                if source is None or entry.source.lower() == source.lower()]

    def settle(self) -> None:
        """Runs the device's programs and tasks until none can go on at the current device time."""
        loop = self._loop
        while True:
            loop.run_until_complete(asyncio.sleep(0))
            if loop.idle():
                return

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.run_until_complete(self._scheduler.stop())
        for task in asyncio.all_tasks(self._loop):
            task.cancel()
        self._loop.run_until_complete(asyncio.sleep(0))
        self._loop.close()

    def __enter__(self) -> InProcessDevice:
        return self

    def __exit__(self, *exc: t.Any) -> None:
        self.close()

    # The client ----------------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def shell(self) -> t.Iterator[InProcessDevice]:
        """An open shell (the client is its own shell: nothing is kept per shell in process)."""
        faults = self.device.faults
        if faults.refuse_connections:
            raise self._error(ConnectionRefusedError(111, f"{self.device.address}: connection refused"))
        if faults.blackhole:  # accepted and never answered: the client's read timeout ends the wait
            raise self._error(TimeoutError(f"{self.device.address} did not answer"))
        yield self

    def before(self, script_name: str, action: t.Callable[[], None]) -> None:
        """Runs `action` once, just before the next command that runs `script_name`: something that happens on the
        device between a caller's read and its write (another specialist's change, a user's logoff)."""
        self._before[script_name] = action

    def after(self, seconds: float, action: t.Callable[[], None]) -> None:
        """Runs `action` once `seconds` of device time have passed: something that happens on the device while a
        command waits there (another specialist's change in the middle of a wait)."""
        self._loop.call_later(seconds, action)

    def run_script(self, script: t.Any, script_input: t.Mapping[str, t.Any] | None = None) -> t.Any:
        with self.shell() as shell:
            return shell.run(script, script_input)

    def run(self, script: t.Any, script_input: t.Mapping[str, t.Any] | None = None) -> t.Any:
        """Runs a device script as one command and returns what `script.parse_result` makes of its output. A script
        that waits on the device (get_support_session's `wait`) moves the device's clock on as far as it waits."""
        script_input = dict(script_input or {})
        action = self._before.pop(_name(script), None)
        if action is not None:
            action()
        self.calls.append((_name(script), script_input))
        payload = script.stdin_payload(script_input)
        self._count_input(len(payload))
        process = self._start(script.command_arguments())
        self._loop.run_until_complete(process.send_stdin(payload, True))
        self.settle()
        waited = 0.0
        while not process.done:
            # The program waits on the device (a script that sleeps between reads): the command takes that long,
            # so the device's time moves on to its next timer, and whatever else is due then runs too.
            step = self._loop.next_due()
            if step is None or waited + step > MAX_COMMAND_SECONDS:
                raise RuntimeError(f"the emulation of {_name(script)} did not finish by device time "
                                   f"{self.now():%Y-%m-%dT%H:%M:%SZ}: it waits for something that does not come")
            self.advance(step)
            waited += step
        stdout, stderr = bytearray(), bytearray()
        while True:
            result = self._loop.run_until_complete(process.receive(1.0, _receive_bytes(None)))
            assert result is not None  # the process has ended: its output is there
            self._count_output(len(result.stdout) + len(result.stderr))
            stdout += result.stdout
            stderr += result.stderr
            if result.done:
                return script.parse_result(bytes(stdout), bytes(stderr), int(result.exit_code or 0))

    def start_stream(self, script: t.Any, script_input: t.Mapping[str, t.Any],
                     envelope: int | None = None) -> StreamingCommand:
        """Starts `script` through the streaming bootstrap and sends its header (the length of the JSON document,
        a line feed, the document), as stream_bootstrap.ps1 reads it."""
        action = self._before.pop(_name(script), None)
        if action is not None:
            action()
        self.calls.append((_name(script), dict(script_input)))
        directory = device_scripts_dir()
        if directory is None:
            raise RuntimeError("the device scripts are not found (set WINRM_LAB_DEVICE_SCRIPTS)")
        bootstrap = (directory / "stream_bootstrap.ps1").read_text(encoding="utf-8")
        encoded = base64.b64encode(bootstrap.encode("utf-16-le")).decode("ascii")
        process = self._start(["-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass",
                               "-EncodedCommand", encoded])
        document = json.dumps({"script": script.text, "input": dict(script_input)},
                              separators=(",", ":")).encode("utf-8")
        self._loop.run_until_complete(process.send_stdin(f"{len(document)}\n".encode("ascii") + document, False))
        self.settle()
        command = StreamingCommand(self, process, envelope)
        self.streams.append(command)
        return command

    def _start(self, arguments: list[str]) -> Process:
        async def start() -> Process:
            return start_command(self.device, "powershell.exe", arguments, skip_cmd_shell=True, codepage=65001,
                                 environment=default_environment(self.device, self.caller), working_directory=None,
                                 identity=Identity(windows_account_name(self.caller)))
        return self._loop.run_until_complete(start())

    def _count_input(self, size: int) -> None:
        self._count("drop_after_bytes", size)

    def _count_output(self, size: int) -> None:
        self._count("drop_after_response_bytes", size)  # the output of the Receive that crosses it is lost

    def _count(self, fault: str, size: int) -> None:
        """Counts bytes toward a drop fault of the device's (drop_after_bytes, drop_after_response_bytes) since it
        was set, and drops the connection once they pass it, as a listener does."""
        limit = getattr(self.device.faults, fault)
        counted = self._counted.get(fault, 0) + size if limit is not None else 0
        self._counted[fault] = counted
        if limit is not None and counted > limit:
            setattr(self.device.faults, fault, None)  # it fires once
            self._counted[fault] = 0
            raise self._error(ConnectionLost(104, f"the connection to {self.device.address} was lost"))


class StreamingCommand:
    """A command started by `start_stream`: `send` is one Send to its stdin, `receive` one Receive of its output."""

    def __init__(self, client: InProcessDevice, process: Process, envelope: int | None) -> None:
        self._client = client
        self.process = process
        self.envelope = envelope
        self.sends: list[int] = []  # the data size of every Send after the header
        self.done = False
        self.exit_code: int | None = None

    def send(self, data: bytes, end: bool = False) -> None:
        self.send_message(self.send_envelope(data, end))

    def send_envelope(self, data: bytes, end: bool = False) -> tuple[bytes, bool]:
        """The Send request for `data` (in process: the data and whether it ends stdin)."""
        return bytes(data), end

    def send_message(self, message: tuple[bytes, bool]) -> None:
        data, end = message
        self.sends.append(len(data))
        self._client._count_input(len(data))
        if self.process.done:
            return  # an ended program's stdin is read by nobody
        self._client._loop.run_until_complete(self.process.send_stdin(data, end))
        self._client.settle()

    def receive(self) -> ReceiveResult:
        """What the command wrote since the last Receive; when it wrote nothing, the device held the Receive for
        the operation timeout (its clock moves on) and answers with nothing."""
        client = self._client
        client.settle()
        io = self.process.io
        if not (getattr(io, "_stdout") or getattr(io, "_stderr") or self.process.done):
            client.advance(OPERATION_TIMEOUT_SECONDS)
            if not (getattr(io, "_stdout") or getattr(io, "_stderr") or self.process.done):
                return ReceiveResult(b"", b"", False, None)
        result = client._loop.run_until_complete(self.process.receive(1.0, _receive_bytes(self.envelope)))
        assert result is not None
        client.settle()  # a writer waiting for room in the pipe goes on
        client._count_output(len(result.stdout) + len(result.stderr))
        if result.done:
            self.done, self.exit_code = True, result.exit_code
        return result

    def terminate(self) -> None:
        """Ends the command (Signal terminate) if it still runs."""
        if not self.process.done:
            self.process.signal("terminate")
            self._client.settle()
        self.done = True


def _receive_bytes(envelope: int | None) -> int:
    """Output one Receive carries in an envelope of that size (base64 in whole 3-byte groups), as WinRS hands out."""
    return max(3, ((envelope or DEFAULT_ENVELOPE_BYTES) - RECEIVE_ENVELOPE_OVERHEAD) * 3 // 4 // 3 * 3)


def _name(script: t.Any) -> str:
    return str(getattr(script, "name", None) or "(script)")
