"""The model of one simulated Windows device: identity, WinRM service settings, faults and local state.

Everything a device "is" lives here as plain data. The WS-Management server (server.py, winrs.py) reads the
service settings and faults; the command emulation (emulation/) reads and changes the local state (registry,
files, event log, interactive user); the control surface (control.py) reads and changes all of it.
"""

from __future__ import annotations

import dataclasses
import datetime
import pathlib
import threading
import typing as t

from .clock import DeviceClock
from .event_log import EventLogEntry, EventLogs
from .remote_desktop import RemoteDesktop, seed_registry
from .tasks import DeviceTasks

# Registry root under which the collection keeps its device-side state (policy, sessions, agent check-in).
COLLECTION_REGISTRY_KEY = r"HKLM:\SOFTWARE\RemoteSupport"
AGENT_REGISTRY_KEY = COLLECTION_REGISTRY_KEY + r"\Agent"
EVENT_LOG_SERVICES_KEY = r"HKLM:\SYSTEM\CurrentControlSet\Services\EventLog"


def event_source_key(source: str, log: str = "Application") -> str:
    """Where Windows registers an event source of a classic event log."""
    return f"{EVENT_LOG_SERVICES_KEY}\\{log}\\{source}"


@dataclasses.dataclass
class WinRMServiceConfig:
    """The subset of `winrm get winrm/config` the lab honours. Defaults are Windows' own defaults."""

    allow_basic: bool = False  # winrm/config/service/auth/Basic
    allow_unencrypted: bool = False  # winrm/config/service/AllowUnencrypted
    allow_certificate: bool = False  # winrm/config/service/auth/Certificate
    allow_credssp: bool = False  # winrm/config/service/auth/CredSSP (Enable-WSManCredSSP -Role Server)
    max_envelope_size_kb: int = 500  # winrm/config/MaxEnvelopeSizekb (500 since Windows 8 / 2012)
    max_shells_per_user: int = 30  # winrm/config/winrs/MaxShellsPerUser
    max_timeout_ms: int = 60000  # winrm/config/MaxTimeoutms
    idle_timeout_ms: int = 7200000  # winrm/config/winrs/IdleTimeout


@dataclasses.dataclass
class Faults:
    """Faults injected on a device's listeners. All off by default; the control surface sets and clears them."""

    latency_seconds: float = 0.0  # added before every HTTP response
    refuse_connections: bool = False  # listeners closed: TCP connection refused
    blackhole: bool = False  # TCP accepted, request read, never answered
    http_500: bool = False  # every request answered with a bare HTTP 500
    # Abort the TCP connection, once, when the request bodies received since the fault was set pass this many
    # bytes: a connection lost in the middle of a transfer. Cleared after it fires.
    drop_after_bytes: int | None = None
    # The same on the way back: once the response bodies sent since the fault was set pass this many bytes, the
    # response that crosses it is cut off after the first of its bytes that fit and the TCP connection is aborted,
    # once (a connection lost while the device answers, e.g. mid-download). Cleared after it fires.
    drop_after_response_bytes: int | None = None
    # Which certificate the HTTPS listener presents: valid | mismatch (wrong host name) | untrusted (not issued by
    # the lab CA) | expired.
    certificate: str = "valid"


@dataclasses.dataclass
class InteractiveUser:
    """The person logged on at the device's console, and how they answer a consent prompt."""

    name: str  # DOMAIN\user, as Windows reports it
    session_id: int = 1
    consent: str = "accept"  # accept | deny | ignore (never answers)
    answer_after_seconds: float = 1.0


@dataclasses.dataclass
class Hardware:
    """What WMI reports about the machine (Win32_ComputerSystem, Win32_BIOS, Win32_OperatingSystem, ...)."""

    manufacturer: str
    model: str
    serial_number: str
    chassis_types: list[int]  # Win32_SystemEnclosure.ChassisTypes
    os_caption: str  # Win32_OperatingSystem.Caption
    os_version: str  # Win32_OperatingSystem.Version
    os_product_type: int  # 1 workstation, 2 domain controller, 3 server
    domain: str = "WORKGROUP"


@dataclasses.dataclass
class HeartbeatTask:
    """The check-in task (RemoteSupport-Heartbeat) as install_agent.ps1 registers it: the agent's heartbeat.ps1, run
    as SYSTEM every `interval_seconds`. Whether it is enabled is `Agent.running`: a disabled task checks in no more."""

    execute: str
    arguments: str
    user_id: str = "SYSTEM"
    interval_seconds: int = 60
    registered_at: datetime.datetime | None = None  # device time


