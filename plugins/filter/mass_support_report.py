# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mass_support_report filter: each device's mass support record -> report.json, report.csv, summary, totals."""

from __future__ import annotations

import typing as t

from ansible.errors import AnsibleFilterError

from ansible_collections.remote_support.windows.plugins.module_utils import mass_support_report


def mass_support_report_filter(records: t.Any) -> dict[str, t.Any]:
    if not isinstance(records, t.Mapping) or not all(
            isinstance(record, t.Mapping) and isinstance(record.get("host"), str) and "status" in record
            for record in records.values()):
        raise AnsibleFilterError("mass_support_report takes a mapping of device name -> the record the fleet "
                                 "module's support action returned for it (with host and status)")
    return mass_support_report.render({str(host): record for host, record in records.items()})


class FilterModule:
    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {"mass_support_report": mass_support_report_filter}
