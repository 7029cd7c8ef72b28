# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plain-text tables for the fleet playbooks' summaries (the columns filter, the mass support report), and the one
rule for a spreadsheet cell of free text (the audit and mass support reports' CSV files).

In Python rather than a Jinja macro: the macro ran every cell through five filters, each a plugin call through
Ansible's templating, which cost a 500-device table more controller CPU than probing the devices did."""

from __future__ import annotations

import re
import typing as t

_WHITESPACE = re.compile(r"\s+")
_END = "..."
# A spreadsheet runs a cell that starts with one of these as a formula (=HYPERLINK(...), =cmd|...).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_text(text: str) -> str:
    """Free text (a reason, a file name a user chose) as a CSV cell a spreadsheet keeps as text: after an
    apostrophe when it would start a formula."""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def cell(value: t.Any, limit: int) -> str:
    """One line (a device's text with a line break or tab cannot split a row), at most `limit` characters (a longer
    value ends in "..."); a missing or empty value shows as "-"."""
    text = _WHITESPACE.sub(" ", str(value)) if value else "-"
    return text if len(text) <= limit else text[:max(limit - len(_END), 0)] + _END


def columns(rows: t.Sequence[t.Sequence[t.Any]], limit: int = 40) -> str:
    """The rows' lines, each column as wide as its longest value, two spaces apart; the last column is not padded,
    so no line ends in spaces."""
    cells = [[cell(value, limit) for value in row] for row in rows]
    widths = [max((len(row[column]) for row in cells if column < len(row)), default=0)
              for column in range(max((len(row) for row in cells), default=0))]
    return "\n".join("  ".join([*(value.ljust(widths[column]) for column, value in enumerate(row[:-1])), *row[-1:]])
                     for row in cells)
