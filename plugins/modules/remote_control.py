#!/usr/bin/python
# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: remote_control
short_description: Give a specialist remote control of the logged-on user's desktop while the session is authorized
version_added: 0.1.0
description:
  - Hands a specialist what they need to join the desktop of the user logged on at a Windows device with Remote
    Desktop shadowing (C(mstsc /shadow)), only while the device is active and its support session is authorized (see
    M(remote_support.windows.support_session)).
  - O(state=started) asks the session's state machine first; when remote control may not start, the task fails with
    the session's state and what to do. Otherwise it finds the user's active session on the device, grants the
    specialist's Windows account (O(account)) the Remote Control permission on the device's RDP-Tcp listener for this
    authorization only, and sets the device's remote-control policy (C(Shadow)) to match O(mode) and the device's
    client-confirmation policy. It returns the C(mstsc) command line and an C(.rdp) file.
  - The grant ends on the device itself when the authorization expires, even if no controller ever comes back (a
    one-shot task at the session's C(expires_at)). Everything the grant changed is put back as it was.
  - With the client-confirmation policy on, the user is asked to allow each connection (the command line never has
    C(/noConsentPrompt)); with it off, the connection needs no permission.
  - O(state=stopped) closes open shadow connections, removes the grant and puts the listener and the policy back.
    Idempotent.
  - Starting and stopping are written to the device's Application event log (source C(RemoteSupport.Windows), events
    1020, 1021, and 1022 when the device ends a grant by itself).
  - Runs on the controller (action plugin).
options:
  state:
    description:
      - V(started) grants remote control (or keeps a grant that is already as asked), V(stopped) ends it.
    type: str
    default: started
    choices: [started, stopped]
  mode:
    description:
      - V(control) lets the specialist use keyboard and mouse, V(view) only lets them watch.
      - The device's support policy (C(remote_control_mode), see M(remote_support.windows.support_policy)) has the
        last word, a device whose policy allows view only refuses V(control), and one whose policy is C(none) refuses
        both.
    type: str
    default: control
    choices: [control, view]
  account:
    description:
      - The specialist's Windows account that will connect, as C(DOMAIN\\name) or C(name@dns.domain). Only this
        account gets the right to shadow the session, and only for this authorization.
      - It must resolve on the device to one user account. A group (C(CONTOSO\\Helpdesk), C(CONTOSO\\Domain Users)),
        a local group such as C(BUILTIN\\Administrators), a well-known principal such as C(Everyone), a computer
        account or a built-in account such as C(Administrator) or C(Guest) is refused (RV(refused_reason)
        C(account_not_a_user) or C(account_built_in)).
      - The grant, the audit entry and the connection file name the account as Windows does (C(DOMAIN\\name)).
      - Required with O(state=started).
    type: str
  target_user:
    description:
      - Whose desktop to join, as C(DOMAIN\\name), when several users have active sessions (a server).
      - When the session was authorized with the client's confirmation, only the desktop of the user who accepted may
        be joined; naming anyone else fails.
    type: str
  connect_host:
    description:
      - The host name or address the specialist's workstation reaches the device by, for the command line and the
        C(.rdp) file. Defaults to the host the WinRM connection uses.
    type: str
attributes:
  check_mode:
    support: full
    description: Reports whether the grant would change, and the connection it would give, without changing the device.
  diff_mode:
    support: none
    description: The returned grant shows the state.
extends_documentation_fragment:
  - remote_support.windows.winrm
  - remote_support.windows.device_task
  - remote_support.windows.device_task.idle_after
  - remote_support.windows.device_task.requested_by
