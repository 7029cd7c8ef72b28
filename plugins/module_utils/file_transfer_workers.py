# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The two threads a transfer runs beside its own, so that the device and the network carry one part of the file
while the controller prepares or stores the next: ChunkProducer (to_device) reads, hashes and encodes the local file's
chunks; OutputReader (from_device) receives the device's output ahead of the transfer. Each hands over at most
WorkAhead.AHEAD items, so neither holds more than a couple of chunks in memory."""

from __future__ import annotations

import dataclasses
import os
import queue
import threading
import typing as t


@dataclasses.dataclass
class Chunk:
    size: int  # bytes of the file in it
    message: bytes  # the Send request, encoded
    last: bool


class WorkAhead(threading.Thread):
    """A second thread that works a couple of items ahead of the transfer's own: the device and the network carry one
    part of the file while the controller prepares or stores the next. `run` hands items (or the exception that
    stopped it) to `_put`; the transfer takes them in order with `_take`, and `close` stops the thread."""

    AHEAD = 2

    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._queue: queue.Queue[t.Any] = queue.Queue(maxsize=self.AHEAD)
        self._stopping = threading.Event()

    def _put(self, item: t.Any) -> None:
        while not self._stopping.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _take(self) -> t.Any:
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stopping.set()
        while self.is_alive():
            try:
                self._queue.get(timeout=0.1)
            except queue.Empty:
                pass
        self.join()


class ChunkProducer(WorkAhead):
    """to_device: reads, hashes and encodes the local file's chunks into Send requests ahead of the Sends."""

    def __init__(self, command: t.Any, path: str, start: int, size: int, chunk: int, digest: t.Any,
                 before: os.stat_result) -> None:
        super().__init__("file-transfer-reader")
        self._command = command
        self._path = path
        self._start = start
        self._size = size
        self._chunk = chunk
        self._digest = digest
        self._before = before
        self.source_changed = False

    def run(self) -> None:
        try:
            with open(self._path, "rb") as handle:
                handle.seek(self._start)
                position = self._start
                pending = f"{self._start}\n".encode("ascii")  # the device's answer first: where to start
                while not self._stopping.is_set():
                    data = handle.read(min(self._chunk, self._size - position))
                    self._digest.update(data)
                    position += len(data)
                    count = len(data)
                    last = position >= self._size or not data
                    if last:
                        after = os.fstat(handle.fileno())
                        self.source_changed = (position != self._size or (after.st_size, after.st_mtime_ns) !=
                                               (self._before.st_size, self._before.st_mtime_ns))
                        # A hash the device cannot match makes it discard what arrived: the file changed while it
                        # was read, so the bytes sent are no file that ever existed.
                        trailer = "0" * 64 if self.source_changed else self._digest.hexdigest()
                        data = data + f"{trailer}\n".encode("ascii")
                    self._put(Chunk(count, self._command.send_envelope(pending + data, last), last))
                    pending = b""
                    if last:
                        return
        except BaseException as error:  # handed to the sending thread, which raises it
            self._put(error)

    def next(self) -> Chunk:
        """The next chunk; an OSError from reading the local file is raised here, in the transfer's thread."""
        item: Chunk = self._take()
        return item


class OutputReader(WorkAhead):
    """from_device: Receives the command's output ahead of the transfer, which writes and hashes what came meanwhile,
    until the command ends. Nothing else goes to the device while it runs: an NTLM-sealed connection carries one
    message at a time, in order."""

    def __init__(self, command: t.Any) -> None:
        super().__init__("file-transfer-receiver")
        self._command = command
        self.ended = False  # the output taken last was the command's last (command.done may already be ahead)

    def run(self) -> None:
        try:
            while not self._stopping.is_set():
                output = self._command.receive()
                self._put(output)
                if output.done:
                    return
        except BaseException as error:  # a DeviceError, raised in the transfer's thread
            self._put(error)

    def receive(self) -> t.Any:
        """The next Receive's output, as command.receive() would have returned it."""
        output = self._take()
        self.ended = output.done
        return output
