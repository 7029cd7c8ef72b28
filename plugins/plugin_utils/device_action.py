# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one base every action plugin of the collection uses: options in, WinRM settings resolved, client out.

Each module runs on the controller as an action plugin (no module is shipped to the device): that is about twelve
times cheaper per host than executing a Python module locally, and the device is reached through the collection's
own WinRM client. Connection settings come from the host's usual inventory variables, each overridable by a task
option of the same meaning (see the remote_support.windows.winrm doc fragment).
"""

from __future__ import annotations

import datetime
import typing as t

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.remote_support.windows.plugins.module_utils.errors import SettingsError
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_client import (
    HAS_WINRM,
    WINRM_ARGUMENT_SPEC,
    WINRM_HOST_VARIABLES,
    WinRMClient,
    WinRMSettings,
    resolve_settings,
)


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class DeviceAction(ActionBase):
    """Subclasses set ARGUMENT_SPEC (their own options) and implement run_on_device()."""

    ARGUMENT_SPEC: dict[str, dict[str, t.Any]] = {}
    REQUIRED_IF: list[tuple[t.Any, ...]] = []
    TRANSFERS_FILES = False
    # The device is reached through WinRMClient, never through the task's connection plugin.
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp: t.Any = None, task_vars: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
        result = super().run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        if not HAS_WINRM:
            raise AnsibleActionFail("remote_support.windows needs the Python library pywinrm on the controller: "
                                    "pip install pywinrm")
        spec = dict(WINRM_ARGUMENT_SPEC)
        spec.update(self.ARGUMENT_SPEC)
        _validation, args = self.validate_argument_spec(argument_spec=spec, required_if=self.REQUIRED_IF)
        settings = self.winrm_settings(args, task_vars)
        result.update(self.run_on_device(WinRMClient(settings), args, task_vars))
        result.setdefault("changed", False)
        return result

    def winrm_settings(self, args: dict[str, t.Any], task_vars: t.Mapping[str, t.Any],
                       template: t.Callable[[t.Any], t.Any] | None = None) -> WinRMSettings:
        """Task options first, then the host's inventory variables (templated), then safe defaults.

        `template` renders one variable; by default this task's templar, which knows the task's own host. A task
        serving many hosts passes each host's `hostvars` entry, which renders its variables itself.
        """
        template = template or self._templar.template
        host_vars: dict[str, t.Any] = {}
        for variables in WINRM_HOST_VARIABLES.values():
            for name in variables:
                if name in task_vars:
                    host_vars[name] = template(task_vars[name])
        options = {name: args.get(name) for name in WINRM_ARGUMENT_SPEC}
        try:
            return resolve_settings(options, host_vars, task_vars.get("inventory_hostname", ""))
        except SettingsError as error:
            raise AnsibleActionFail(f"Connection settings for this host are not usable: {error}") from None

    def run_on_device(self, client: WinRMClient, args: dict[str, t.Any],
                      task_vars: dict[str, t.Any]) -> dict[str, t.Any]:
        raise NotImplementedError
