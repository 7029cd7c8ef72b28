#!/usr/bin/python
# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: file_transfer
short_description: Move one file between the controller and a Windows device inside an authorized support session
version_added: 0.1.0
description:
  - Sends a file from the controller to the device (O(direction=to_device), "sending") or receives one from the
    device (O(direction=from_device), "receiving"). Files only; a folder is refused.
  - Starts only when the device's support session allows file transfer now (authorized, not expired, the device
    active and running Windows); see M(remote_support.windows.support_session). Otherwise it fails with the session's
    state and what to do, for example "The session's authorization expired at T; request authorization again".
  - The file streams through one long-running WinRM command, in chunks sized from the device's MaxEnvelopeSizekb
    (one chunk per WinRM round trip), and neither side ever holds the whole file in memory.
  - Verified end to end with SHA-256. The destination is written under a temporary name beside it and renamed into
    place only once the hashes agree, so it is never partial. A run that loses its connection ("Connection to
    workstation lost") leaves that temporary file, and running the same task again resumes after the last byte both
    sides agree on.
  - Idempotent, a destination with the same content is left alone (not changed); with O(force=false) an
    existing, different destination is kept.
  - The device checks the session again after every chunk, so deauthorizing the session or its expiry stops a
    transfer in progress. The result is then "Sending failed" with the reason, nothing partial stays behind, and the
    device writes the audit entry (Application log, source C(RemoteSupport.Windows), event 1031).
  - The device's policy (C(HKLM:\SOFTWARE\RemoteSupport\Policy), see M(remote_support.windows.support_policy)) limits
    where transfers may read and write on the device (C(FileTransferAllowedRoots), default C(C:\Users), so nothing
    under C(C:\Windows)) and how large a file may be (C(FileTransferMaxSizeBytes), default 4 GiB). Free space is
    checked before anything moves.
  - Confinement is by what a device path is, not how it reads. A path that passes through a junction, symbolic link
    or mount point (Windows' own C(C:\Users\All Users), or one a user planted) is refused in both directions, and so
    are the device namespace (C(\\?\), C(\\.\)), alternate data streams and names Windows reserves for devices
    (C(CON), C(NUL), C(COM1)...), each with its own RV(error_code). The device checks again on the file it opened, so
    a link swapped in while the transfer runs stops it. See the collection's C(docs/file-transfer.md).
  - On the controller, O(direction=from_device) writes to a temporary file created exclusively under an
    unpredictable name, never through a symbolic link; a destination that is a symbolic link is refused, and a
    replaced destination keeps its permissions.
  - An option carrying a NUL byte or another control character is refused before anything starts.
  - Runs on the controller (action plugin).
options:
  direction:
    description:
      - V(to_device) sends O(src) from the controller to O(dest) on the device.
      - V(from_device) receives O(src) from the device into O(dest) on the controller.
    type: str
    required: true
    choices: [to_device, from_device]
  src:
    description:
      - The file to transfer. With O(direction=to_device) a path on the controller (a relative path is looked for in
        the role's or playbook's C(files/) folder first, as M(ansible.builtin.copy) does); with
        O(direction=from_device) an absolute Windows path on the device.
    type: str
    required: true
  dest:
    description:
      - Where the file goes. With O(direction=to_device) an absolute Windows path on the device; with
        O(direction=from_device) a path on the controller.
      - An existing folder, or a path ending in a path separator, receives the file under its own name. Missing
        parent folders are created.
    type: str
    required: true
  force:
    description:
      - Replace a destination whose content differs. With V(false) an existing destination is kept as it is.
      - A destination with the same content is never rewritten.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: Reads the device and says what would be transferred (and whether it would resume) without moving a byte.
  diff_mode:
    support: full
    description: Size and SHA-256 of the destination before and after.
extends_documentation_fragment:
  - remote_support.windows.winrm
  - remote_support.windows.device_task
  - remote_support.windows.device_task.idle_after
  - remote_support.windows.device_task.requested_by
notes:
  - Progress lines (bytes and percent) are shown at C(-v) during long transfers.
  - Paths on the device must be shorter than 260 characters, as Windows PowerShell 5.1 requires.
  - A file another program holds open for writing cannot be read, and one held open at all cannot be replaced
    (error code C(in_use)); close the program and run the task again.
  - An abandoned transfer leaves its hidden temporary file (C(~rs-<id>.partial) beside the destination on the device,
    C(.~rs-<id>.partial) on the controller) until the same transfer runs again.
seealso:
  - module: remote_support.windows.support_session
  - module: remote_support.windows.support_policy
"""

EXAMPLES = r"""
- name: Authorize a session first
  remote_support.windows.support_session:
    state: authorized
    reason: "INC-4711: send the fixed Outlook profile"

- name: Send a file to the user's desktop
  remote_support.windows.file_transfer:
    direction: to_device
    src: files/outlook-profile.prf
    dest: 'C:\Users\ana.souza\Desktop\'
  register: sent

- name: Receive a log from the device
  remote_support.windows.file_transfer:
    direction: from_device
    src: 'C:\Users\ana.souza\AppData\Local\Temp\Outlook Logging\Outlook-1.etl'
    dest: "logs/{{ inventory_hostname }}/"

- name: Keep a file the user changed
  remote_support.windows.file_transfer:
    direction: to_device
    src: files/settings.ini
    dest: 'C:\Users\Public\Documents\settings.ini'
    force: false

- name: Show what the product shows for a transfer
  ansible.builtin.debug:
    msg: "{{ sent.transfer.workstation }}: {{ sent.transfer.file_name }} {{ sent.transfer.result }} ({{ sent.transfer.percent }}%)"
"""

RETURN = r"""
msg:
  description: What happened, for example C(Successfully sent report.pdf (1048576 bytes) to C:\Users\ana\report.pdf on
    DESKTOP-1), or C(Sending failed) with the reason and what to do.
  returned: always
  type: str
direction:
  description: O(direction).
  returned: when the device answered
  type: str
src:
  description: The source as the transfer used it (the full device path for O(direction=from_device)).
  returned: when the device answered
  type: str
dest:
  description: The destination as the transfer used it (a folder given as O(dest) has the file name added).
  returned: when the device answered
  type: str
size:
  description: The file's size in bytes.
  returned: when the file was found
  type: int
sha256:
  description: The file's SHA-256, as both sides computed it.
  returned: when the file was transferred or found identical
  type: str
error_code:
  description:
    - Why the transfer failed; null when it did not.
    - C(session_not_authorized) (the session did not allow it), C(device_not_active), C(session_ended) (deauthorized,
      expired or replaced mid-way), C(connection_lost), C(unreachable), C(path_not_allowed), C(too_large),
      C(disk_full), C(access_denied), C(in_use), C(name_too_long), C(invalid_path), C(is_directory), C(not_found),
      C(exists), C(hash_mismatch), C(source_changed), C(interrupted), C(local_error), C(script).
    - Confinement on the device gives C(reparse_point) (a junction, symbolic link or mount point on the way, or an
      allowed folder that is one), C(path_changed) (the file opened, or a folder on its way, moved or was replaced by a
      link), C(device_path), C(alternate_stream) and C(reserved_name).
    - On the controller, C(dest_is_link) (the destination is a symbolic link) and C(invalid_option) (an option carries
      a control character).
  returned: always
  type: str
transfer:
  description: The transfer as the product reports it.
  returned: when the device answered
  type: dict
  contains:
    workstation:
      description: The device's computer name.
      type: str
    file_name:
      description: The file's name.
      type: str
    size:
      description: The file's size in bytes.
      type: int
    source:
      description: Where the file came from.
      type: str
    destination:
      description: Where the file went.
      type: str
    date:
      description: When the transfer ended, by the device's clock (UTC).
      type: str
    direction:
      description: C(sending) (to the device) or C(receiving) (from the device).
      type: str
    bytes_transferred:
      description: Bytes this run moved (a resumed run moves only the rest).
      type: int
    resumed_from:
      description: The byte this run started at; 0 unless it resumed an interrupted transfer.
      type: int
    percent:
      description: How much of the file is at the destination (100 once it is complete).
      type: int
    result:
      description: C(Successfully sent), C(Successfully received), C(Sending failed), or C(Not sent) (check mode, or
        kept with O(force=false)).
      type: str
    chunk_bytes:
      description: Bytes of the file per WinRM round trip, sized from the device's MaxEnvelopeSizekb.
      type: int
    seconds:
      description: How long the data took to move.
      type: float
state:
  description: The session's state when the transfer was decided (or when it was stopped).
  returned: always
  type: str
session:
  description: The session record (see M(remote_support.windows.support_session)); when the device stopped the
    transfer, the record as it was then.
  returned: when the device answered
  type: dict
"""

from ansible_collections.remote_support.windows.plugins.module_utils import controller_only, file_transfer


def main() -> None:
    controller_only.main("file_transfer", file_transfer.ARGUMENT_SPEC)


if __name__ == "__main__":
    main()
