# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The core of the file_transfer module: move one file between the controller and a device, inside an authorized
support session, verified end to end, resumable and atomic. Plain Python: the shell, the clocks and the progress
report are passed in.

One WinRM shell per task, and in it:

1. get_support_session with the device's facts, in one command: is the device active, and may the session do `file_transfer` now
   (session_state.decide, the one place that answers it)?
2. file_transfer_prepare: what the transfer would meet on the device (path, file, policy, free space, a resumable
   temporary file, MaxEnvelopeSizekb). Check mode stops here.
3. One long-running command for the data: file_transfer_send (to_device) reads the file from stdin, or
   file_transfer_receive (from_device) writes it to stdout in frames, a chunk sized from the device's envelope per
   WinRM round trip. Neither side ever holds more than a chunk or two in memory.

Both ends compute SHA-256 as the bytes pass; the destination is written to a temporary name beside it and renamed
into place only once the hashes agree. A run that loses its connection leaves that temporary file, and the next run
of the same transfer (same direction, device path, controller and local path) resumes after the bytes both sides
still agree on. Between chunks the device checks the session itself, so deauthorization or expiry stops a transfer
mid-way: the temporary file is deleted and the device writes the audit entry.

This file holds the task; beside it, one concern each: file_transfer_framing (reading the scripts' output),
file_transfer_workers (the threads that work ahead), file_transfer_local (the controller's files) and
file_transfer_report (result words, hints, progress).
"""

from __future__ import annotations

import datetime
import hashlib
import ntpath
import os
import stat
import typing as t

from ansible_collections.remote_support.windows.plugins.module_utils import device_info, device_script
from ansible_collections.remote_support.windows.plugins.module_utils import session_state as sm
from ansible_collections.remote_support.windows.plugins.module_utils import session_gate
from ansible_collections.remote_support.windows.plugins.module_utils.device_info import format_utc
from ansible_collections.remote_support.windows.plugins.module_utils.errors import CONNECTION_LOST, DeviceError
from ansible_collections.remote_support.windows.plugins.module_utils.file_transfer_framing import (
    FrameReader,
    LineReader,
    chunk_for,
)
from ansible_collections.remote_support.windows.plugins.module_utils.file_transfer_local import (
    check_local_space,
    file_sha256,
    new_file_mode,
    open_partial,
    option_error,
    own_partial,
    remove,
    sha256_of,
    transfer_id,
)
from ansible_collections.remote_support.windows.plugins.module_utils.file_transfer_report import (
    FAILED,
    HINTS,
    NOT_SENT,
    RECEIVED,
    SENT,
    Progress,
    TransferFailed,
    describe,
    failure_words,
    percent_of,
    size_text,
)
from ansible_collections.remote_support.windows.plugins.module_utils.file_transfer_workers import (
    ChunkProducer,
    OutputReader,
)
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_streaming import envelope_bytes

ARGUMENT_SPEC: dict[str, dict[str, t.Any]] = {
    "direction": {"type": "str", "required": True, "choices": ["to_device", "from_device"]},
    "src": {"type": "str", "required": True},
    "dest": {"type": "str", "required": True},
    "force": {"type": "bool", "default": True},
    "requested_by": {"type": "str"},
    "idle_after": {"type": "int", "default": device_info.DEFAULT_IDLE_AFTER},
}

# How far the controller may run ahead of the device's acknowledgements: enough to keep the link busy while the
# device writes and hashes, little enough that a stopped transfer is noticed soon after.
WINDOW_BYTES = 16 * 1024 * 1024
# A device that says nothing for this long (each Receive it holds for its OperationTimeout and answers empty) is
# taken for hung. Generous: before "ready" the device hashes what an interrupted run left, which on a slow disk and
# a large file takes a while.
STALL_SECONDS = 600.0


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

    @property
    def session_id(self) -> str:
        """The session a transfer runs in: run() starts one only once decide allowed it, so there is a record."""
        if self.session is None:
            raise TransferFailed("session_not_authorized", "The device has no support session; request authorization.")
        return self.session.id

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
                return self.unchanged(f"{self.dest} on {self.workstation} already holds the same {size_text(size)} "
                                      f"(SHA-256 {local_hash}); nothing was sent", device_file, size, local_hash)
        if device_file["exists"] and not self.options["force"]:
            return self.kept(device_file)
        if self.check_mode:
            if self.diff and local_hash is None:
                local_hash = file_sha256(src).hexdigest()
            partial = prepared["partial"]
            resume = f", resuming after the {partial['size']} bytes an interrupted run left" if partial else ""
            return self.would(f"Would send {name} ({size_text(size)}) to {self.dest} on {self.workstation}{resume}",
                              device_file, size, local_hash)

        envelope = envelope_bytes(prepared["max_envelope_size_kb"])
        self.chunk = chunk = chunk_for(envelope)
        self.started_at = self.monotonic()
        command = self.shell.start_stream(device_script.load("file_transfer_send"), {
            "path": self.dest, "size": size, "transfer_id": identity, "session_id": self.session_id,
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
                try:
                    item = producer.next()
                except OSError as error:
                    raise TransferFailed("local_error", f"Reading {src} on the controller failed: {error}") from None
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
        local_file: dict[str, t.Any] = {"exists": local is not None, "sha256": None,
                                        "size": None if local is None else local.st_size}
        if local is not None and device_file["sha256"] is not None:
            local_file["sha256"] = file_sha256(dest).hexdigest()
            if local_file["sha256"] == device_file["sha256"]:
                return self.unchanged(f"{dest} already holds the same {size_text(size)} as {self.src} on "
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
            return self.would(f"Would receive {self.src} ({size_text(size)}) from {self.workstation} into "
                              f"{dest}{resume}", local_file, size, device_file["sha256"])
        check_local_space(dest, size - min(kept, size))

        envelope = envelope_bytes(prepared["max_envelope_size_kb"])
        self.chunk = chunk = chunk_for(envelope)
        self.started_at = self.monotonic()
        command = self.shell.start_stream(device_script.load("file_transfer_receive"), {
            "path": self.src, "offset": kept, "transfer_id": identity, "session_id": self.session_id,
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
            if temp is None or sha != result["sha256"] or self.resumed_from + self.bytes_transferred != result["size"]:
                if temp is not None:
                    remove(temp)
                raise TransferFailed("hash_mismatch", f"What arrived (SHA-256 {sha}) is not what the device read "
                                                      f"(SHA-256 {result['sha256']}). {HINTS['hash_mismatch']}")
            os.replace(temp, dest)  # atomic on one file system: the destination is never partial
        elif temp is not None and self.streaming and (result["error"] or {}).get("code") != "interrupted":
            # Stopped or failed mid-way: nothing partial stays. A refusal before the first frame keeps what an
            # earlier, interrupted run left for the next one.
            remove(temp)
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
                prefix = sha256_of(handle, kept)
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
            hint = self.hint(refusal["code"])
            raise TransferFailed(refusal["code"], f"{refusal['message']} {hint}".strip())
        return prepared

    def hint(self, code: str) -> str:
        """What to do about a device's refusal. A file missing on the device is looked for there: the device's
        message names the path it did not find."""
        if code == "not_found" and not self.sending:
            return (f"Check src: it must name an existing file on {self.workstation} (drive letter and folders as "
                    "Windows shows them) that the account the transfer runs as may read.")
        return HINTS.get(code, "")

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
        # The classifier already says "Connection to workstation lost" and to run the task again; said once here, with
        # how far the transfer got and why a rerun is cheap.
        cause = error.message.replace(f": {CONNECTION_LOST}.", ".").replace(" and run the task again.", ".")
        return TransferFailed("connection_lost", f"{CONNECTION_LOST} after {done} of {size_text(self.size)} "
                                                 f"confirmed by the device: {cause} Run the task again: it resumes after the last verified "
                                                 "byte.")

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
                msg = f"{SENT}: {name} ({size_text(self.size)}) to {self.dest} on {self.workstation}{resumed}"
            else:
                msg = f"{RECEIVED}: {self.src} ({size_text(self.size)}) from {self.workstation} into {self.dest}{resumed}"
            return self.outcome(True, msg, SENT if self.sending else RECEIVED, before=before, sha=result["sha256"])
        error = result.get("error") or {"code": "script", "message": "the device gave no reason"}
        session = result.get("session")
        if result["outcome"] == "stopped" or error["code"] in ("session_not_authorized", "session_ended"):
            raise TransferFailed(error["code"], self.session_message(error["message"], session), session)
        if error["code"] == "hash_mismatch" and source_changed:
            raise TransferFailed("source_changed", f"'{self.src}' changed on the controller while it was sent; "
                                                   f"nothing was written. {HINTS['source_changed']}")
        raise TransferFailed(error["code"], f"{error['message']} {self.hint(error['code'])}".strip())

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
        result = self.outcome(False, f"{failure_words(self.direction)}: {message}", FAILED)
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
            "percent": percent if percent is not None else (percent_of(moved, self.size or 0) if moved else 0),
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
                              "before": describe(before),
                              "after": describe(after, unknown="(the device computes it during the transfer)")}
        return result


def run(client: t.Any, options: t.Mapping[str, t.Any], *, check_mode: bool, diff: bool,
        controller_now: t.Callable[[], datetime.datetime], monotonic: t.Callable[[], float],
        progress: t.Callable[[str], None], controller_host: str) -> dict[str, t.Any]:
    """The file_transfer task on one device; never raises for a device-side failure."""
    task = None
    refused = option_error(options)
    if refused is not None:
        return {"changed": False, "failed": True, "msg": f"{failure_words(options.get('direction', ''))}: {refused}",
                "error_code": "invalid_option"}
    try:
        with client.shell() as shell:
            task = FileTransferTask(shell, options, check_mode=check_mode, diff=diff, controller_now=controller_now,
                                    monotonic=monotonic, progress=progress, controller_host=controller_host)
            return task.run()
    except DeviceError as error:
        if task is not None and task.workstation is not None:
            return task.failed(error.reason, f"The device could not run the transfer: {error.message}")
        result = session_gate.unreachable(error)
        return dict(result, msg=f"{failure_words(options['direction'])}: {result['msg']}", error_code="unreachable")
    except session_gate.SessionError as error:
        return {"changed": False, "failed": True, "msg": f"{failure_words(options['direction'])}: {error}",
                "error_code": "session_record"}
