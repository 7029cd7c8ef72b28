# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # What every module of the collection shares: its authors, and where it runs (on the controller, through its
    # action plugin, against Windows devices over WinRM).
    DOCUMENTATION = r"""
author:
  - Remote support maintainers (@remote-support)
attributes:
  platform:
    support: full
    platforms: windows
    description: Targets Windows devices over WinRM; runs on the controller.
"""

    # For the modules that act inside a support session (with the fragment above): they refuse an idle device.
    # ansible-test sanity (validate-modules) compares this default with each module's argument spec
    # (device_info.DEFAULT_IDLE_AFTER).
    IDLE_AFTER = r"""
options:
  idle_after:
    description: A device whose agent last checked in more than this many seconds ago is idle, and cannot be supported.
    type: int
    default: 900
"""

    # Who asks, for the modules that write it to the device's audit log. The default is the account that
    # authenticates to the device (session_gate.requester), so the person at the device sees a name they can place.
    REQUESTED_BY = r"""
options:
  requested_by:
    description:
      - Who asks, as the requester gives it, written to the device's audit log.
      - Defaults to the user name the controller authenticates to the device with (O(user), C(ansible_user)),
        never the controller's own login name.
    type: str
"""
