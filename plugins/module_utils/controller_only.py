# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The main() of every module of the collection. Each module's work is done by its action plugin (plugins/action/),
which runs on the controller in place of the module; module code that runs was reached some other way, and says so.
It checks the arguments first, against the same argument spec the action plugin uses, so that the module's
documentation and its argument spec are compared by ansible-test sanity (validate-modules)."""

from __future__ import annotations

import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.remote_support.windows.plugins.module_utils.winrm_settings import WINRM_ARGUMENT_SPEC


def main(name: str, argument_spec: dict[str, dict[str, t.Any]],
         required_if: t.Sequence[t.Sequence[t.Any]] | None = None) -> None:
    """Fails the task: remote_support.windows.`name` runs only through its action plugin."""
    module = AnsibleModule(argument_spec={**WINRM_ARGUMENT_SPEC, **argument_spec}, required_if=required_if,
                           supports_check_mode=True)
    module.fail_json(msg=f"remote_support.windows.{name} runs on the controller through its action plugin; "
                         f"call it as remote_support.windows.{name} in a play, not as a raw module.")
