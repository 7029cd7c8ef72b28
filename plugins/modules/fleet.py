#!/usr/bin/python
# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: fleet
short_description: Serve many Windows devices from one task, each through the collection's own per-device core
version_added: 0.2.0
description:
  - Runs one of the collection's device actions on every device of O(hosts) from a single task on the controller,
    at most O(concurrency) devices at once (threads), and returns each device's result keyed by its inventory name.
  - Meant for fleet-wide playbooks with C(run_once=true). Ansible's per-host worker costs more controller CPU than
    a device probe itself; one task serving the whole play costs a fraction of that per device.
  - Each device's connection settings come from its own host variables (C(ansible_host), C(ansible_user),
    C(ansible_password), C(ansible_winrm_*)), rendered for that host, exactly as the per-host modules resolve them.
    Connection options given in O(options) apply to every device.
  - A device that fails (unreachable, refused, bad settings, an unexpected error) fails alone; its result names why
    and the task goes on with the others. The task itself fails only for invalid options.
  - O(action=device_info), O(action=support_session) and O(action=file_transfer) do per device what the module of
    that name does, with the same options and the same result.
  - O(action=support) is one support visit per device, from request to end; see O(options).
  - Prints a progress line (done / of N) as devices finish.
options:
  action:
    description:
      - What to do on each device.
      - C(device_info), C(support_session), C(file_transfer) take the options of the module of that name in
        O(options) and return its result per device.
      - C(support) requests authorization and waits for the client's consent, then (when authorized) pushes
        C(push) and collects C(collect), then ends the session it opened unless
        C(end_session=false). Each device's result has an RV(results.status).
    type: str
    required: true
    choices: [device_info, support_session, file_transfer, support]
  options:
    description:
      - The options of O(action), the same for every device, checked once before any device is touched.
      - For C(device_info), C(support_session), C(file_transfer), the options of those modules, and any of the
        connection options of the remote_support.windows.winrm documentation fragment.
      - "For C(support): C(reason) (required, shown to the user), C(requested_by) (default: the controller's user),
        C(wait_timeout) (seconds to wait for each client's answer, default 300), C(poll_interval) (default 1),
        C(idle_after) (default 900), C(push) (C(src) on the controller, C(dest) on the device), C(collect) (C(src)
        on the device, C(dest) a folder on the controller: the file lands in C(dest/<inventory_hostname>/)),
        C(end_session) (default true)."
      - A session is ended only when this task requested or renewed it, or it was requested by the same
        C(requested_by); a session someone else opened is left as it is.
    type: dict
    default: {}
  hosts:
    description:
      - Inventory names of the devices to serve.
      - Defaults to the hosts of the current play batch (C(ansible_play_batch)), which respects C(--limit).
    type: list
    elements: str
  concurrency:
    description:
      - How many devices are served at once. For O(action=support) this is also the most consent prompts open at
        once.
    type: int
    default: 50
  journal:
    description:
      - A file on the controller to which one JSON line per device (C(host), C(action), C(result)) is appended and
        flushed as soon as that device is finished, so a run that is interrupted leaves a record of what it did.
    type: path
  report:
    description:
      - C(support) only. Build the run's report from the devices served before (O(report.earlier)) and now, write it
        to O(report.dir) as C(report.json) (one record per device, the records described under RV(results)) and
        C(report.csv) (the same rows, every field quoted, free text a spreadsheet would run as a formula kept as
        text), and return it as RV(report). Each file is replaced whole; in check mode nothing is written.
    type: dict
    suboptions:
      dir:
        description: The folder on the controller to write the two files to (made, mode 0750, when missing).
        type: path
        required: true
      earlier:
        description:
          - The records of devices served by earlier runs, keyed by inventory name, as this task returned them
            (a rerun reads them from its journal). A device served now replaces its earlier record.
        type: dict
        default: {}
  progress_every:
    description:
      - Print a progress line every this many devices. V(0) prints about twenty lines per run.
    type: int
    default: 0
notes:
  - Use it with C(run_once=true); the registered result then holds every device's result, available to every
    host of the play, e.g. C(fleet_result.results[inventory_hostname]).
  - Secrets in host variables are used to connect and never returned.
attributes:
  check_mode:
    support: full
    description: Each device's step runs in check mode as its own module does.
  diff_mode:
    support: none
    description: Results carry no diff.
extends_documentation_fragment: [remote_support.windows.device_task]
seealso:
  - module: remote_support.windows.device_info
  - module: remote_support.windows.support_session
  - module: remote_support.windows.file_transfer
"""

EXAMPLES = r"""
- name: Probe every device of the play from one task
  remote_support.windows.fleet:
    action: device_info
    options:
      idle_after: 900
  run_once: true
  register: survey

- name: Show one device's result
  ansible.builtin.debug:
    msg: "{{ survey.results[inventory_hostname].status }}"

- name: Read the session of the devices that were active
  remote_support.windows.fleet:
    action: support_session
    hosts: "{{ survey.results | dict2items | selectattr('value.status', 'equalto', 'active') | map(attribute='key') }}"
    options:
      state: query
  run_once: true
  register: sessions

- name: Ask every user to accept, push a tool, collect its log, end the session (at most 100 prompts open)
  remote_support.windows.fleet:
    action: support
    concurrency: 100
    journal: /var/lib/support/INC-4711/journal.jsonl
    report:
      dir: /var/lib/support/INC-4711
    options:
      reason: "INC-4711: collect the VPN client's log"
      wait_timeout: 600
      push:
        src: files/collect-vpn-log.ps1
        dest: C:\ProgramData\RemoteSupport\collect-vpn-log.ps1
      collect:
        src: C:\ProgramData\VPN\client.log
        dest: /var/lib/support/INC-4711/logs
      ca_trust_path: /etc/pki/remote-support/ca.pem
  run_once: true
  register: visit
"""

RETURN = r"""
results:
  description:
    - Each device's result, keyed by inventory name, in the order of O(hosts).
    - For C(device_info), C(support_session), C(file_transfer), what that module returns for the device
      (including C(failed) and C(msg)).
    - For C(support), the visit's record, described below.
  returned: always
  type: dict
  contains:
    status:
      description:
        - For C(device_info), the device's status. For C(support), the visit's outcome, one of C(done)
          (authorized, every transfer verified, session ended unless kept), C(denied), C(timed_out) (no answer
          in time; the prompt is withdrawn), C(idle), C(unreachable) or C(failed).
      type: str
      sample: done
    reason:
      description: C(support) only. What happened, in the words of the step that decided the outcome.
      type: str
    check:
      description: C(support) only. What to check or do when the outcome is not C(done).
      type: str
    session_id:
      description: C(support) only. The session's id on the device.
      type: str
    requested_at:
      description: C(support) only. When authorization was requested (device clock, UTC).
      type: str
    authorized_at:
      description: C(support) only. When the client accepted (device clock, UTC).
      type: str
    expires_at:
      description: C(support) only. When the authorization lapses (device clock, UTC).
      type: str
    ended_at:
      description: C(support) only. When this visit ended the session (device clock, UTC).
      type: str
    transfers:
      description:
        - C(support) only. One entry per transfer, with C(direction), C(src), C(dest), C(bytes), C(sha256) (verified
          at both ends), C(changed), C(result), C(error_code).
      type: list
      elements: dict
  sample:
    desk-0001: {status: active, connection: {valid: true, reason: null}}
    desk-0002: {status: unreachable, connection: {valid: false, reason: timeout}}
failed_hosts:
  description: Inventory names of the devices whose result has C(failed).
  returned: always
  type: list
  elements: str
counts:
  description:
    - How many devices had each status (C(support), C(device_info)), or were ok or failed (others).
  returned: always
  type: dict
  sample: {active: 180, idle: 12, unreachable: 8}
report:
  description: The report O(report) asked for.
  returned: when O(report) is given
  type: dict
  contains:
    records:
      description: Every device's record, earlier and now, sorted by inventory name.
      type: list
      elements: dict
    summary:
      description: Lines to print, one per device that is not done (what happened, what to check), then the totals.
      type: list
      elements: str
    counts:
      description: How many devices had each status; every status is named.
      type: dict
      sample: {done: 180, denied: 4, timed_out: 6, idle: 3, unreachable: 7, failed: 0}
    unhandled:
      description: Inventory names of the devices whose status is not C(done).
      type: list
      elements: str
    files:
      description: The paths of report.json and report.csv as written (none in check mode).
      type: list
      elements: str
msg:
  description: One line for the whole task.
  returned: always
  type: str
"""
