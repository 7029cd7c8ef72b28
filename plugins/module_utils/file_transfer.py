# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The core of the file_transfer module: move one file between the controller and a device, inside an authorized
support session, verified end to end, resumable and atomic. Plain Python: the shell, the clocks and the progress
report are passed in.

One WinRM shell per task, and in it:

1. get_device_facts and get_support_session: is the device active, and may the session do `file_transfer` now
   (session_state.decide, the one place that answers it)?
2. file_transfer_prepare: what the transfer would meet on the device (path, file, policy, free space, a resumable
   temporary file, MaxEnvelopeSizekb). Check mode stops here.
3. One long-running command for the data: file_transfer_send (to_device) reads the file from stdin, or
   file_transfer_receive (from_device) writes it to stdout in frames, a chunk sized from the device's envelope per
   WinRM round trip. Neither side ever holds more than a chunk or two in memory.

Both ends compute SHA-256 as the bytes pass; the destination is written to a temporary name beside it and renamed
into place only once the hashes agree. A run that loses its connection leaves that temporary file, and the next run
of the same transfer (same direction, device path, controller and local path) resumes after the bytes both sides
still agree on. On the controller the destination folder may be shared with other users: the temporary file is
created exclusively under a name nobody can guess, never through a link, and an earlier run's file is taken up again
only when it is a regular file of this user's that nobody else may read (see `own_partial`). Between chunks the
device checks the session itself, so deauthorization or expiry stops a transfer mid-way: the temporary file is
deleted and the device writes the audit entry.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import ntpath
import os
import queue
import re
import secrets
import shutil
import stat
import threading
import typing as t

from ansible_collections.remote_support.windows.plugins.module_utils import device_info, device_script
from ansible_collections.remote_support.windows.plugins.module_utils import session_state as sm
from ansible_collections.remote_support.windows.plugins.module_utils import session_gate
from ansible_collections.remote_support.windows.plugins.module_utils.device_info import format_utc
from ansible_collections.remote_support.windows.plugins.module_utils.errors import DeviceError
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_streaming import (
    envelope_bytes,
    send_chunk_bytes,
)

ARGUMENT_SPEC: dict[str, dict[str, t.Any]] = {
    "direction": {"type": "str", "required": True, "choices": ["to_device", "from_device"]},
    "src": {"type": "str", "required": True},
    "dest": {"type": "str", "required": True},
    "force": {"type": "bool", "default": True},
    "requested_by": {"type": "str"},
    "idle_after": {"type": "int", "default": device_info.DEFAULT_IDLE_AFTER},
}

# What the product shows as a transfer's result.
SENT = "Successfully sent"
RECEIVED = "Successfully received"
FAILED = "Sending failed"
NOT_SENT = "Not sent"
CONNECTION_LOST = "Connection to workstation lost"

# Room in each Send for the start line (before the first chunk) and the SHA-256 line (after the last), so that every
# Send carries exactly one chunk of the file.
LINE_ROOM = 96
# How far the controller may run ahead of the device's acknowledgements: enough to keep the link busy while the
# device writes and hashes, little enough that a stopped transfer is noticed soon after.
WINDOW_BYTES = 16 * 1024 * 1024
# Local reads while hashing.
READ_BYTES = 1024 * 1024
# Progress lines at -v: every tenth of the file, and at least this often.
PROGRESS_SECONDS = 5.0
# A device that says nothing for this long (each Receive it holds for its OperationTimeout and answers empty) is
# taken for hung. Generous: before "ready" the device hashes what an interrupted run left, which on a slow disk and
# a large file takes a while.
STALL_SECONDS = 600.0

# What to do about each way a transfer can fail (the device's codes, file_transfer_*.contract.json).
HINTS = {
    "invalid_path": "Give an absolute Windows path such as C:\\Users\\name\\file.txt.",
    "name_too_long": "Windows PowerShell 5.1 cannot use paths of 260 characters or more; choose a shorter path.",
    "path_not_allowed": "Choose a folder the device's policy allows (support_policy file_transfer_allowed_roots).",
    "is_directory": "Folders are not transferred, only files: transfer each file, or archive the folder first.",
    "not_found": "Check the path.",
    "too_large": "Split the file, or raise the device's policy (support_policy file_transfer_max_size).",
    "disk_full": "Free space on the destination drive, or choose another.",
    "in_use": "Close the program that holds the file open and run the task again.",
    "access_denied": "Check the file's permissions and read-only attribute for the account the transfer runs as.",
    "exists": "A file appeared at the destination meanwhile; run the task again.",
    "interrupted": "Run the task again: it resumes after the last verified byte.",
    "hash_mismatch": "Nothing was written; run the task again.",
    "source_changed": "The file changed while it was read; run the task again once it is no longer being written.",
    "alternate_stream": "Give the file's own path, without a ':stream' part.",
    "reserved_name": "Choose another file or folder name.",
    "reparse_point": "Give the real folder's own path, inside the folders the device's policy allows.",
    "path_changed": "Check that folder on the device (someone moved it or put a link in its place) and run the task "
                    "again.",
}


