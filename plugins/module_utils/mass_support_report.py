# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mass_support playbook's report: each device's record -> report.json, report.csv, the summary and the totals,
built and written by the fleet task (its `report` option) on the controller.

In Python rather than templates: rendered through Ansible's templating, a 200-device report cost about 4 s of
controller CPU (every cell of the CSV a macro call, every total a filter over all records), growing with the fleet,
and writing the two files with template tasks cost two module runs each (about 3 s).
"""

from __future__ import annotations

import json
import os
import tempfile
import typing as t

from ansible_collections.remote_support.windows.plugins.module_utils.fleet import STATUSES
from ansible_collections.remote_support.windows.plugins.module_utils.tables import columns, spreadsheet_text

# report.csv: the columns of report.json without the nested transfers.
CSV_COLUMNS = ("host", "status", "reason", "check", "session_id", "requested_at", "authorized_at", "expires_at",
               "ended_at", "push_bytes", "push_sha256", "collect_bytes", "collect_sha256", "collect_path")


def _csv_cell(value: t.Any) -> str:
    """Every field quoted, on one line; free text a spreadsheet would run as a formula stays text."""
    text = spreadsheet_text("" if value is None else str(value))
    return '"' + text.replace('"', '""').replace("\r", " ").replace("\n", " ") + '"'


def summary_lines(records: t.Sequence[t.Mapping[str, t.Any]], counts: t.Mapping[str, int]) -> list[str]:
    """One line per device that is not done (what happened, what to check), then the totals by status."""
    lines: list[str] = []
    not_done = [[record["host"], record["status"], f"{record.get('reason') or ''} -- {record.get('check') or ''}"]
                for record in records if record["status"] != "done"]
    if not_done:
        lines += columns(not_done, 1000).splitlines()
        lines.append("")
    lines.append(f"{'STATUS':<12} {'DEVICES':>6}")
    lines += [f"{status:<12} {counts.get(status, 0):6d}" for status in STATUSES]
    lines.append(f"{'total':<12} {len(records):6d}")
    return lines


def records_problem(records: t.Any) -> str | None:
    """What is wrong with `records` as device name -> support record (with host and status), or None."""
    if not isinstance(records, t.Mapping) or not all(
            isinstance(record, t.Mapping) and isinstance(record.get("host"), str) and "status" in record
            for record in records.values()):
        return ("the report takes a mapping of device name -> the record the fleet module's support action returned "
                "for it (with host and status)")
    return None


def render(records_by_host: t.Mapping[str, t.Mapping[str, t.Any]]) -> dict[str, t.Any]:
    """records (sorted by host), json and csv (the two files' text, without the last line break), summary (lines),
    counts (by status, every status named) and unhandled (the hosts not done)."""
    records = [dict(records_by_host[host]) for host in sorted(records_by_host)]
    counts = dict.fromkeys(STATUSES, 0)
    for record in records:
        counts[record["status"]] = counts.get(record["status"], 0) + 1
    csv_lines = [",".join(CSV_COLUMNS)]
    csv_lines += [",".join(_csv_cell(record.get(column)) for column in CSV_COLUMNS) for record in records]
    return {
        "records": records,
        "json": json.dumps(records, indent=4, sort_keys=True, separators=(",", ": ")),
        "csv": "\n".join(csv_lines),
        "summary": summary_lines(records, counts),
        "counts": counts,
        "unhandled": [record["host"] for record in records if record["status"] != "done"],
    }


def write(directory: str, report: t.Mapping[str, t.Any]) -> list[str]:
    """Writes report.json and report.csv into `directory` (mode 0640, each ending with a line break) and returns
    their paths. Each file is written beside its final name and renamed over it, so a reader never sees half of
    one and a failed write leaves the previous report whole."""
    paths = []
    for kind in ("json", "csv"):
        path = os.path.join(directory, f"report.{kind}")
        handle, temporary = tempfile.mkstemp(prefix=f".report.{kind}.", dir=directory)
        try:
            with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as file:
                file.write(report[kind] + "\n")
            os.chmod(temporary, 0o640)
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise
        paths.append(path)
    return paths
