#!/usr/bin/python
# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: support_session
short_description: Request, end or read the support session of a Windows device, with the client's consent
version_added: 0.1.0
description:
  - A support session can be authorized only while the device is active (see M(remote_support.windows.device_info))
    and, when the device's client-confirmation policy is on, only after the person at the device accepts.
  - O(state=authorized) requests authorization and, with O(wait=true), waits for the client's answer. It is
    idempotent, an authorization with more than O(renew_before) seconds left is kept; otherwise it is renewed, which
    asks the client again when the policy requires confirmation.
  - While a renewal waits for the client, the current authorization stays in force until its own C(expires_at)
    (the state stays C(authorized)). If the client says no, the session is C(denied) at once and everything hanging on
    it ends with it (the remote-control grant is removed and its shadow connections closed, file transfers stop).
    If nobody answers, the task fails and the current authorization runs out at its C(expires_at) as it would have.
  - The prompt names the account that authenticated to the device (as Windows knows it), then O(requested_by) and
    O(reason), marked as given by the requester.
  - O(state=deauthorized) ends the authorization, or cancels a request still waiting for the client, and ends file
    transfers and remote control in progress. It needs a valid connection only, so it also works on a device that
    is idle (its agent stopped checking in) but answers. Idempotent.
  - O(state=query) reads the session and never changes anything.
  - The authorization lapses on the device itself after the session TTL (default 3600 s), even if no controller ever
    comes back; every action checks the expiry again before it starts. The device's clock decides; the difference to
    the controller's clock is reported in RV(clock_skew_seconds).
  - The session record lives on the device, so a second controller (or AWX) sees the same session. Every write is a
    compare-and-set on the record's version; a writer that lost the race fails with "changed by X at T" instead of
    overwriting.
  - Every transition is written to the device's Application event log (source C(RemoteSupport.Windows)).
  - Runs on the controller (action plugin).
options:
  state:
    description:
      - V(authorized) requests (or renews) authorization, V(deauthorized) ends it or cancels a pending request,
        V(query) only reads.
    type: str
    required: true
    choices: [authorized, deauthorized, query]
  reason:
    description:
      - Why the session is needed. Shown to the client in the consent prompt, marked as the requester's words, and
        written to the audit log.
      - Required with O(state=authorized); an empty or blank reason is refused.
      - Stored and shown cleaned, control characters and line breaks replaced by a space, runs of spaces by one
        space. At most 300 characters after cleaning.
    type: str
  requested_by:
    description:
      - Who asks, as the requester gives it. Shown to the client after the account that authenticated to the device,
        marked as given by the requester, and written to the audit log.
      - Defaults to the user name the controller authenticates to the device with (O(user), C(ansible_user)),
        never the controller's own login name.
      - Cleaned and limited like O(reason).
    type: str
  wait:
    description:
      - With O(state=authorized), wait until the client answers (or the request times out).
      - With V(false), a request that needs the client's confirmation returns at once in state C(pending_confirmation).
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds to wait for the client's answer. When they pass, the task fails and the request stays pending until
        the device's confirmation timeout.
    type: int
    default: 300
  renew_before:
    description:
      - An authorization with more than this many seconds left is kept as it is (not changed); one with less is renewed.
    type: int
    default: 600
  poll_interval:
    description:
      - While waiting for the client, seconds between two reads of the session record on the device.
      - The wait runs on the device, one WinRM command of at most a minute at a time, so a shorter interval sees the
        answer sooner without more traffic.
    type: int
    default: 1
attributes:
  check_mode:
    support: full
    description: Reports what would happen without prompting anyone or changing the device.
  diff_mode:
    support: none
    description: The returned session record shows the state.
extends_documentation_fragment:
  - remote_support.windows.winrm
  - remote_support.windows.device_task
  - remote_support.windows.device_task.idle_after
notes:
  - WinRM commands run in session 0, which cannot show anything on the user's desktop. The consent prompt reaches the
    logged-on user through scheduled tasks on the device; see the collection's docs/consent-route.md.
  - With nobody logged on and the client-confirmation policy on, a request cannot be confirmed and the task fails
    saying so.
  - The policy (confirmation required, confirmation timeout, session TTL) is read from the device; where none is set,
    confirmation is required, the timeout is 300 s and the TTL 3600 s.
seealso:
  - module: remote_support.windows.device_info
"""

EXAMPLES = r"""
- name: Ask the user at the device to accept a support session, and wait for the answer
  remote_support.windows.support_session:
    state: authorized
    reason: "Ticket INC-4711: Outlook crashes on start"
  register: session

