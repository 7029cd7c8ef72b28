# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a transfer reports: the product's result words, what to do about each way a transfer can fail, the progress
lines at -v and the file as the diff shows it; and TransferFailed, which carries a failure's code and message to the
task's result."""

from __future__ import annotations

import dataclasses
import typing as t

# What the product shows as a transfer's result.
SENT = "Successfully sent"
RECEIVED = "Successfully received"
FAILED = "Sending failed"  # the product's result word for a failed transfer, whichever the direction
RECEIVE_FAILED = "Receiving failed"  # how the message of a failed receive begins
NOT_SENT = "Not sent"


def failure_words(direction: str) -> str:
    """How a failed transfer's message begins: it says which way the file was to go."""
    return RECEIVE_FAILED if direction == "from_device" else FAILED


# Progress lines at -v: every tenth of the file, and at least this often.
PROGRESS_SECONDS = 5.0

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


class TransferFailed(Exception):
    """The transfer cannot go on; `code` names why (the device's codes, or connection_lost / session_*)."""

    def __init__(self, code: str, message: str, session: dict[str, t.Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.session = session


def size_text(size: int | None) -> str:
    if size is None:
        return "unknown size"
    return f"{size} byte" if size == 1 else f"{size} bytes"


def percent_of(done: int, total: int) -> int:
    return 100 if total <= 0 else min(100, int(done * 100 // total))


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
        tenth = percent_of(done, self.total) // 10
        now = self.monotonic()
        if tenth != self.last_tenth or now - self.last_time >= PROGRESS_SECONDS:
            self.last_tenth, self.last_time = tenth, now
            self.report(f"{self.label}: {done} of {size_text(self.total)} ({percent_of(done, self.total)}%)")


def describe(file: dict[str, t.Any], unknown: str = "(not computed: the sizes differ, so the contents do)") -> str:
    """A file as the diff shows it: size and SHA-256, or that there is none."""
    if not file.get("exists"):
        return "(absent)\n"
    sha = file.get("sha256") or unknown
    return f"size: {size_text(file.get('size'))}\nsha256: {sha}\n"