# Control characters (NUL included) have no place in a path or a requester's name: refused before anything starts.
CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")
# The controller's temporary files: PARTIAL_PREFIX + transfer id + "-" + a random part + ".partial".
PARTIAL_PREFIX = ".~rs-"


def option_error(options: t.Mapping[str, t.Any]) -> str | None:
    """What is wrong with an option that carries a control character, or None."""
    for name in sorted(options):
        value = options[name]
        found = CONTROL_CHARACTER.search(value) if isinstance(value, str) else None
        if found is not None:
            what = "a NUL byte" if found.group() == "\x00" else f"the control character {found.group()!r}"
            return (f"The option {name} contains {what} at position {found.start()}: no path or name may carry one. "
                    "Nothing was transferred; remove it and run the task again.")
    return None


def own_partial(folder: str, identity: str) -> str | None:
    """The temporary file an interrupted run of this transfer left in `folder`, if it is one this user can trust: a
    regular file (not a link), owned by this user, readable by nobody else, with no other name (hard link). Anything
    else with a matching name was not made by this collection and is left alone."""
    prefix = f"{PARTIAL_PREFIX}{identity}-"
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return None
    for name in names:
        if name.startswith(prefix) and name.endswith(".partial"):
            path = os.path.join(folder, name)
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if _trusted(info):
                return path
    return None


def _trusted(info: os.stat_result) -> bool:
    return (stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid() and info.st_nlink == 1
            and not info.st_mode & 0o077)


def open_partial(folder: str, identity: str, existing: str | None) -> tuple[str, t.BinaryIO]:
    """Opens `existing` (own_partial's answer) again without following a link and checks it is still that file, or
    creates a new temporary file exclusively (O_EXCL | O_NOFOLLOW, mode 0600, an unpredictable name)."""
    flags = os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    if existing is not None:
        try:
            descriptor = os.open(existing, flags)
        except OSError:
            descriptor = None
        if descriptor is not None:
            if _trusted(os.fstat(descriptor)):
                return existing, os.fdopen(descriptor, "r+b")
            os.close(descriptor)
    path = os.path.join(folder, f"{PARTIAL_PREFIX}{identity}-{secrets.token_hex(16)}.partial")
    return path, os.fdopen(os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600), "r+b")


