#!/usr/bin/python
# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: support_audit
short_description: Read back who did what on a Windows device, as support sessions, from its audit events
version_added: 0.1.0
description:
  - Reads the device's support audit trail, the Application event log entries of source C(RemoteSupport.Windows)
    written since a time, and returns them as support sessions, who asked (the free-text C(requested_by) and the
    account that authenticated to the device), why, who accepted or denied and when, when the session was
    authorized, renewed, and how it ended (expired, deauthorized, denied, timed out, cancelled) and by whom.
  - Each session lists its file transfers (direction, device path, size, SHA-256, result) and its remote-control
    grants (account, mode, started and ended, by whom and why).
  - Nothing is hidden, events of no session (policy and agent changes, transfers written before transfers named
    their session) are returned apart; events in the collection's ranges whose text is not one the collection
    writes are returned as RV(unrecognized); a log that overwrote events written since O(since) is reported as
    RV(log_wrapped).
  - What each event id means, and how to forward the events to a collector or SIEM, is in the collection's
    docs/audit.md.
  - Runs on the controller (action plugin); read-only, so check mode reads for real.
options:
  since:
    description:
      - Read events written at or after this time (ISO 8601; a time without a zone and a date alone are UTC).
      - Mutually exclusive with O(last).
    type: str
  last:
    description:
      - Read events written in this last stretch of time by the device's clock, a number and a unit, C(s), C(m),
        C(h), C(d) or C(w), for example C(7d) or C(24h).
      - Used when O(since) is not given; the default is C(7d).
    type: str
  max_events:
    description:
      - At most this many events are read, the oldest first; RV(truncated) says whether more were there.
      - 1 to 100000.
    type: int
    default: 20000
attributes:
  check_mode:
    support: full
    description: Read-only; check mode reads the device as a normal run does.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to compare.
extends_documentation_fragment: [remote_support.windows.winrm, remote_support.windows.device_task]
notes:
  - Any local user may write to the Application log, also under the source C(RemoteSupport.Windows). An entry is
    evidence of what a device said, not proof; forward the events as they are written (docs/audit.md).
seealso:
  - module: remote_support.windows.support_session
  - module: remote_support.windows.file_transfer
  - module: remote_support.windows.remote_control
"""

EXAMPLES = r"""
- name: Who accessed this desktop last week, with whose consent, and what files moved
  remote_support.windows.support_audit:
    last: 7d
  register: audit

- name: Since a date
  remote_support.windows.support_audit:
    since: "2026-11-24T08:00:00Z"

- name: Say so when the log no longer holds the whole week
  ansible.builtin.debug:
    msg: "{{ audit.msg }}"
  when: audit.log_wrapped
"""

RETURN = r"""
changed:
  description: Always false; nothing is written.
  returned: always
  type: bool
computer_name:
  description: The device's name as Windows reports it.
  returned: when the device was read
  type: str
device_time:
  description: The device's clock when it was read (ISO 8601 UTC).
  returned: when the device was read
  type: str
since:
  description: The start of the window read, by the device's clock (ISO 8601 UTC, whole seconds).
  returned: when the device was read
  type: str
  sample: "2026-11-17T09:00:00Z"
log:
  description: The Application log as Windows reports it.
  returned: when the device was read
  type: dict
  contains:
    log_mode:
      description: C(Circular) (overwrites its oldest events when full, the Windows default), C(AutoBackup) or C(Retain).
      type: str
    maximum_size_bytes:
      description: The log's maximum size.
      type: int
    file_size_bytes:
      description: Its size now.
      type: int
    record_count:
      description: How many events it holds (of every source).
      type: int
    oldest_record_id:
      description: The record id of the oldest event it holds; above 1 once older events were overwritten.
      type: int
    oldest_time_created:
      description: When that event was written (ISO 8601 UTC).
      type: str
log_wrapped:
  description: Whether the log's oldest event is newer than RV(since) and older events were overwritten, so events
    of the window are lost; RV(msg) says from when the log is complete.
  returned: when the device was read
  type: bool
truncated:
  description: Whether more than O(max_events) events matched (the newest were left out).
  returned: when the device was read
  type: bool
event_count:
  description: How many events were read.
  returned: when the device was read
  type: int
sessions:
  description: The support sessions the events tell of, in the order of their first event.
  returned: when the device was read
  type: list
  elements: dict
  contains:
    id:
      description: The session id.
      type: str
    requested_by:
      description: Who asked, as the requester gave it (free text).
      type: str
    authenticated_account:
      description: The account that authenticated to the device for the request (as Windows knows it); null where
        the events do not say.
      type: str
    reason:
      description: The reason given.
      type: str
    requested_at:
      description: When it was requested (or authorized at once, without confirmation); null when that was before
        RV(since).
      type: str
    began_before_since:
      description: Whether the session's request is older than the window read, so its first events are not here.
      type: bool
    consents:
      description: The client's answers, each C(answer) (C(accepted), C(denied), C(timed_out)), C(by) (the Windows
        user, or C(timer)) and C(at).
      type: list
      elements: dict
    authorized_at:
      description: When it was first authorized.
      type: str
    authorized_by:
      description: Who authorized it, the user who accepted, or the specialist where no confirmation was needed.
      type: str
    renewals:
      description: Each renewal, C(at) and C(by).
      type: list
      elements: dict
    state:
      description: The last state the events show, C(pending_confirmation), C(authorized), C(denied), C(timed_out),
        C(expired), C(deauthorized) or C(cancelled).
      type: str
    ended_at:
      description: When it ended; null while it has not.
      type: str
    ended_by:
      description: Who ended it, a specialist, the user (denied) or C(timer) (expired, timed out).
      type: str
    transfers:
      description: Its file transfers, each C(direction) (C(to_device), C(from_device)), C(device_path),
        C(controller_path), C(size), C(sha256) (when completed), C(result) (C(completed), C(stopped), C(failed)),
        C(bytes_transferred), C(error), C(requested_by), C(at) and C(record_id).
      type: list
      elements: dict
    remote_control:
      description: Its remote-control grants, each C(account), C(mode), C(user) (whose desktop),
        C(interactive_session_id), C(granted_by), C(started_at), C(until), C(user_prompted), C(changes), C(ended_at),
        C(ended_by) and C(end_reason).
      type: list
      elements: dict
    record_ids:
      description: The record ids of the session's events.
      type: list
      elements: int
transfers_without_session:
  description: Transfers whose event does not name a session (written by an older collection).
  returned: when the device was read
  type: list
  elements: dict
other_events:
  description: Events of no session, each with C(kind), C(policy_changed), C(agent_changed),
    C(remote_control_ended_unrecorded) or C(unknown_id).
  returned: when the device was read
  type: list
  elements: dict
unrecognized:
  description: Events whose id the collection writes but whose text is not one it writes (a forged or damaged entry).
  returned: when the device was read
  type: list
  elements: dict
events:
  description: Every event read, C(record_id), C(time_created), C(event_id), C(level) and C(message).
  returned: when the device was read
  type: list
  elements: dict
connection:
  description: Why the device could not be read (C(valid), C(reason), C(message)).
  returned: when the device could not be read
  type: dict
msg:
  description: What was read, or why it could not be, and whether the log wrapped.
  returned: always
  type: str
"""

from ansible_collections.remote_support.windows.plugins.module_utils import controller_only, support_audit


def main() -> None:
    controller_only.main("support_audit", support_audit.ARGUMENT_SPEC)


if __name__ == "__main__":
    main()