@dataclasses.dataclass
class Agent:
    """The collection's check-in heartbeat on the device. While running it checks in every `interval_seconds`."""

    running: bool = True
    interval_seconds: int = 60
    # Device time of the last check-in when the agent is stopped (None: never checked in).
    stopped_last_checkin: datetime.datetime | None = None
    # None until the collection's support_agent installs its task: until then the check-ins come from an agent
    # the lab's scenario put there (as a device imaged with an older agent would have).
    heartbeat_task: HeartbeatTask | None = None


@dataclasses.dataclass
class PromptShown:
    """A window a program showed on the interactive user's desktop (the consent prompt), and how it closed."""

    user: str  # DOMAIN\user whose desktop it appeared on
    title: str
    text: str
    timeout_seconds: int
    shown_at: datetime.datetime  # device time
    closed_at: datetime.datetime | None = None
    result: str | None = None  # yes | no | timed_out | closed (its process ended first); None while open


class Registry:
    """A registry-like store: case-insensitive key paths, each holding named values (str, int, bytes or list)."""

    def __init__(self) -> None:
        self._keys: dict[str, dict[str, t.Any]] = {}
        self._names: dict[str, str] = {}  # lower-case path -> path as first written
        self.lock = threading.RLock()

    @staticmethod
    def _norm(path: str) -> str:
        return path.rstrip("\\").lower()

    def key_exists(self, path: str) -> bool:
        return self._norm(path) in self._keys

    def create_key(self, path: str) -> None:
        with self.lock:
            norm = self._norm(path)
            if norm not in self._keys:
                self._keys[norm] = {}
                self._names[norm] = path.rstrip("\\")

    def get_values(self, path: str) -> dict[str, t.Any]:
        """All values of a key (a copy); empty when the key does not exist."""
        with self.lock:
            return dict(self._keys.get(self._norm(path), {}))

    def get(self, path: str, name: str, default: t.Any = None) -> t.Any:
        with self.lock:
            values = self._keys.get(self._norm(path), {})
            for key, value in values.items():
                if key.lower() == name.lower():
                    return value
            return default

    def set(self, path: str, name: str, value: t.Any) -> None:
        with self.lock:
            self.create_key(path)
            values = self._keys[self._norm(path)]
            for key in list(values):
                if key.lower() == name.lower():
                    del values[key]
            values[name] = value

    def delete_value(self, path: str, name: str) -> None:
        with self.lock:
            values = self._keys.get(self._norm(path), {})
            for key in list(values):
                if key.lower() == name.lower():
                    del values[key]

    def delete_key(self, path: str) -> None:
        """Deletes a key and its subkeys."""
        with self.lock:
            norm = self._norm(path)
            for key in [k for k in self._keys if k == norm or k.startswith(norm + "\\")]:
                del self._keys[key]
                del self._names[key]

    def subkeys(self, path: str) -> list[str]:
        """Names (last path element) of the direct subkeys of a key."""
        with self.lock:
            prefix = self._norm(path) + "\\"
            return sorted(
                self._names[k][len(prefix):]
                for k in self._keys
                if k.startswith(prefix) and "\\" not in k[len(prefix):]
            )

    def dump(self) -> dict[str, dict[str, t.Any]]:
        with self.lock:
            return {self._names[k]: dict(v) for k, v in sorted(self._keys.items())}