notes:
  - The device needs Remote Desktop enabled and the Windows Firewall rule C(Remote Desktop - Shadow (TCP-In)) enabled;
    Home editions have no Remote Desktop host. Each of these, and nobody being logged on, fails with a message that says
    what to change.
  - The specialist connects from a Windows workstation with the account given in O(account); C(mstsc) uses the
    credentials of whoever is logged on there unless told to prompt.
  - The grant adds the account to the RDP-Tcp listener with the smallest preset Windows offers (logon) plus Remote
    Control; logging on to the device through Remote Desktop still needs the usual user rights, which are not changed.
  - A domain Group Policy that sets C(Set rules for remote control of Remote Desktop Services user sessions) overrides
    the value the module writes at its next refresh.
  - Deauthorizing the support session ends remote control too.
seealso:
  - module: remote_support.windows.support_session
  - module: remote_support.windows.support_policy
  - module: remote_support.windows.device_info
"""

EXAMPLES = r"""
- name: Authorize the session first (the user accepts)
  remote_support.windows.support_session:
    state: authorized
    reason: "INC-4711: Outlook crashes on start"

- name: Give CONTOSO\jdoe remote control of the user's desktop
  remote_support.windows.remote_control:
    state: started
    account: CONTOSO\jdoe
  register: remote

- name: Tell the specialist how to connect
  ansible.builtin.debug:
    msg: >-
      Run {{ remote.mstsc_command }}
      (the user {{ 'will' if remote.user_will_be_prompted else 'will not' }} be asked)

- name: Save the .rdp file for them
  delegate_to: localhost
  ansible.builtin.copy:
    content: "{{ remote.rdp_file }}"
    dest: "/srv/handover/{{ remote.rdp_file_name }}"
    mode: "0600"

- name: Only watch, on a server where several users are logged on
  remote_support.windows.remote_control:
    state: started
    mode: view
    account: CONTOSO\jdoe
    target_user: CONTOSO\maria.silva

- name: End remote control (the session stays authorized)
  remote_support.windows.remote_control:
    state: stopped
"""

RETURN = r"""
state:
  description: The support session's state as the state machine sees it (C(authorized) when remote control started).
  returned: with O(state=started), when the device was read
  type: str
  sample: authorized
allowed_actions:
  description: The actions the support session allows now.
  returned: with O(state=started), when the device was read
  type: list
  elements: str
  sample: [remote_control, file_transfer, request_authorization, deauthorize]
support_session_id:
  description: The support session the grant belongs to.
  returned: when remote control started
  type: str
mode:
  description: C(control) or C(view).
  returned: when remote control started
  type: str
interactive_user:
  description: The user whose desktop is joined.
  returned: when remote control started
  type: str
  sample: CONTOSO\\maria.silva
interactive_session_id:
  description: That user's Windows session id, the number for C(mstsc /shadow:).
  returned: when remote control started
  type: int
  sample: 1
