# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for remote_support.windows.file_transfer: move one file between the controller and a device inside
an authorized support session."""

from __future__ import annotations

import socket
import time
import typing as t

from ansible.utils.display import Display

from ansible_collections.remote_support.windows.plugins.module_utils import device_info, file_transfer, session_gate
from ansible_collections.remote_support.windows.plugins.plugin_utils.device_action import DeviceAction, utc_now

display = Display()


class ActionModule(DeviceAction):
    ARGUMENT_SPEC = file_transfer.ARGUMENT_SPEC

    def run_on_device(self, client: t.Any, args: dict[str, t.Any], task_vars: dict[str, t.Any]) -> dict[str, t.Any]:
        problem = device_info.idle_after_problem(args["idle_after"])
        if problem:
            return {"failed": True, "changed": False, "msg": f"{file_transfer.failure_words(args['direction'])}: {problem}",
                    "error_code": "invalid_option"}
        refused = file_transfer.option_error(args)  # before any path is looked at, here or on the device
        if refused is not None:
            return {"failed": True, "changed": False, "error_code": "invalid_option",
                    "msg": f"{file_transfer.failure_words(args['direction'])}: {refused}"}
        options = dict(args, requested_by=session_gate.requester(args["requested_by"], client.settings))
        if args["direction"] == "to_device":
            options["src"] = self.local_source(args["src"])
        host = task_vars.get("inventory_hostname", "")

        def progress(line: str) -> None:
            display.v(line, host=host)

        return file_transfer.run(client, options, check_mode=bool(self._task.check_mode),
                                 diff=bool(self._task.diff), controller_now=utc_now, monotonic=time.monotonic,
                                 progress=progress, controller_host=socket.gethostname())
