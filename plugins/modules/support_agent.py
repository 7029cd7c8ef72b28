#!/usr/bin/python
# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: support_agent
short_description: Install, upgrade, keep in place or remove the support agent on a Windows device
version_added: 0.1.0
description:
  - Keeps the device-side pieces of remote support in place, the ones that work without any controller.
  - The check-in heartbeat, C(heartbeat.ps1) run every 60 s (and at startup) as SYSTEM by the scheduled task
    C(RemoteSupport-Heartbeat), writes C(HKLM:\SOFTWARE\RemoteSupport\Agent) C(LastCheckIn), which
    M(remote_support.windows.device_info) reads as the device's last activity.
  - The support session's task scripts C(consent_prompt), C(apply_consent) and C(expire_session), the same texts
    M(remote_support.windows.support_session) ships, run by the scheduled tasks of the consent route and the expiry.
  - All live in C(C:\ProgramData\RemoteSupport\scripts), locked down so that only SYSTEM and Administrators may change
    them.
  - Each script carries its version; the installed file is compared with the shipped one by SHA-256. A missing script
    is installed, an older one upgraded, an altered one repaired, an unchanged one left alone (RV(changed) false).
    A newer one on the device (installed by a newer collection) is kept unless O(allow_downgrade=true).
  - A heartbeat task that is missing, disabled or altered is registered again and started.
  - The heartbeat also notes the folders transfers to the device write into and, once a day, removes there the
    temporary files (C(~rs-*.partial)) that interrupted transfers left untouched for a day.
  - O(state=absent) removes everything the collection leaves on the device - the scheduled tasks C(RemoteSupport-*),
    C(C:\ProgramData\RemoteSupport), the registry key C(HKLM:\SOFTWARE\RemoteSupport) (agent, policy and session
    record), the transfer temporary files and the event source C(RemoteSupport.Windows) (after one last entry, id
    1042; the entries already written stay in the Application log). It refuses, changing nothing, while a support
    session is authorized or waiting for the client, while a remote-control grant is in place or while a transfer
    is registered; end those first with M(remote_support.windows.support_session) and
    M(remote_support.windows.remote_control). The Remote Desktop policy values M(remote_support.windows.support_policy)
    set are left as they are.
  - Runs on the controller (action plugin).
options:
  state:
    description:
      - V(present) installs, upgrades or repairs what differs; V(query) only reads and reports what differs;
        V(absent) removes the agent and everything else the collection left on the device.
    type: str
    choices: [present, absent, query]
    default: present
  allow_downgrade:
    description:
      - Replace a script that is newer on the device than the one this collection ships.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Reads the device and reports what would be installed, upgraded, repaired or removed, without writing.
  diff_mode:
    support: full
    description: Each script's version, the heartbeat task and the folder before and after.
extends_documentation_fragment: [remote_support.windows.winrm, remote_support.windows.device_task]
seealso:
  - module: remote_support.windows.device_info
  - module: remote_support.windows.support_policy
"""

EXAMPLES = r"""
- name: Install or upgrade the agent
  remote_support.windows.support_agent:

- name: Remove the agent and everything else the collection left on the device
  remote_support.windows.support_agent:
    state: absent

- name: Which devices run an agent other than this collection's?
  remote_support.windows.support_agent:
    state: query
  register: agent
"""

RETURN = r"""
changed:
  description: Whether anything was (or in check mode would be) installed, upgraded, repaired or registered.
  returned: always
  type: bool
changes:
  description: What was (or would be) done, one line per piece.
  returned: when changed
  type: list
  elements: str
  sample: ["heartbeat installed", "consent_prompt upgraded (1 -> 2)", "heartbeat task registered"]
removed:
  description: With O(state=absent), what was removed, one line a piece (empty in check mode and when refused).
  returned: with state=absent, when the device answered
  type: list
  elements: str
  sample: ["scheduled task RemoteSupport-Heartbeat", "folder C:\\ProgramData\\RemoteSupport"]
refused:
  description: With O(state=absent), why nothing was removed (C(session_active), C(remote_control_granted),
    C(transfer_running)).
  returned: when the removal was refused
  type: str
scripts:
  description: Per agent script, the version found, the version shipped, the version now, and the action.
  returned: when the device was read
  type: dict
  sample:
    heartbeat: {installed_version: null, shipped_version: 1, version: 1, action: installed}
    consent_prompt: {installed_version: 1, shipped_version: 1, version: 1, action: current}
heartbeat_task:
  description: The check-in task, whether it is registered, and its action (C(current), C(registered),
    C(repaired) or C(enabled)).
  returned: when the device was read
  type: dict
  sample: {name: RemoteSupport-Heartbeat, registered: true, action: current, interval_seconds: 60}
scripts_folder:
  description: Where the agent scripts live on the device.
  returned: when the device was read
  type: str
  sample: C:\ProgramData\RemoteSupport\scripts
last_checkin:
  description: The agent's last check-in (device clock, ISO 8601 UTC); null when it has never checked in.
  returned: when the device was read
  type: str
device_time:
  description: The device's clock.
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
  description: What happened.
  returned: always
  type: str
"""

from ansible_collections.remote_support.windows.plugins.module_utils import controller_only, support_agent


def main() -> None:
    controller_only.main("support_agent", support_agent.ARGUMENT_SPEC)


if __name__ == "__main__":
    main()