- name: Show what may be done now
  ansible.builtin.debug:
    msg: "{{ session.allowed_actions }} for {{ session.remaining_seconds }} s"

- name: Request without waiting; the answer can be read later
  remote_support.windows.support_session:
    state: authorized
    reason: "Scheduled maintenance window"
    wait: false

- name: Read the session without changing it
  remote_support.windows.support_session:
    state: query
  register: current

- name: Keep the session alive when less than 15 minutes are left
  remote_support.windows.support_session:
    state: authorized
    reason: "Still working on INC-4711"
    renew_before: 900

- name: End the session (also ends file transfers and remote control)
  remote_support.windows.support_session:
    state: deauthorized
"""

RETURN = r"""
state:
  description:
    - The session's state as every action sees it, one of C(unavailable), C(not_authorized), C(pending_confirmation),
      C(authorized), C(denied), C(timed_out), C(expired), C(deauthorized).
  returned: when the device was read
  type: str
  sample: authorized
session:
  description: The session record stored on the device; null when the device has none.
  returned: when the device was read
  type: dict
  contains:
    id:
      description: Session id.
      type: str
    state:
      description: Stored state.
      type: str
    requested_by:
      description: Who requested the authorization.
      type: str
    reason:
      description: Why, as shown to the client.
      type: str
    requested_at:
      description: When it was requested (device clock, ISO 8601 UTC).
      type: str
    confirmation_required:
      description: Whether the client had to confirm.
      type: bool
    confirmed_by:
      description: The Windows user who answered the prompt (accepting or denying).
      type: str
    authorized_at:
      description: When the authorization was given.
      type: str
    expires_at:
      description: When it lapses, authorized_at + ttl_seconds.
      type: str
    ended_by:
      description: Who deauthorized or cancelled it.
      type: str
    ended_at:
      description: When it was ended.
      type: str
    version:
      description: Increases with every change; writers compare-and-set on it.
      type: int
    ttl_seconds:
      description: The session TTL the policy gave at request time.
      type: int
    confirmation_timeout_seconds:
      description: How long the client had to answer.
      type: int
    changed_by:
      description: Who made the last change (C(timer) for a lapse).
      type: str
    changed_at:
      description: When the last change was made.
      type: str
    renewal_requested_by:
      description: While a renewal of the authorized session waits for the client, who asked for it; else null.
      type: str
    renewal_reason:
      description: While a renewal waits, its reason; else null.
      type: str
    renewal_requested_at:
      description: While a renewal waits, when it was asked; else null.
      type: str
  sample:
    id: 5d1f3a9e-7c1b-4b7e-9a55-2d9a0f1c6e21
    state: authorized
    requested_by: jdoe
    reason: "INC-4711"
    confirmed_by: CONTOSO\\maria.silva
    authorized_at: "2026-11-24T10:00:03Z"
    expires_at: "2026-11-24T11:00:03Z"
    version: 2
remaining_seconds:
  description: Seconds until the authorization lapses; 0 unless authorized.
  returned: when the device was read
  type: int
  sample: 3597
allowed_actions:
  description: The actions that may start now, among C(remote_control), C(file_transfer), C(request_authorization),
    C(deauthorize).
  returned: when the device was read
  type: list
  elements: str
  sample: [remote_control, file_transfer, request_authorization, deauthorize]
policy:
  description: The device's support policy.
  returned: when the device was read
  type: dict
  sample: {confirmation_required: true, confirmation_timeout_seconds: 300, session_ttl_seconds: 3600, source: device}
interactive_user:
  description: The user logged on at the device's console; null when nobody is.
  returned: when the device was read
  type: str
  sample: CONTOSO\\maria.silva
device_time:
  description: The device's clock when it was last read.
  returned: when the device was read
  type: str
clock_skew_seconds:
  description: Device clock minus controller clock; reported, never used to decide.
  returned: when the device answered
  type: int
device_status:
  description: C(active), C(idle) or C(unreachable), as M(remote_support.windows.device_info) reports it.
  returned: always
  type: str
connection:
  description: Whether the WinRM connection worked, and if not why (see M(remote_support.windows.device_info)).
  returned: always
  type: dict
msg:
  description: What happened, or why the session could not be authorized and what to do.
  returned: always
  type: str
  sample: Authorized until 2026-11-24T11:00:03Z (3600 s left)
"""

from ansible_collections.remote_support.windows.plugins.module_utils import controller_only, support_session


def main() -> None:
    controller_only.main("support_session", support_session.ARGUMENT_SPEC, support_session.REQUIRED_IF)


if __name__ == "__main__":
    main()
