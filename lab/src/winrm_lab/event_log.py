"""A device's event logs as Windows keeps them: each log numbers its records from 1 (EventRecordID), stamps them
with the time they were written (TimeCreated, by the device's clock) and holds at most its maximum size; a log in
the Windows default mode "Circular" ("overwrite events as needed") then drops its oldest records to make room, so
a full log keeps the newest events and its oldest record id rises above 1.

Sizes are an approximation of the .evtx format: each record costs a fixed header plus its strings in UTF-16.
Windows frees space a 64 KB chunk at a time; the lab frees record by record, which keeps the same rule (the oldest
go first, the record ids never restart) at a finer grain.
"""

from __future__ import annotations

import dataclasses
import datetime
import threading
import typing as t

# The default maximum size of the Application and System logs on Windows 10/11 and Server 2016+ (20 MB), and the
# smallest one Windows accepts (64 KB; wevtutil sl /ms:).
DEFAULT_MAXIMUM_SIZE_BYTES = 20 * 1024 * 1024
MINIMUM_MAXIMUM_SIZE_BYTES = 64 * 1024
# Header, system values and the record's trailer of an .evtx record, before its strings.
RECORD_OVERHEAD_BYTES = 128
LOG_MODES = ("Circular", "AutoBackup", "Retain")


@dataclasses.dataclass
class EventLogEntry:
    log: str  # "Application"
    source: str
    event_id: int
    entry_type: str  # Information | Warning | Error
    message: str
    time_generated: datetime.datetime
    record_id: int = 0

    @property
    def size_bytes(self) -> int:
        return RECORD_OVERHEAD_BYTES + 2 * (len(self.source) + len(self.message) + len(self.log))


@dataclasses.dataclass
class EventLog:
    """One log (Application, System)."""

    name: str
    maximum_size_bytes: int = DEFAULT_MAXIMUM_SIZE_BYTES
    log_mode: str = "Circular"
    records: list[EventLogEntry] = dataclasses.field(default_factory=list)
    next_record_id: int = 1
    size_bytes: int = 0

    def write(self, entry: EventLogEntry) -> bool:
        """Appends the entry, dropping the oldest records first when the log is full and circular. A full log in
        another mode refuses the write (Windows: "The event log file is full"): returns False."""
        needed = entry.size_bytes
        if self.size_bytes + needed > self.maximum_size_bytes and self.log_mode != "Circular":
            return False
        self._make_room(needed)
        entry.record_id = self.next_record_id
        self.next_record_id += 1
        self.records.append(entry)
        self.size_bytes += needed
        return True

    def _make_room(self, needed: int) -> None:
        dropped = 0
        while self.records[dropped:] and self.size_bytes + needed > self.maximum_size_bytes:
            self.size_bytes -= self.records[dropped].size_bytes
            dropped += 1
        if dropped:
            del self.records[:dropped]

    def resize(self, maximum_size_bytes: int) -> None:
        """Windows applies a smaller maximum when the log next needs room; the lab applies it at once."""
        self.maximum_size_bytes = maximum_size_bytes
        self._make_room(0)

    def clear(self) -> None:
        """wevtutil cl / Clear-EventLog: every record goes; the numbering starts again at 1."""
        self.records.clear()
        self.size_bytes = 0
        self.next_record_id = 1

    def information(self) -> dict[str, t.Any]:
        """What Get-WinEvent -ListLog and EventLogSession.GetLogInformation report."""
        oldest = self.records[0] if self.records else None
        return {
            "name": self.name,
            "log_mode": self.log_mode,
            "maximum_size_bytes": self.maximum_size_bytes,
            "file_size_bytes": self.size_bytes,
            "record_count": len(self.records),
            "oldest_record_id": None if oldest is None else oldest.record_id,
            "oldest_time_created": None if oldest is None else oldest.time_generated,
        }


class EventLogs:
    """Every log of one device, by name (case-insensitive, as Windows names them)."""

    def __init__(self) -> None:
        self._logs: dict[str, EventLog] = {}
        self.lock = threading.RLock()

    def log(self, name: str) -> EventLog:
        with self.lock:
            key = name.lower()
            if key not in self._logs:
                self._logs[key] = EventLog(name)
            return self._logs[key]

    def write(self, entry: EventLogEntry) -> bool:
        with self.lock:
            return self.log(entry.log).write(entry)

    def entries(self, log: str | None = None) -> list[EventLogEntry]:
        """Every record kept in one log (by record id), or in all of them (by time), oldest first."""
        with self.lock:
            if log is not None:
                found = self._logs.get(log.lower())
                return [] if found is None else list(found.records)
            every = [entry for each in self._logs.values() for entry in each.records]
        return sorted(every, key=lambda entry: entry.time_generated)

    def __iter__(self) -> t.Iterator[EventLogEntry]:
        return iter(self.entries())
