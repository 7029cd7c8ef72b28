# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for remote_support.windows.support_audit: the device's support audit trail, read back as sessions."""

from __future__ import annotations

import typing as t

from ansible_collections.remote_support.windows.plugins.module_utils import support_audit
from ansible_collections.remote_support.windows.plugins.plugin_utils.device_action import DeviceAction


class ActionModule(DeviceAction):
    ARGUMENT_SPEC = support_audit.ARGUMENT_SPEC

    def run_on_device(self, client: t.Any, args: dict[str, t.Any], task_vars: dict[str, t.Any]) -> dict[str, t.Any]:
        # Read-only: check mode reads for real, the answer is the same either way.
        return support_audit.run(client, args)
