"""A device's wall clock: real time plus an offset the control surface can move forward."""

from __future__ import annotations

import datetime
import threading
import time
import typing as t


class DeviceClock:
    """UTC clock of one device. `advance()` moves it forward; it never goes back."""

    def __init__(self, offset_seconds: float = 0.0) -> None:
        self._offset = float(offset_seconds)
        self._lock = threading.Lock()
        # Called after every advance (from whichever thread advanced): the task scheduler re-reads its due times.
        self._listeners: list[t.Callable[[], None]] = []

    def add_listener(self, listener: t.Callable[[], None]) -> None:
        self._listeners.append(listener)

    @property
    def offset_seconds(self) -> float:
        return self._offset

    def timestamp(self) -> float:
        """Seconds since the epoch, as the device sees it."""
        return time.time() + self._offset

    def now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.timestamp(), tz=datetime.timezone.utc)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a device clock only moves forward")
        with self._lock:
            self._offset += seconds
        for listener in list(self._listeners):
            listener()
