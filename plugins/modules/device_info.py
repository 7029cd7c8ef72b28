#!/usr/bin/python
# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: device_info
short_description: Tell whether a Windows device can be supported right now, and what it is
version_added: 0.1.0
description:
  - Connects to the device over WinRM and reads the six basic facts a support session shows (name, serial number,
    last activity, operating system, model, device type).
  - Reports the device's O(idle_after)-based status, C(active), C(idle) or C(unreachable). A support session can be
    authorized only when the status is C(active); otherwise RV(msg) is C(Unable to connect to the device).
  - Does not fail on an idle or unreachable device unless O(require_active=true), so one task can survey a fleet.
  - Runs on the controller (action plugin); read-only, so check mode runs it for real.
options:
  idle_after:
    description:
      - A device whose agent last checked in more than this many seconds ago (by the device's own clock) is C(idle).
    type: int
    default: 900
  require_active:
    description:
      - Fail the task when the device is not C(active).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Read-only; in check mode the device is probed for real.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to diff.
extends_documentation_fragment: [remote_support.windows.winrm, remote_support.windows.device_task]
seealso:
  - module: ansible.windows.win_ping
"""

EXAMPLES = r"""
- name: Survey which devices can be supported now
  remote_support.windows.device_info:
  register: support_check

- name: Show the ones that cannot
  ansible.builtin.debug:
    msg: "{{ inventory_hostname }}: {{ support_check.status }} ({{ support_check.connection.reason | default('agent', true) }})"
  when: support_check.status != 'active'

- name: Stop here unless the device is active (agent seen within 5 minutes)
  remote_support.windows.device_info:
    idle_after: 300
    require_active: true

- name: Use a different CA bundle than the inventory names, keeping validation on
  remote_support.windows.device_info:
    ca_trust_path: /etc/pki/remote-support/ca.pem
"""

RETURN = r"""
status:
  description:
    - C(active) when the connection is valid and the agent checked in within O(idle_after) seconds.
    - C(idle) when the connection is valid but the check-in is older or absent.
    - C(unreachable) when no valid connection could be made (see RV(connection)).
  returned: always
  type: str
  sample: active
connection:
  description: Whether the WinRM connection worked, and if not why.
  returned: always
  type: dict
  contains:
    valid:
      description: The device was reached, authenticated and ran the facts script.
      type: bool
      sample: true
    reason:
      description: Why not; one of C(dns), C(refused), C(timeout), C(tls), C(auth), C(protocol), C(quota), C(script).
      type: str
      sample: tls
    message:
      description: What happened and what to check.
      type: str
      sample: The certificate presented by 10.0.0.5:5986 could not be verified (...). Check ansible_winrm_ca_trust_path ...
device:
  description: The six facts a support session shows. Every key is present; values are null when unreachable.
  returned: always
  type: dict
  contains:
    name:
      description: Computer name.
      type: str
      sample: DESK-0001
    serial_number:
      description: BIOS serial number.
      type: str
      sample: 5CG1234XYZ
    last_activity:
      description: Last agent check-in, ISO 8601 UTC; null when the agent never checked in.
      type: str
      sample: "2026-11-24T10:15:00Z"
    operating_system:
      description: Operating system caption.
      type: str
      sample: Microsoft Windows 11 Pro
    os_version:
      description: Operating system version.
      type: str
      sample: 10.0.22631
    model:
      description: Device model.
      type: str
      sample: OptiPlex 7010
    device_type:
      description: C(desktop), C(laptop) or C(server).
      type: str
      sample: desktop
device_time:
  description: The device's clock (UTC) when it answered.
  returned: when the device answered
  type: str
  sample: "2026-11-24T10:15:42Z"
clock_skew_seconds:
  description: Device clock minus controller clock, in seconds. The device's clock decides activity; this only reports.
  returned: when the device answered
  type: int
  sample: 2
checkin_age_seconds:
  description: Seconds between the last check-in and the device's clock.
  returned: when the agent has checked in
  type: int
  sample: 42
msg:
  description: C(Unable to connect to the device) whenever a support session could not be authorized now.
  returned: when the status is not active
  type: str
  sample: Unable to connect to the device
detail:
  description: Why an answering device is idle, and what to check.
  returned: when the status is idle
  type: str
"""

from ansible_collections.remote_support.windows.plugins.module_utils import controller_only, device_info


def main() -> None:
    controller_only.main("device_info", device_info.ARGUMENT_SPEC)


if __name__ == "__main__":
    main()
