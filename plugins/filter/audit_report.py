# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The audit_report filter: each device's support_audit result -> the fleet's report (JSON, CSV, HTML)."""

from __future__ import annotations

import typing as t

from ansible.errors import AnsibleFilterError

from ansible_collections.remote_support.windows.plugins.module_utils import audit_report


def audit_report_filter(results: t.Any, generated_at: str) -> dict[str, str]:
    if not isinstance(results, t.Mapping):
        raise AnsibleFilterError("audit_report takes a mapping of device name -> support_audit result")
    return audit_report.render({str(name): dict(result or {}) for name, result in results.items()}, str(generated_at))


class FilterModule:
    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {"audit_report": audit_report_filter}