@dataclasses.dataclass
class Device:
    """One simulated Windows device."""

    name: str  # NetBIOS computer name, upper case as Windows shows it
    address: str  # loopback address its listeners bind to (127.x.y.z)
    http_port: int
    https_port: int
    hardware: Hardware
    # user name -> password accepted by this device (local or domain accounts); checked for Basic and NTLM.
    accounts: dict[str, str]
    # Host name written to the inventory. Normally the address; "<name>.invalid" for a device the controller cannot
    # resolve (the DNS failure case): the device exists but is unreachable by that name.
    inventory_host: str = ""
    service: WinRMServiceConfig = dataclasses.field(default_factory=WinRMServiceConfig)
    faults: Faults = dataclasses.field(default_factory=Faults)
    interactive_user: InteractiveUser | None = None
    agent: Agent = dataclasses.field(default_factory=Agent)
    clock: DeviceClock = dataclasses.field(default_factory=DeviceClock)
    registry: Registry = dataclasses.field(default_factory=Registry)
    # Each log keeps record ids, times and a maximum size, and overwrites its oldest events when full (event_log.py).
    event_log: EventLogs = dataclasses.field(default_factory=EventLogs)
    # The device's Task Scheduler (tasks.py) and the prompts shown on the interactive user's desktop.
    tasks: DeviceTasks = dataclasses.field(default_factory=DeviceTasks)
    prompts: list[PromptShown] = dataclasses.field(default_factory=list)
    # Remote Desktop beyond its registry values: firewall rule, Remote Desktop sessions, listener permissions,
    # open shadow connections (remote_desktop.py).
    remote_desktop: RemoteDesktop = dataclasses.field(default_factory=RemoteDesktop)
    # Directory standing for the device's drives: C:\Users\x is <file_root>/C/Users/x.
    file_root: pathlib.Path | None = None
    # Free space the device reports for its drives, in bytes.
    free_space_bytes: int = 50 * 1024**3
    # Files and folders whose ACL denies the WinRM account, as full Windows paths in lower case: opening, creating
    # or replacing anything at or under one fails with "Access to the path '...' is denied."
    # A registry key listed here (HKLM:\\... in lower case) refuses writes with "Requested registry access is not
    # allowed."
    denied_paths: set[str] = dataclasses.field(default_factory=set)
    # Files a program on the device holds open without sharing (a mail store, a database), as full Windows paths in
    # lower case: opening one fails with "The process cannot access the file '...' because it is being used by
    # another process."
    locked_files: set[str] = dataclasses.field(default_factory=set)
    # When set, WMI on this device is broken: every Get-CimInstance fails with this message (what Windows gives
    # for a damaged WMI repository, e.g. "Provider load failure "), so device scripts that read WMI fail.
    wmi_error: str | None = None
    # Windows' own time per command (windows_time.WindowsTime), or None: the lab answers at once.
    windows_time: t.Any = None
    # Free-form labels the scenario attached (what this device is meant to show) and the expected results.
    behaviours: list[str] = dataclasses.field(default_factory=list)
    expected: dict[str, t.Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.inventory_host:
            self.inventory_host = self.address
        self.lock = threading.RLock()
        self.tasks.device = self
        seed_registry(self.registry)

    # The agent's heartbeat is derived rather than driven by a timer per device, so 1,000 devices cost nothing
    # while idle: a running agent last checked in at the most recent multiple of its interval.
    def last_checkin(self) -> datetime.datetime | None:
        if not self.agent.running:
            return self.agent.stopped_last_checkin
        now = self.clock.timestamp()
        last = now - (now % self.agent.interval_seconds)
        return datetime.datetime.fromtimestamp(last, tz=datetime.timezone.utc)

    def sync_agent_registry(self) -> None:
        """Writes the agent's last check-in where the device scripts read it (as the heartbeat task would)."""
        last = self.last_checkin()
        if last is None:
            self.registry.delete_value(AGENT_REGISTRY_KEY, "LastCheckIn")
        else:
            self.registry.set(AGENT_REGISTRY_KEY, "LastCheckIn", last.strftime("%Y-%m-%dT%H:%M:%SZ"))

    def write_event(self, source: str, event_id: int, entry_type: str, message: str, log: str = "Application") -> None:
        with self.lock:
            # Every device script registers its source (New-EventLog) before it writes; Windows keeps the
            # registration under this key, where [EventLog]::SourceExists looks and Remove-EventLog deletes.
            self.registry.create_key(event_source_key(source, log))
            entry = EventLogEntry(log, source, event_id, entry_type, message, self.clock.now())
            if not self.event_log.write(entry):
                return  # a full log that does not overwrite keeps nothing, and nothing is triggered
        self.tasks.event_written(entry)  # event-triggered scheduled tasks

    def windows_path(self, path: str) -> pathlib.Path:
        """Maps a Windows path (C:\\x\\y) to where the lab keeps it on disk. Raises ValueError for other forms."""
        if self.file_root is None:
            raise ValueError("this device has no file system")
        if len(path) < 3 or path[1] != ":" or path[2] not in "\\/":
            raise ValueError(f"not an absolute Windows path: {path}")
        parts = [p for p in path[3:].replace("/", "\\").split("\\") if p]
        if any(p in (".", "..") for p in parts):
            raise ValueError(f"path must not contain . or ..: {path}")
        return self.file_root.joinpath(path[0].upper(), *parts)
