# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for remote_support.windows.device_info: liveness and the six basic facts of one device."""

from __future__ import annotations

import typing as t

from ansible_collections.remote_support.windows.plugins.module_utils import device_info
from ansible_collections.remote_support.windows.plugins.plugin_utils.device_action import DeviceAction, utc_now


class ActionModule(DeviceAction):
    ARGUMENT_SPEC = device_info.ARGUMENT_SPEC

    def run_on_device(self, client: t.Any, args: dict[str, t.Any], task_vars: dict[str, t.Any]) -> dict[str, t.Any]:
        problem = device_info.idle_after_problem(args["idle_after"])
        if problem:
            return {"failed": True, "msg": problem}
        # Read-only, so check mode probes for real: the answer is the same either way.
        record = device_info.probe(client, args["idle_after"], utc_now)
        if args["require_active"] and record["status"] != "active":
            record["failed"] = True
        return record
