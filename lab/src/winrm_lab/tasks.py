"""Each simulated device's Task Scheduler, and the one loop that runs every device's due tasks.

Windows' Task Scheduler starts a task's action when a trigger fires (once at a time, or when an event is written to
a log), on demand (`Start-ScheduledTask`), and ends a running instance on `Stop-ScheduledTask`. The lab models what
the collection's device scripts register (emulation/session.py): one-shot time triggers, event triggers, the
principal (SYSTEM in session 0, or a user with LogonType Interactive, which runs only while that user is logged on,
in that user's session), MultipleInstances (IgnoreNew or Queue), StartWhenAvailable and the execution time limit. The
action runs through the same program emulation as a WinRS command (`emulation.start_command`), as the identity the
principal gives, so a task runs exactly the script file it names, or fails as Windows would.

Time triggers follow the device's clock: moving a clock forward past a start boundary fires the task at once, as
Windows runs a missed start when StartWhenAvailable is set. One `TaskScheduler` serves the whole fleet from the lab's
event loop: it sleeps until the earliest start boundary of any device and wakes early when a task is registered or a
clock moves, so a thousand devices with an expiry task each cost one sleeping coroutine and a scan per wake-up. Event
triggers cost nothing until an event is written.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import threading
import typing as t

from .process import Identity

log = logging.getLogger(__name__)

# LastTaskResult values Windows reports (SCHED_S_* and HRESULTs).
SCHED_S_TASK_HAS_NOT_RUN = 0x00041303
SCHED_S_TASK_TERMINATED = 0x00041306
# "The operator or administrator has refused the request": a task that runs only while its user is logged on was
# started while that user was not.
ERROR_LOGON_REFUSED = 0x800710E0
ERROR_FILE_NOT_FOUND = 0x80070002

SYSTEM_ACCOUNTS = frozenset(("system", "nt authority\\system", "localsystem", "s-1-5-18"))
# Without StartWhenAvailable a start that came this late (a clock moved past it) counts as missed and is skipped.
MISSED_START_SECONDS = 60.0
# Task Scheduler's default ExecutionTimeLimit: three days.
DEFAULT_TIME_LIMIT_SECONDS = 72 * 3600.0


def _utc(moment: datetime.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass
class TimeTrigger:
    """Once at `start_boundary` (UTC, by the device's clock)."""

    start_boundary: datetime.datetime
    fired: bool = False

    def as_dict(self) -> dict[str, t.Any]:
        return {"type": "time", "start_boundary": _utc(self.start_boundary), "fired": self.fired}


@dataclasses.dataclass
class EventTrigger:
    """When an entry with `event_id` from `source` is written to `log`."""

    log: str
    source: str
    event_id: int

    @property
    def subscription(self) -> str:
        """The XPath query Windows keeps for the trigger (MSFT_TaskEventTrigger.Subscription)."""
        return (f'<QueryList><Query Id="0" Path="{self.log}"><Select Path="{self.log}">'
                f"*[System[Provider[@Name='{self.source}'] and EventID={self.event_id}]]</Select></Query></QueryList>")

    def matches(self, entry: t.Any) -> bool:
        return (entry.log.lower() == self.log.lower() and entry.source.lower() == self.source.lower()
                and entry.event_id == self.event_id)

    def as_dict(self) -> dict[str, t.Any]:
        return {"type": "event", "log": self.log, "source": self.source, "event_id": self.event_id,
                "subscription": self.subscription}


@dataclasses.dataclass
class ScheduledTask:
    """A registered task (root folder `\\`): its definition and what Get-ScheduledTaskInfo reports about it."""

    name: str
    execute: str
    arguments: str
    user_id: str
    logon_type: str = "ServiceAccount"  # ServiceAccount (SYSTEM) | Interactive (only while the user is logged on)
    run_level: str = "Highest"
    time_triggers: list[TimeTrigger] = dataclasses.field(default_factory=list)
    event_triggers: list[EventTrigger] = dataclasses.field(default_factory=list)
    multiple_instances: str = "IgnoreNew"  # IgnoreNew | Queue
    start_when_available: bool = False
    execution_time_limit_seconds: float = DEFAULT_TIME_LIMIT_SECONDS
    priority: int = 7
    last_run_time: datetime.datetime | None = None  # device time
    last_task_result: int = SCHED_S_TASK_HAS_NOT_RUN
    number_of_missed_runs: int = 0
    runs: int = 0
    last_error_output: str = ""  # the lab keeps the stderr of the last run, which Windows throws away
    instance: asyncio.Task[None] | None = dataclasses.field(default=None, repr=False, compare=False)
    queued: int = 0

    @property
    def running(self) -> bool:
        return self.instance is not None and not self.instance.done()

    @property
    def state(self) -> str:
        return "Running" if self.running else "Ready"

    def next_run_time(self) -> datetime.datetime | None:
        pending = [trigger.start_boundary for trigger in self.time_triggers if not trigger.fired]
        return min(pending) if pending else None

    def as_dict(self) -> dict[str, t.Any]:
        return {
            "name": self.name,
            "path": "\\",
            "state": self.state,
            "principal": {"user_id": self.user_id, "logon_type": self.logon_type, "run_level": self.run_level},
            "action": {"execute": self.execute, "arguments": self.arguments},
            "triggers": [*(trigger.as_dict() for trigger in self.event_triggers),
                         *(trigger.as_dict() for trigger in self.time_triggers)],
            "settings": {"multiple_instances": self.multiple_instances,
                         "start_when_available": self.start_when_available,
                         "execution_time_limit_seconds": self.execution_time_limit_seconds,
                         "priority": self.priority},
            "last_run_time": _utc(self.last_run_time),
            "last_task_result": self.last_task_result,
            "next_run_time": _utc(self.next_run_time()),
            "number_of_missed_runs": self.number_of_missed_runs,
            "runs": self.runs,
            "last_error_output": self.last_error_output,
        }


class DeviceTasks:
    """One device's Task Scheduler: registered tasks by name (case-insensitive). Without a `TaskScheduler`
    attached (a device no running lab serves) tasks register but never run, as with the service stopped."""

    def __init__(self) -> None:
        self.device: t.Any = None
        self.scheduler: TaskScheduler | None = None
        self._tasks: dict[str, ScheduledTask] = {}
        self._lock = threading.RLock()

    # Register-ScheduledTask / Unregister-ScheduledTask / Get-ScheduledTask -----------------------------------------
    def register(self, task: ScheduledTask) -> None:
        """Registers `task`, replacing a task of that name (-Force). A running instance of the old definition goes
        on; callers that mean to end it stop it first, as the device scripts do."""
        with self._lock:
            self._tasks[task.name.lower()] = task
        if self.scheduler is not None and task.time_triggers:
            self.scheduler.arm(self)

    def unregister(self, name: str) -> ScheduledTask | None:
        with self._lock:
            return self._tasks.pop(name.lower(), None)

    def get(self, name: str) -> ScheduledTask | None:
        with self._lock:
            return self._tasks.get(name.lower())

    def all(self) -> list[ScheduledTask]:
        with self._lock:
            return list(self._tasks.values())

    # Start-ScheduledTask / Stop-ScheduledTask ----------------------------------------------------------------------
    def start(self, name: str) -> None:
        task = self.get(name)
        if task is not None and self.scheduler is not None:
            self.scheduler.launch(self, task)

    def stop(self, name: str) -> None:
        task = self.get(name)
        if task is not None and self.scheduler is not None:
            self.scheduler.terminate(task)

    # What sets tasks off -------------------------------------------------------------------------------------------
    def event_written(self, entry: t.Any) -> None:
        if self.scheduler is None:
            return
        for task in self.all():
            if any(trigger.matches(entry) for trigger in task.event_triggers):
                self.scheduler.launch(self, task)

    def user_logged_off(self, user: str) -> None:
        """Logging off ends every process of that user's session, and with them their tasks' instances."""
        if self.scheduler is None:
            return
        for task in self.all():
            if task.logon_type == "Interactive" and task.user_id.lower() == user.lower():
                self.scheduler.terminate(task)

    def identity_for(self, task: ScheduledTask) -> Identity | None:
        """Who the task runs as and where; None when an Interactive task's user is not logged on."""
        if task.logon_type == "Interactive":
            user = self.device.interactive_user
            if user is None or user.name.lower() != task.user_id.lower():
                return None
            return Identity(user.name, user.session_id)
        user_id = "NT AUTHORITY\\SYSTEM" if task.user_id.lower() in SYSTEM_ACCOUNTS else task.user_id
        return Identity(user_id, 0)


class TaskScheduler:
    """Runs every device's due tasks from one asyncio loop (the lab's). `await start()`, `await stop()`."""

    def __init__(self, devices: t.Iterable[t.Any]) -> None:
        self.devices = list(devices)
        self._armed: set[DeviceTasks] = set()  # devices with a time trigger yet to fire; touched in the loop only
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._runner: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        for device in self.devices:
            device.tasks.device = device
            device.tasks.scheduler = self
            device.clock.add_listener(self.wake)
            if any(task.time_triggers for task in device.tasks.all()):
                self._armed.add(device.tasks)
        self._runner = self._loop.create_task(self._run())

    async def stop(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
            self._runner = None
        instances = []
        for device in self.devices:
            device.tasks.scheduler = None
            for task in device.tasks.all():
                if task.running:
                    task.instance.cancel()
                    instances.append(task.instance)
        await asyncio.gather(*instances, return_exceptions=True)
        self._loop = None

    # Called from anywhere --------------------------------------------------------------------------------------------
    def wake(self) -> None:
        """Re-read the due times (a clock moved). Safe from any thread."""
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def arm(self, tasks: DeviceTasks) -> None:
        self._in_loop(self._arm, tasks)

    def launch(self, tasks: DeviceTasks, task: ScheduledTask) -> None:
        self._in_loop(self._launch, tasks, task)

    def terminate(self, task: ScheduledTask) -> None:
        self._in_loop(self._terminate, task)

    def _in_loop(self, function: t.Callable[..., None], *args: t.Any) -> None:
        # Every change to what runs happens on the loop's thread, in order; other threads hand it over.
        if self._loop is None:
            return
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if current is self._loop:
            function(*args)
        else:
            self._loop.call_soon_threadsafe(function, *args)

    # The loop ----------------------------------------------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()
            try:
                delay = self._fire_due()
            except Exception:  # the scheduler must outlive a bug in one task
                log.exception("task scheduler: firing due tasks failed")
                delay = 1.0
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except asyncio.TimeoutError:
                pass

    def _fire_due(self) -> float | None:
        """Starts every task whose start boundary the device's clock has reached; returns the seconds until the next
        one (None: nothing is due ever)."""
        soonest: float | None = None
        for tasks in list(self._armed):
            now = tasks.device.clock.timestamp()
            waiting = False
            for task in tasks.all():
                for trigger in task.time_triggers:
                    if trigger.fired:
                        continue
                    due = trigger.start_boundary.timestamp()
                    if due > now:
                        waiting = True
                        soonest = due - now if soonest is None else min(soonest, due - now)
                        continue
                    trigger.fired = True
                    if now - due > MISSED_START_SECONDS and not task.start_when_available:
                        task.number_of_missed_runs += 1
                    else:
                        self._launch(tasks, task)
            if not waiting:
                self._armed.discard(tasks)
        return soonest

    def _arm(self, tasks: DeviceTasks) -> None:
        self._armed.add(tasks)
        if self._wake is not None:
            self._wake.set()

    def _launch(self, tasks: DeviceTasks, task: ScheduledTask) -> None:
        if tasks.get(task.name) is not task or self._loop is None:
            return  # unregistered or replaced meanwhile
        if task.running:
            if task.multiple_instances == "Queue":
                task.queued += 1
            return  # IgnoreNew: the running instance is enough
        task.instance = self._loop.create_task(self._execute(tasks, task))

    def _terminate(self, task: ScheduledTask) -> None:
        task.queued = 0
        if task.instance is not None and task.running:
            task.instance.cancel()

    async def _execute(self, tasks: DeviceTasks, task: ScheduledTask) -> None:
        from .emulation import start_command
        from .emulation.cmdline import split_argv
        from .winrs import default_environment

        device = tasks.device
        task.last_run_time = device.clock.now()
        identity = tasks.identity_for(task)
        if identity is None:
            task.last_task_result = ERROR_LOGON_REFUSED
            return
        task.runs += 1
        environment = default_environment(device, identity.user)
        if identity.user.lower() in SYSTEM_ACCOUNTS:
            environment.update(USERNAME=f"{device.name}$", USERPROFILE=r"C:\Windows\system32\config\systemprofile")
        try:
            process = start_command(device, task.execute, split_argv(task.arguments), skip_cmd_shell=True,
                                    codepage=65001, environment=environment,
                                    working_directory=r"C:\Windows\system32", identity=identity)
        except FileNotFoundError:
            task.last_task_result = ERROR_FILE_NOT_FOUND
            return
        try:
            await process.send_stdin(b"", True)
            code, errors = await asyncio.wait_for(_wait_for_exit(process), task.execution_time_limit_seconds)
            task.last_task_result = code & 0xFFFFFFFF
            task.last_error_output = errors[-2000:]
        except (asyncio.TimeoutError, asyncio.CancelledError) as stopped:
            # Stop-ScheduledTask, the time limit, or the user logging off: the process is ended.
            process.signal("terminate")
            task.last_task_result = SCHED_S_TASK_TERMINATED
            if isinstance(stopped, asyncio.CancelledError):
                raise
        finally:
            task.instance = None
        if task.queued > 0 and self._loop is not None:
            task.queued -= 1
            self._launch(tasks, task)


async def _wait_for_exit(process: t.Any) -> tuple[int, str]:
    errors = bytearray()
    while True:
        result = await process.receive(60.0, 1 << 20)
        if result is None:
            continue
        errors.extend(result.stderr)
        if result.done:
            return int(result.exit_code or 0), errors.decode("utf-8", errors="replace")
