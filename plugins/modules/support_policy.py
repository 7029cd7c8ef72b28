#!/usr/bin/python
# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: support_policy
short_description: Read or set the support policy of a Windows device (client confirmation, TTL, remote control, transfers)
version_added: 0.1.0
description:
  - Reads and sets the device-side support policy that every support action obeys, kept in the registry under
    C(HKLM:\SOFTWARE\RemoteSupport\Policy) so that every controller (and AWX) sees the same policy.
  - Whether the client must confirm a session, how long they have to answer, how long an authorization lasts, which
    remote-control mode is allowed, and which folders and file sizes file transfers may use.
  - Sets the matching Windows setting, the Remote Desktop shadow rule
    (C(HKLM:\SOFTWARE\Policies\Microsoft\Windows NT\Terminal Services) value C(Shadow)), from the remote-control mode
    and the confirmation rule, unless O(manage_shadow_policy=false).
  - Only the options given are enforced; the others are left as they are on the device. Only values that differ (in
    data or registry kind) are written, so RV(changed) is exact and a second run changes nothing.
  - Every change is stamped on the device (C(ChangedBy), C(ChangedAt)) and written to the Application event log
    (source C(RemoteSupport.Windows), event 1040).
  - The value names, defaults and bounds are in the collection's docs/support-policy.md.
  - Runs on the controller (action plugin).
