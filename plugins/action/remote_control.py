# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for remote_support.windows.remote_control: start or stop a specialist's remote control (Remote
Desktop shadowing) of the logged-on user's desktop, only while the support session is authorized."""

from __future__ import annotations

import typing as t

from ansible_collections.remote_support.windows.plugins.module_utils import remote_control, session_gate
from ansible_collections.remote_support.windows.plugins.plugin_utils.device_action import DeviceAction, utc_now


class ActionModule(DeviceAction):
    ARGUMENT_SPEC = remote_control.ARGUMENT_SPEC
    REQUIRED_IF = remote_control.REQUIRED_IF

    def run_on_device(self, client: t.Any, args: dict[str, t.Any], task_vars: dict[str, t.Any]) -> dict[str, t.Any]:
        args = dict(args, requested_by=session_gate.requester(args["requested_by"], client.settings))
        return remote_control.run(client, args, check_mode=bool(self._task.check_mode), controller_now=utc_now)