user_will_be_prompted:
  description: Whether the user is asked to allow the connection (the device's client-confirmation policy).
  returned: when remote control started
  type: bool
  sample: true
mstsc_command:
  description: The command the specialist runs on their Windows workstation.
  returned: when remote control started
  type: str
  sample: mstsc.exe /v:10.20.0.15 /shadow:1 /control
mstsc_arguments:
  description: The same command's arguments, one per element.
  returned: when remote control started
  type: list
  elements: str
  sample: ["/v:10.20.0.15", "/shadow:1", "/control"]
rdp_file:
  description:
    - The content of an C(.rdp) file with the connection's settings (address, account). A connection file cannot ask
      for a shadow connection, so it is opened with the shadow switches, see RV(rdp_file_command).
  returned: when remote control started
  type: str
rdp_file_name:
  description: A name to save RV(rdp_file) under.
  returned: when remote control started
  type: str
  sample: DESKTOP-AGDRQBJ-remote-control.rdp
rdp_file_command:
  description: The command that opens the saved file as a shadow connection.
  returned: when remote control started
  type: str
  sample: mstsc.exe DESKTOP-AGDRQBJ-remote-control.rdp /shadow:1 /control
expires_at:
  description: When the grant ends on the device (the authorization's expiry, device clock, ISO 8601 UTC).
  returned: when remote control started
  type: str
remaining_seconds:
  description: Seconds until then.
  returned: when remote control started
  type: int
grant:
  description: The grant as recorded on the device (C(HKLM:\SOFTWARE\RemoteSupport\RemoteControl)); with
    O(state=stopped), the grant that was ended, or null.
  returned: when the device answered
  type: dict
  contains:
    support_session_id:
      description: The support session it belongs to.
      type: str
    account:
      description: The specialist's account that may shadow.
      type: str
    account_sid:
      description: Its SID.
      type: str
    mode:
      description: C(control) or C(view).
      type: str
    user:
      description: Whose session.
      type: str
    interactive_session_id:
      description: Their Windows session id.
      type: int
    user_prompted:
      description: Whether the user is asked to allow each connection.
      type: bool
    shadow_policy:
      description: The C(Shadow) policy value set (1 control with permission, 2 without, 3 view with permission,
        4 without).
      type: int
    granted_by:
      description: Who asked.
      type: str
    granted_at:
      description: When.
      type: str
    expires_at:
      description: When it ends.
      type: str
remote_control_mode:
  description: The device's support policy for remote control, C(control) (control or view), C(view) or C(none).
  returned: with O(state=started), when the start script ran
  type: str
remote_desktop:
  description: Remote Desktop on the device, as read when starting.
  returned: with O(state=started), when the start script ran
  type: dict
  contains:
    enabled:
      description: Remote Desktop connections are allowed.
      type: bool
    enabled_source:
      description: C(policy), C(local) or C(default), where that came from.
      type: str
    port:
      description: The RDP listener's port.
      type: int
    edition:
      description: The Windows edition.
      type: str
    server:
      description: A server edition.
      type: bool
    shadow_firewall_rule_enabled:
      description: The firewall rule C(Remote Desktop - Shadow (TCP-In)) is enabled.
      type: bool
    sessions:
      description: The active sessions with a user (C(user), C(session_id), C(station), C(console)).
      type: list
      elements: dict
refused_reason:
  description:
    - Why the device refused, when it did, one of C(session_changed), C(mode_not_allowed), C(edition_unsupported),
      C(rdp_disabled), C(shadow_firewall_rule_disabled), C(no_interactive_user), C(user_not_logged_on),
      C(several_users), C(account_unknown), C(account_not_a_user), C(account_built_in), C(listener_entry_conflict),
      C(granted_to_another_account). RV(msg) says
      what to do.
  returned: when the device refused
  type: str
shadow_connections_ended:
  description: Open shadow connections that were closed.
  returned: with O(state=stopped)
  type: int
listener_entry_removed:
  description: The account's entry on the RDP-Tcp listener was removed.
  returned: with O(state=stopped)
  type: bool
shadow_policy_restored:
  description: The C(Shadow) policy value was put back as it was before the grant.
  returned: with O(state=stopped)
  type: bool
device_time:
  description: The device's clock.
  returned: when the device answered
  type: str
device_status:
  description: C(active), C(idle) or C(unreachable), as M(remote_support.windows.device_info) reports it.
  returned: with O(state=started), or when the device could not be reached
  type: str
connection:
  description: Whether the WinRM connection worked, and if not why (see M(remote_support.windows.device_info)).
  returned: with O(state=started), or when the device could not be reached
  type: dict
msg:
  description: What happened, or why remote control could not start and what to do.
  returned: always
  type: str
  sample: >-
    Granted CONTOSO\\jdoe remote control (control) of the desktop of CONTOSO\\maria.silva (session 1) until
    2026-11-24T11:00:03Z; the user is asked to allow the connection
"""

from ansible_collections.remote_support.windows.plugins.module_utils import controller_only, remote_control


def main() -> None:
    controller_only.main("remote_control", remote_control.ARGUMENT_SPEC, remote_control.REQUIRED_IF)


if __name__ == "__main__":
    main()