options:
  state:
    description:
      - V(present) sets the options given; V(query) only reads the policy.
    type: str
    choices: [present, query]
    default: present
  confirmation_required:
    description:
      - Whether the person at the device must accept before a support session is authorized (C(ConfirmationRequired)).
      - Also decides whether remote control asks the user's permission (the shadow rule).
    type: bool
  confirmation_timeout:
    description:
      - Seconds the client has to answer a consent prompt before the request times out (C(ConfirmationTimeoutSeconds)).
      - 10 to 3600.
    type: int
  session_ttl:
    description:
      - Seconds an authorization lasts before it expires on the device (C(SessionTtlSeconds)). The product's default
        is 3600.
      - 60 to 28800.
    type: int
  remote_control_mode:
    description:
      - Which remote control an authorized session may start (C(RemoteControlMode)).
      - V(control) allows control and view, V(view) only viewing, V(none) no remote control.
    type: str
    choices: [control, view, none]
  file_transfer_allowed_roots:
    description:
      - The folders file transfers may read from and write to, with everything below them (C(FileTransferAllowedRoots)).
      - Absolute Windows paths (C(C:\folder) or C(\\server\share\folder)), at most 32, each at most 248 characters.
        Forward slashes become backslashes, the drive letter upper case, a trailing backslash is dropped and
        duplicates are left out.
      - An empty list allows no folder, which turns file transfer off.
    type: list
    elements: str
  file_transfer_max_size:
    description:
      - The largest file, in bytes, a transfer may move (C(FileTransferMaxSizeBytes)).
      - 1 to 1099511627776 (1 TiB).
    type: int
  manage_shadow_policy:
    description:
      - Set the Remote Desktop shadow rule to match the remote-control mode and the confirmation rule
        (0 none, 1 control with permission, 2 control without, 3 view with permission, 4 view without).
      - Set V(false) where a domain Group Policy sets this rule; the GPO would put its own value back at the next
        refresh.
    type: bool
    default: true
  changed_by:
    description:
      - Who changes the policy, stamped on the device and written to the audit log; by default the account the
        controller authenticates to the device with, as for O(remote_support.windows.support_session#module:requested_by).
    type: str
attributes:
  check_mode:
    support: full
    description: Reads the device and reports what would change (RV(changes), and the diff) without writing.
  diff_mode:
    support: full
    description: The policy before and after, as every reader sees it, with the shadow rule.
extends_documentation_fragment: [remote_support.windows.winrm, remote_support.windows.device_task]
notes:
  - Where a value is absent, unreadable or out of range, every reader uses the default, the module reports it the
    same way in RV(policy), confirmation required, 300 s to answer, 3600 s TTL, remote control V(control), transfers
    under C(C:\Users) up to 4 GiB.
  - Use the C(remote_support.windows.client_confirmation) role to enforce the whole policy on a fleet.
seealso:
  - module: remote_support.windows.support_session
  - module: remote_support.windows.support_agent
"""

EXAMPLES = r"""
- name: Sessions need the client's consent; they last one hour
  remote_support.windows.support_policy:
    confirmation_required: true
    confirmation_timeout: 120
    session_ttl: 3600

- name: Kiosks, no one to ask; view only
  remote_support.windows.support_policy:
    confirmation_required: false
    remote_control_mode: view

- name: Transfers only to and from the public documents and a support share, up to 500 MB
  remote_support.windows.support_policy:
    file_transfer_allowed_roots:
      - C:\Users\Public\Documents
      - \\fileserver\support
    file_transfer_max_size: 500000000

- name: Read the policy
  remote_support.windows.support_policy:
    state: query
  register: device_policy
"""

RETURN = r"""
changed:
  description: Whether any value was (or in check mode would be) written.
  returned: always
  type: bool
changes:
  description: The policy fields that were (or would be) changed, among C(confirmation_required),
    C(confirmation_timeout_seconds), C(session_ttl_seconds), C(remote_control_mode), C(file_transfer_allowed_roots),
    C(file_transfer_max_size_bytes) and C(shadow).
  returned: when the device was read
  type: list
  elements: str
  sample: [confirmation_required, shadow]
policy:
  description: The policy as every reader sees it now (in check mode, as it still is), with defaults where the device
    sets nothing usable.
  returned: when the device was read
  type: dict
  contains:
    confirmation_required:
      description: Whether the client must accept a session.
      type: bool
    confirmation_timeout_seconds:
      description: Seconds the client has to answer.
      type: int
    session_ttl_seconds:
      description: Seconds an authorization lasts.
      type: int
    remote_control_mode:
      description: C(control), C(view) or C(none).
      type: str
    remote_control_allowed:
      description: The remote-control modes a session may start, from the mode.
      type: list
      elements: str
    file_transfer_allowed_roots:
      description: Folders file transfers may use.
      type: list
      elements: str
    file_transfer_max_size_bytes:
      description: Largest file a transfer may move.
      type: int
    source:
      description: C(device) when the device has a policy key, C(default) when it has none.
      type: str
    changed_by:
      description: Who last changed the policy through this module; null when nobody has.
      type: str
    changed_at:
      description: When (device clock, ISO 8601 UTC).
      type: str
  sample:
    confirmation_required: true
    confirmation_timeout_seconds: 300
    session_ttl_seconds: 3600
    remote_control_mode: control
    remote_control_allowed: [control, view]
    file_transfer_allowed_roots: ['C:\Users']
    file_transfer_max_size_bytes: 4294967296
    source: device
shadow_policy:
  description: The Remote Desktop shadow rule on the device.
  returned: when the device was read
  type: dict
  contains:
    value:
      description: The stored value, 0 to 4; null when absent.
      type: int
    effective:
      description: What Windows applies (1 where the value is absent or not one of 0 to 4).
      type: int
    meaning:
      description: The effective rule in words.
      type: str
    managed:
      description: Whether this task manages it (O(manage_shadow_policy)).
      type: bool
  sample: {value: 1, effective: 1, meaning: "full control with the user's permission", managed: true}
device_time:
  description: The device's clock when it was read or written.
  returned: when the device was read
  type: str
device_status:
  description: C(reachable) when the device answered, C(unreachable) otherwise.
  returned: when the device was contacted
  type: str
connection:
  description: Whether the WinRM connection worked, and if not why (see M(remote_support.windows.device_info)).
  returned: when the device was contacted
  type: dict
msg:
  description: What happened, or why it could not.
  returned: always
  type: str
  sample: "Changed: confirmation_required, shadow"
"""

from ansible_collections.remote_support.windows.plugins.module_utils import controller_only, support_policy


def main() -> None:
    controller_only.main("support_policy", support_policy.ARGUMENT_SPEC)


if __name__ == "__main__":
    main()
