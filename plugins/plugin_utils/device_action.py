# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one base every action plugin of the collection uses: options in, WinRM settings resolved, client out.

Each module runs on the controller as an action plugin (no module is shipped to the device): that is about twelve
times cheaper per host than executing a Python module locally, and the device is reached through the collection's
own WinRM client. Connection settings come from the host's usual inventory variables, each overridable by a task
option of the same meaning; the user and password come from the task, else from the play's connection (where -u,
--ask-pass and AWX machine credentials arrive), else from the inventory (see docs/connection-settings.md).
"""

from __future__ import annotations

import datetime
import os
import typing as t

from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.plugins.action import ActionBase

from ansible_collections.remote_support.windows.plugins.module_utils.errors import SettingsError
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_client import HAS_WINRM, WinRMClient
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_settings import (
    WINRM_ARGUMENT_SPEC,
    PSRP_HOST_VARIABLES,
    WINRM_HOST_VARIABLES,
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
                       template: t.Callable[[t.Any], t.Any] | None = None,
                       play: t.Mapping[str, t.Any] | None = None) -> WinRMSettings:
        """Task options first, then the play's connection user and password, then the host's inventory variables
        (templated), then safe defaults.

        `template` renders one variable; by default this task's templar, which knows the task's own host. A task
        serving many hosts passes each host's `hostvars` entry, which renders its variables itself, and the play's
        own credentials from `play_credentials()`.
        """
        template = template or self._templar.template
        host_vars: dict[str, t.Any] = {}
        for variables in (*WINRM_HOST_VARIABLES.values(), *PSRP_HOST_VARIABLES.values(), ("ansible_connection",)):
            for name in variables:
                if name in task_vars and name not in host_vars:
                    host_vars[name] = template(task_vars[name])
        options = {name: args.get(name) for name in WINRM_ARGUMENT_SPEC}
        if play is None:
            # Ansible has already resolved the play's connection user and password for this host: ansible_user and
            # ansible_password when the inventory sets them, else -u / --ask-pass (how AWX passes a machine
            # credential) or the play's remote_user. The play context is where --ask-pass's answer lives; it is
            # never a variable.
            play = {"user": self._play_context.remote_user, "password": self._play_context.password}
        else:
            # Another host served from this task: its own ansible_user / ansible_password win over the play's, as
            # Ansible's connection would resolve them for that host.
            play = {"user": host_vars.get("ansible_user") or play.get("user"),
                    "password": host_vars.get("ansible_password") or play.get("password")}
        try:
            return resolve_settings(options, host_vars, task_vars.get("inventory_hostname", ""), play)
        except SettingsError as error:
            raise AnsibleActionFail(f"Connection settings for this host are not usable: {error}") from None

    def play_credentials(self, task_vars: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
        """The play's own connection user and password (-u / --ask-pass, the play's remote_user), for a task that
        serves hosts other than its own. The play context was resolved for this task's host: where that host's
        inventory sets ansible_user or ansible_password, they replaced the play's value there, which is then not
        known here, and each other host must bring its own."""
        from_host = ("ansible_user" in task_vars, "ansible_password" in task_vars)
        return {"user": self._task.remote_user if from_host[0] else self._play_context.remote_user,
                "password": None if from_host[1] else self._play_context.password}

    def local_source(self, src: str) -> str:
        """A relative src is looked for as copy and template look for theirs: the role's or playbook's files/."""
        path = os.path.expanduser(src)
        if os.path.isabs(path):
            return path
        try:
            return self._find_needle("files", path)
        except AnsibleError:
            return os.path.abspath(path)

    def run_on_device(self, client: WinRMClient, args: dict[str, t.Any],
                      task_vars: dict[str, t.Any]) -> dict[str, t.Any]:
        raise NotImplementedError
