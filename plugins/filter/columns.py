# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The columns filter: rows of cells -> the lines of a fleet table, each column as wide as its longest value."""

from __future__ import annotations

import typing as t

from ansible.errors import AnsibleFilterError

from ansible_collections.remote_support.windows.plugins.module_utils import tables


def columns(rows: t.Any, limit: int = 40) -> str:
    if not isinstance(rows, t.Sequence) or isinstance(rows, str) or \
            not all(isinstance(row, t.Sequence) and not isinstance(row, str) for row in rows):
        raise AnsibleFilterError("columns takes a list of rows, each a list of cells")
    if int(limit) < 1:
        raise AnsibleFilterError(f"columns: limit must be 1 or more characters, not {limit}")
    return tables.columns(rows, int(limit))


class FilterModule:
    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {"columns": columns}
