# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for remote_support.windows.support_session: request, end or read a device's support session."""

from __future__ import annotations

import time
import typing as t

from ansible_collections.remote_support.windows.plugins.module_utils import session_gate, support_session
from ansible_collections.remote_support.windows.plugins.plugin_utils.device_action import DeviceAction, utc_now


class ActionModule(DeviceAction):
    ARGUMENT_SPEC = support_session.ARGUMENT_SPEC
    REQUIRED_IF = support_session.REQUIRED_IF

    def run_on_device(self, client: t.Any, args: dict[str, t.Any], task_vars: dict[str, t.Any]) -> dict[str, t.Any]:
        for name in ("wait_timeout", "poll_interval"):
            if args[name] <= 0:
                return {"failed": True, "msg": f"{name} is {args[name]}; it must be a positive number of seconds"}
        if args["renew_before"] < 0:
            return {"failed": True, "msg": f"renew_before is {args['renew_before']}; it must be 0 or more seconds"}
        args = dict(args, requested_by=session_gate.requester(args["requested_by"], client.settings),
                    reason=args["reason"] or "")
        return support_session.run(client, args, check_mode=bool(self._task.check_mode), controller_now=utc_now,
                                   monotonic=time.monotonic)