def new_file_mode() -> int:
    """The mode a file created now gets (0666 less the umask), read without changing the umask where Linux says it."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


class TransferFailed(Exception):
    """The transfer cannot go on; `code` names why (the device's codes, or connection_lost / session_*)."""

    def __init__(self, code: str, message: str, session: dict[str, t.Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.session = session


# ---------------------------------------------------------------------------------------------------------------------
# Small pieces


def transfer_id(direction: str, device_path: str, controller_host: str, local_path: str) -> str:
    """Names one transfer on the device (its registration and temporary file): the same direction, device path,
    controller and local path give the same id, so a rerun finds what an interrupted run left."""
    key = "\n".join((direction, device_path.replace("/", "\\").lower(), controller_host.lower(), local_path))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def file_sha256(path: str, limit: int | None = None) -> hashlib._Hash:
    """The SHA-256 of a local file's first `limit` bytes (all of it when None), read a block at a time."""
    with open(path, "rb") as handle:
        return _sha256_of(handle, limit)


def _sha256_of(handle: t.BinaryIO, limit: int | None = None) -> hashlib._Hash:
    digest = hashlib.sha256()
    left = limit
    handle.seek(0)
    while left is None or left > 0:
        block = handle.read(READ_BYTES if left is None else min(READ_BYTES, left))
        if not block:
            break
        digest.update(block)
        if left is not None:
            left -= len(block)
    return digest


def chunk_for(envelope: int) -> int:
    """Bytes of the file in each Send (and between two session checks on the device)."""
    return send_chunk_bytes(envelope) - LINE_ROOM


class LineReader:
    """file_transfer_send's stdout: JSON lines, which may arrive split across Receives."""

    def __init__(self) -> None:
        self._pending = bytearray()

    def feed(self, data: bytes) -> list[dict[str, t.Any]]:
        self._pending.extend(data)
        messages = []
        while True:
            end = self._pending.find(b"\n")
            if end < 0:
                return messages
            line = bytes(self._pending[:end]).strip()
            del self._pending[:end + 1]
            if line:
                messages.append(_message(line))


class FrameReader:
    """file_transfer_receive's stdout: a JSON line (ready, or the result alone), then frames (a 4-byte big-endian
    length and that many bytes of the file; length 0 ends them), then the result line. File bytes go to `on_data` as
    they arrive, never gathered."""

    def __init__(self, on_data: t.Callable[[memoryview], None]) -> None:
        self._on_data = on_data
        self._state = "line"  # line -> frames -> result -> done
        self._pending = bytearray()
        self._frame_left = 0

    @property
    def done(self) -> bool:
        return self._state == "done"

    def feed(self, data: bytes) -> list[dict[str, t.Any]]:
        messages = []
        view = memoryview(data)
        while len(view) and self._state != "done":
            if self._state in ("line", "result"):
                # Lines come alone or after the last frame, so this part of the output is short.
                end = bytes(view).find(b"\n")
                if end < 0:
                    self._pending.extend(view)
                    return messages
                self._pending.extend(view[:end])
                view = view[end + 1:]
                line = bytes(self._pending).strip()
                self._pending.clear()
                if not line:
                    continue
                message = _message(line)
                messages.append(message)
                self._state = "frames" if message.get("kind") == "ready" else "done"
            elif self._frame_left:
                take = min(self._frame_left, len(view))
                self._on_data(view[:take])
                self._frame_left -= take
                view = view[take:]
            else:
                need = 4 - len(self._pending)
                self._pending.extend(view[:need])
                view = view[need:]
                if len(self._pending) == 4:
                    self._frame_left = int.from_bytes(self._pending, "big")
                    self._pending.clear()
                    if self._frame_left == 0:
                        self._state = "result"
        return messages


def _message(line: bytes) -> dict[str, t.Any]:
    try:
        message = json.loads(line.decode("utf-8"))
    except ValueError:
        raise DeviceError("script", f"The device's transfer script wrote a line that is not JSON: {line[:200]!r}. "
                                    "The device may run another version of the collection's scripts.") from None
    if not isinstance(message, dict) or "kind" not in message:
        raise DeviceError("script", f"The device's transfer script wrote an unexpected line: {line[:200]!r}.")
    return message


def _size_text(size: int | None) -> str:
    if size is None:
        return "unknown size"
    return f"{size} byte" if size == 1 else f"{size} bytes"


def _percent(done: int, total: int) -> int:
    return 100 if total <= 0 else min(100, int(done * 100 // total))


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
        try:
            return self._take()
        except OSError as error:
            raise TransferFailed("local_error", f"Reading {self._path} on the controller failed: {error}") from None


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


# ---------------------------------------------------------------------------------------------------------------------
# The task


@dataclasses.dataclass
class Progress:
    """Reports progress lines (at -v): each tenth of the file, and at least every PROGRESS_SECONDS."""

    report: t.Callable[[str], None]
    monotonic: t.Callable[[], float]
    label: str
    total: int
    last_tenth: int = -1
    last_time: float = 0.0

    def __call__(self, done: int) -> None:
        tenth = _percent(done, self.total) // 10
        now = self.monotonic()
        if tenth != self.last_tenth or now - self.last_time >= PROGRESS_SECONDS:
            self.last_tenth, self.last_time = tenth, now
            self.report(f"{self.label}: {done} of {_size_text(self.total)} ({_percent(done, self.total)}%)")


class FileTransferTask:
    """One file_transfer task on one device, in one open shell."""

    def __init__(self, shell: t.Any, options: t.Mapping[str, t.Any], *, check_mode: bool, diff: bool,
                 controller_now: t.Callable[[], datetime.datetime], monotonic: t.Callable[[], float],
                 progress: t.Callable[[str], None], controller_host: str) -> None:
        self.shell = shell
        self.options = options
        self.check_mode = check_mode
        self.diff = diff
        self.controller_now = controller_now
        self.monotonic = monotonic
        self.progress = progress
        self.controller_host = controller_host
        self.direction = options["direction"]
        self.sending = self.direction == "to_device"
        self.workstation: str | None = None
        self.device_time: str | None = None
        self.session: sm.SessionRecord | None = None
        self.state = "unavailable"
        # filled in as the task learns them
        self.src = options["src"]
        self.dest = options["dest"]
        self.size: int | None = None
        self.chunk: int | None = None
        self.bytes_transferred = 0
        self.resumed_from = 0
        self.started_at = 0.0
        self.stderr = b""
        self.last_output: float | None = None
        self.streaming = False  # from_device: the controller's temporary file is being written
        self.partial: str | None = None  # from_device: the controller's temporary file, once opened

    # --- the decision ----------------------------------------------------------------------------------------------
    def run(self) -> dict[str, t.Any]:
        gate = session_gate.open_gate(self.shell, "file_transfer", self.options["idle_after"], self.controller_now)
        self.workstation = gate.facts.get("computer_name")
        self.device_time = format_utc(gate.view.device_time)
        self.state = gate.decision.state
        self.session = gate.record
        if not gate.decision.allowed:
            return self.failed("session_not_authorized" if gate.device_active else "device_not_active", gate.message)
        try:
            if self.sending:
                return self.send_file()
            return self.receive_file()
        except TransferFailed as failure:
            return self.failed(failure.code, failure.message, failure.session)

    # --- to_device ---------------------------------------------------------------------------------------------------
    def send_file(self) -> dict[str, t.Any]:
        src = self.src
        if os.path.isdir(src):
            raise TransferFailed("is_directory", f"'{src}' is a folder. {HINTS['is_directory']}")
        try:
            before = os.stat(src)
        except FileNotFoundError:
            raise TransferFailed("not_found", f"Could not find file '{src}' on the controller.") from None
        except OSError as error:
            raise TransferFailed("access_denied", f"Cannot read '{src}' on the controller: {error.strerror}.") from None
        self.size = size = before.st_size
        name = os.path.basename(src)
        identity = transfer_id(self.direction, self.dest, self.controller_host, src)
        prepared = self.prepare({"direction": self.direction, "path": self.dest, "file_name": name, "size": size,
                                 "hash_if_size": size, "transfer_id": identity})
        self.dest = prepared["path"] or self.dest
        device_file = prepared["file"]
        local_hash = None
        if device_file["exists"] and device_file["sha256"] is not None:
            local_hash = file_sha256(src).hexdigest()
            if local_hash == device_file["sha256"]:
                return self.unchanged(f"{self.dest} on {self.workstation} already holds the same {_size_text(size)} "
                                      f"(SHA-256 {local_hash}); nothing was sent", device_file, size, local_hash)
        if device_file["exists"] and not self.options["force"]:
            return self.kept(device_file)
        if self.check_mode:
            if self.diff and local_hash is None:
                local_hash = file_sha256(src).hexdigest()
            partial = prepared["partial"]
            resume = f", resuming after the {partial['size']} bytes an interrupted run left" if partial else ""
            return self.would(f"Would send {name} ({_size_text(size)}) to {self.dest} on {self.workstation}{resume}",
                              device_file, size, local_hash)

        envelope = envelope_bytes(prepared["max_envelope_size_kb"])
        self.chunk = chunk = chunk_for(envelope)
        self.started_at = self.monotonic()
        command = self.shell.start_stream(device_script.load("file_transfer_send"), {
            "path": self.dest, "size": size, "transfer_id": identity, "session_id": self.session.id,
            "chunk_bytes": chunk, "overwrite": bool(self.options["force"]), "resume": True,
            "source": f"{self.controller_host}:{src}", "requested_by": self.options["requested_by"],
        }, envelope)
        try:
            result, source_changed, sha = self.stream_to_device(command, src, size, before, chunk)
        except DeviceError as error:
            command.terminate()
            raise self.connection_lost(error) from None
        return self.finish(result, device_file, local_sha=sha, source_changed=source_changed)

    def stream_to_device(self, command: t.Any, src: str, size: int, before: os.stat_result,
                         chunk: int) -> tuple[dict[str, t.Any], bool, str | None]:
        lines = LineReader()
        ready = self.next_message(command, lines)
        if ready["kind"] == "result":
            return ready, False, None
        kept = ready["offset"]
        digest = hashlib.sha256()
        start = 0
        if 0 < kept <= size:
            prefix = file_sha256(src, kept)
            if prefix.hexdigest() == ready["prefix_sha256"]:
                start, digest = kept, prefix
        self.resumed_from = start
        report = Progress(self.progress, self.monotonic, f"{self.workstation}: sending {os.path.basename(src)}", size)
        window = max(WINDOW_BYTES, 4 * chunk)
        acked = sent = start
        producer = ChunkProducer(command, src, start, size, chunk, digest, before)
        producer.start()
        try:
            while True:
                item = producer.next()
                try:
                    command.send_message(item.message)
                except DeviceError:
                    # A device that stopped the transfer may refuse more input: its result says why.
                    result = self.drain(command, lines)
                    if result is not None:
                        return result, False, None
                    raise
                sent += item.size
                if item.last:
                    break
                while sent - acked > window:
                    for message in lines.feed(self.read(command.receive)):
                        if message["kind"] == "progress":
                            acked = message["bytes"]
                            self.bytes_transferred = acked - start
                            report(acked)
                        elif message["kind"] == "result":
                            return message, False, None
                    if command.done:
                        raise self.no_result(command)
        finally:
            producer.close()
        while True:
            for message in lines.feed(self.read(command.receive)):
                if message["kind"] == "progress":
                    self.bytes_transferred = message["bytes"] - start
                    report(message["bytes"])
                elif message["kind"] == "result":
                    self.bytes_transferred = message["bytes_written"]
                    return message, producer.source_changed, digest.hexdigest()
            if command.done:
                raise self.no_result(command)

    # --- from_device -------------------------------------------------------------------------------------------------
    def receive_file(self) -> dict[str, t.Any]:
        src = self.src
        device_name = ntpath.basename(src.replace("/", "\\").rstrip("\\")) or "file"
        dest = os.path.abspath(os.path.expanduser(self.dest))
        if self.dest.endswith(("/", os.sep)) or os.path.isdir(dest):
            dest = os.path.join(dest, device_name)
        self.dest = dest
        if os.path.islink(dest):
            # Whoever made it, following it would write wherever it points, and replacing it would undo their link.
            raise TransferFailed("dest_is_link", f"'{dest}' on the controller is a symbolic link; it is neither "
                                                 "followed nor replaced. Remove it, or choose another destination.")
        identity = transfer_id(self.direction, src, self.controller_host, dest)
        local = os.lstat(dest) if os.path.isfile(dest) else None
        prepared = self.prepare({"direction": self.direction, "path": src, "file_name": None, "size": None,
                                 "hash_if_size": None if local is None else local.st_size, "transfer_id": identity})
        self.src = prepared["path"] or src
        device_file = prepared["file"]
        self.size = size = device_file["size"]
        local_file = {"exists": local is not None, "size": None if local is None else local.st_size, "sha256": None}
        if local is not None and device_file["sha256"] is not None:
            local_file["sha256"] = file_sha256(dest).hexdigest()
            if local_file["sha256"] == device_file["sha256"]:
                return self.unchanged(f"{dest} already holds the same {_size_text(size)} as {self.src} on "
                                      f"{self.workstation} (SHA-256 {device_file['sha256']}); nothing was received",
                                      local_file, size, device_file["sha256"])
        if local is not None and not self.options["force"]:
            return self.kept(local_file)
        if os.path.isdir(dest):
            raise TransferFailed("is_directory", f"'{dest}' on the controller is a folder.")
        folder = os.path.dirname(dest)
        earlier = own_partial(folder, identity)
        kept = os.lstat(earlier).st_size if earlier is not None else 0
        if self.check_mode:
            resume = f", resuming after the {kept} bytes an interrupted run left" if kept else ""
            return self.would(f"Would receive {self.src} ({_size_text(size)}) from {self.workstation} into "
                              f"{dest}{resume}", local_file, size, device_file["sha256"])
        self.check_local_space(dest, size - min(kept, size))

        envelope = envelope_bytes(prepared["max_envelope_size_kb"])
        self.chunk = chunk = chunk_for(envelope)
        self.started_at = self.monotonic()
        command = self.shell.start_stream(device_script.load("file_transfer_receive"), {
            "path": self.src, "offset": kept, "transfer_id": identity, "session_id": self.session.id,
            "chunk_bytes": chunk, "destination": f"{self.controller_host}:{dest}",
            "requested_by": self.options["requested_by"],
        }, envelope)
        # The destination keeps its mode when it is replaced; a new one gets what any new file gets.
        mode = stat.S_IMODE(local.st_mode) if local is not None else new_file_mode()
        try:
            result, sha = self.stream_from_device(command, (folder, identity, earlier), size, mode)
        except DeviceError as error:
            command.terminate()
            raise self.connection_lost(error) from None
        except OSError as error:
            command.terminate()
            raise TransferFailed("local_error", f"Writing {self.partial or folder} on the controller failed: "
                                                f"{error}") from None
        temp = self.partial
        if result["outcome"] == "completed":
            if sha != result["sha256"] or self.resumed_from + self.bytes_transferred != result["size"]:
                _remove(temp)
                raise TransferFailed("hash_mismatch", f"What arrived (SHA-256 {sha}) is not what the device read "
                                                      f"(SHA-256 {result['sha256']}). {HINTS['hash_mismatch']}")
            os.replace(temp, dest)  # atomic on one file system: the destination is never partial
        elif temp is not None and self.streaming and (result["error"] or {}).get("code") != "interrupted":
            # Stopped or failed mid-way: nothing partial stays. A refusal before the first frame keeps what an
            # earlier, interrupted run left for the next one.
            _remove(temp)
        return self.finish(result, local_file, local_sha=sha)

    def stream_from_device(self, command: t.Any, partial: tuple[str, str, str | None], size: int,
                           mode: int) -> tuple[dict[str, t.Any], str | None]:
        holder: dict[str, t.Any] = {}

        def on_data(data: memoryview) -> None:
            holder["file"].write(data)
            holder["digest"].update(data)
            self.bytes_transferred += len(data)

        frames = FrameReader(on_data)
        ready = self.next_message(command, frames)
        if ready["kind"] == "result":
            return ready, None
        size = ready["size"]
        self.size = size
        kept = ready["offset"]
        folder, identity, earlier = partial
        self.partial, handle = open_partial(folder, identity, earlier)
        with handle:
            digest = hashlib.sha256()
            start = 0
            if kept and os.fstat(handle.fileno()).st_size >= kept:
                prefix = _sha256_of(handle, kept)
                if prefix.hexdigest() == ready["prefix_sha256"]:
                    start, digest = kept, prefix
            self.resumed_from = start
            holder["digest"] = digest
            report = Progress(self.progress, self.monotonic,
                              f"{self.workstation}: receiving {ntpath.basename(self.src)}", size)
            handle.seek(start)
            handle.truncate()
            holder["file"] = handle
            command.send(f"{start}\n".encode("ascii"), end=True)
            self.streaming = True
            reader = OutputReader(command)
            reader.start()
            try:
                while True:
                    messages = frames.feed(self.read(reader.receive))
                    report(start + self.bytes_transferred)
                    for message in messages:
                        if message["kind"] == "result":
                            handle.flush()
                            if message["outcome"] == "completed":  # through the handle: the folder may be shared
                                os.fchmod(handle.fileno(), mode)
                            os.fsync(handle.fileno())
                            return message, digest.hexdigest()
                    if reader.ended and not frames.done:
                        raise self.no_result(command)
            finally:
                reader.close()

    # --- the device's side of both ------------------------------------------------------------------------------------
    def prepare(self, request: dict[str, t.Any]) -> dict[str, t.Any]:
        prepared = self.shell.run(device_script.load("file_transfer_prepare"), request)
        refusal = prepared["refusal"]
        if refusal is not None:
            hint = HINTS.get(refusal["code"], "")
            raise TransferFailed(refusal["code"], f"{refusal['message']} {hint}".strip())
        return prepared

    def read(self, receive: t.Callable[[], t.Any]) -> bytes:
        """One Receive (the command's own, or an OutputReader's): the command's stdout since the last one (stderr is
        kept for a failure's message)."""
        output = receive()
        self.stderr = (self.stderr + output.stderr)[-4096:]
        now = self.monotonic()
        if output.stdout or output.stderr or output.done or self.last_output is None:
            self.last_output = now
        elif now - self.last_output > STALL_SECONDS:
            raise DeviceError("timeout", f"The device has sent nothing for {int(now - self.last_output)} s while "
                                         "the transfer was under way.")
        return output.stdout

    def next_message(self, command: t.Any, reader: t.Any) -> dict[str, t.Any]:
        while True:
            messages = reader.feed(self.read(command.receive))
            if messages:
                return messages[0]
            if command.done:
                raise self.no_result(command)

    def drain(self, command: t.Any, lines: LineReader) -> dict[str, t.Any] | None:
        """The result of a command that ended and so refused more input, if it wrote one. A command that still runs
        (the Send failed for another reason, such as a lost connection) has nothing more to say here."""
        try:
            for _attempt in range(2):
                output = self.read(command.receive)
                for message in lines.feed(output):
                    if message["kind"] == "result":
                        return message
                if not output or command.done:
                    return None
        except DeviceError:
            return None
        return None

    def no_result(self, command: t.Any) -> DeviceError:
        stderr = self.stderr.decode("utf-8", errors="replace").strip()
        return DeviceError("script", f"The device's transfer script ended (exit code {command.exit_code}) without a "
                                     f"result: {stderr[:500] or 'no error text'}", stderr)

    def connection_lost(self, error: DeviceError) -> TransferFailed:
        if error.reason == "script":
            return TransferFailed("script", error.message)
        done = self.resumed_from + self.bytes_transferred
        return TransferFailed("connection_lost", f"{CONNECTION_LOST} after {done} of {_size_text(self.size)}: "
                                                 f"{error.message} Run the task again: it resumes after the last "
                                                 "verified byte.")

    def check_local_space(self, dest: str, needed: int) -> None:
        folder = os.path.dirname(dest)
        try:
            os.makedirs(folder, exist_ok=True)
            free = shutil.disk_usage(folder).free
        except OSError as error:
            raise TransferFailed("access_denied", f"Cannot use {folder} on the controller: {error.strerror}.") from None
        if needed > free:
            raise TransferFailed("disk_full", f"There is not enough space on the controller: {needed} bytes are "
                                              f"needed and {free} bytes are free in {folder}.")

    # --- results -------------------------------------------------------------------------------------------------------
    def finish(self, result: dict[str, t.Any], before: dict[str, t.Any], *, local_sha: str | None,
               source_changed: bool = False) -> dict[str, t.Any]:
        self.device_time = result.get("device_time") or self.device_time
        if result["outcome"] == "completed":
            self.bytes_transferred = result.get("bytes_written", result.get("bytes_sent", self.bytes_transferred))
            self.resumed_from = result["offset"] or 0
            if local_sha is not None and local_sha != result["sha256"]:
                raise TransferFailed("hash_mismatch", f"The device reports SHA-256 {result['sha256']}, the controller "
                                                      f"computed {local_sha}. {HINTS['hash_mismatch']}")
            name = os.path.basename(self.src) if self.sending else ntpath.basename(self.src)
            resumed = f", resumed after byte {self.resumed_from}" if self.resumed_from else ""
            if self.sending:
                msg = f"{SENT}: {name} ({_size_text(self.size)}) to {self.dest} on {self.workstation}{resumed}"
            else:
                msg = f"{RECEIVED}: {self.src} ({_size_text(self.size)}) from {self.workstation} into {self.dest}{resumed}"
            return self.outcome(True, msg, SENT if self.sending else RECEIVED, before=before, sha=result["sha256"])
        error = result.get("error") or {"code": "script", "message": "the device gave no reason"}
        session = result.get("session")
        if result["outcome"] == "stopped" or error["code"] in ("session_not_authorized", "session_ended"):
            raise TransferFailed(error["code"], self.session_message(error["message"], session), session)
        if error["code"] == "hash_mismatch" and source_changed:
            raise TransferFailed("source_changed", f"'{self.src}' changed on the controller while it was sent; "
                                                   f"nothing was written. {HINTS['source_changed']}")
        raise TransferFailed(error["code"], f"{error['message']} {HINTS.get(error['code'], '')}".strip())

    def session_message(self, device_message: str, session: dict[str, t.Any] | None) -> str:
        """The session's own words for why nothing may go on (session_state.decide), from the record the device read."""
        if session is None:
            return device_message
        try:
            record = sm.SessionRecord.from_dict(session)
        except sm.InvalidSessionRecord:
            return device_message
        now = device_info.parse_utc(self.device_time) or self.controller_now()
        decision = sm.decide("file_transfer", record, now, True)
        if decision.allowed:  # authorized, but not for this transfer (its registration was removed)
            return device_message
        self.state = decision.state
        return decision.message

    def failed(self, code: str, message: str, session: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
        result = self.outcome(False, f"{FAILED}: {message}", FAILED)
        result["failed"] = True
        result["error_code"] = code
        if session is not None:
            result["session"] = session
        return result

    def unchanged(self, msg: str, before: dict[str, t.Any], size: int, sha: str) -> dict[str, t.Any]:
        return self.outcome(False, msg, SENT if self.sending else RECEIVED, before=before, sha=sha, percent=100)

    def kept(self, before: dict[str, t.Any]) -> dict[str, t.Any]:
        where = f"{self.dest} on {self.workstation}" if self.sending else self.dest
        return self.outcome(False, f"Kept the existing, different {where} (force: false); nothing was transferred",
                            NOT_SENT, before=before, sha=None)

    def would(self, msg: str, before: dict[str, t.Any], size: int, sha: str | None) -> dict[str, t.Any]:
        return self.outcome(True, msg, NOT_SENT, before=before, sha=sha)

    def outcome(self, changed: bool, msg: str, result_text: str, *, before: dict[str, t.Any] | None = None,
                sha: str | None = None, percent: int | None = None) -> dict[str, t.Any]:
        moved = self.resumed_from + self.bytes_transferred
        elapsed = self.monotonic() - self.started_at if self.started_at else 0.0
        name = os.path.basename(self.src) if self.sending else ntpath.basename(str(self.src).rstrip("\\"))
        transfer = {
            "workstation": self.workstation,
            "file_name": name,
            "size": self.size,
            "source": self.src,
            "destination": self.dest,
            "date": self.device_time,
            "direction": "sending" if self.sending else "receiving",
            "bytes_transferred": self.bytes_transferred,
            "resumed_from": self.resumed_from,
            "percent": percent if percent is not None else (_percent(moved, self.size or 0) if moved else 0),
            "result": result_text,
            "chunk_bytes": self.chunk,
            "seconds": round(elapsed, 3),
        }
        if result_text in (SENT, RECEIVED) and percent is None:
            transfer["percent"] = 100
        result: dict[str, t.Any] = {
            "changed": changed,
            "msg": msg,
            "direction": self.direction,
            "src": self.src,
            "dest": self.dest,
            "size": self.size,
            "sha256": sha,
            "transfer": transfer,
            "state": self.state,
            "session": None if self.session is None else self.session.to_dict(),
            "error_code": None,
        }
        if self.diff and before is not None:
            after = before if result_text == NOT_SENT and not changed else \
                {"exists": True, "size": self.size, "sha256": sha}
            result["diff"] = {"before_header": self.dest, "after_header": self.dest,
                              "before": _describe(before),
                              "after": _describe(after, unknown="(the device computes it during the transfer)")}
        return result


def _describe(file: dict[str, t.Any], unknown: str = "(not computed: the sizes differ, so the contents do)") -> str:
    """A file as the diff shows it: size and SHA-256, or that there is none."""
    if not file.get("exists"):
        return "(absent)\n"
    sha = file.get("sha256") or unknown
    return f"size: {_size_text(file.get('size'))}\nsha256: {sha}\n"


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def run(client: t.Any, options: t.Mapping[str, t.Any], *, check_mode: bool, diff: bool,
        controller_now: t.Callable[[], datetime.datetime], monotonic: t.Callable[[], float],
        progress: t.Callable[[str], None], controller_host: str) -> dict[str, t.Any]:
    """The file_transfer task on one device; never raises for a device-side failure."""
    task = None
    refused = option_error(options)
    if refused is not None:
        return {"changed": False, "failed": True, "msg": f"{FAILED}: {refused}", "error_code": "invalid_option"}
    try:
        with client.shell() as shell:
            task = FileTransferTask(shell, options, check_mode=check_mode, diff=diff, controller_now=controller_now,
                                    monotonic=monotonic, progress=progress, controller_host=controller_host)
            return task.run()
    except DeviceError as error:
        if task is not None and task.workstation is not None:
            return task.failed(error.reason, f"The device could not run the transfer: {error.message}")
        result = session_gate.unreachable(error)
        return dict(result, msg=f"{FAILED}: {result['msg']}", error_code="unreachable")
    except session_gate.SessionError as error:
        return {"changed": False, "failed": True, "msg": f"{FAILED}: {error}", "error_code": "session_record"}
