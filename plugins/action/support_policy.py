# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for remote_support.windows.support_policy: read or set a device's support policy."""

from __future__ import annotations

import typing as t

from ansible_collections.remote_support.windows.plugins.module_utils import session_gate, support_policy
from ansible_collections.remote_support.windows.plugins.plugin_utils.device_action import DeviceAction


class ActionModule(DeviceAction):
    ARGUMENT_SPEC = support_policy.ARGUMENT_SPEC

    def run_on_device(self, client: t.Any, args: dict[str, t.Any], task_vars: dict[str, t.Any]) -> dict[str, t.Any]:
        args = dict(args, changed_by=session_gate.requester(args["changed_by"], client.settings))
        return support_policy.run(client, args, check_mode=bool(self._task.check_mode),
                                  diff=bool(self._task.diff))
