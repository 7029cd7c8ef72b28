"""The mass support report: what each file says for each device, whatever a device or a user wrote into a field."""

from __future__ import annotations

import csv
import io
import json

import pytest

from ansible_collections.remote_support.windows.plugins.module_utils import mass_support_report
from ansible_collections.remote_support.windows.plugins.module_utils.fleet import STATUSES


def record(host, status="done", **fields):
    return {"host": host, "status": status, "reason": "authorized, push verified", "check": "", "session_id": "s-1",
            "requested_at": "2026-11-30T10:00:00Z", "authorized_at": "2026-11-30T10:00:10Z",
            "expires_at": "2026-11-30T11:00:10Z", "ended_at": "2026-11-30T10:01:00Z", "push_bytes": 262144,
            "push_sha256": "ab" * 32, "collect_bytes": None, "collect_sha256": None, "collect_path": None,
            "transfers": [{"direction": "to_device", "bytes": 262144}], "changed": True, **fields}


RECORDS = {
    "pc-b": record("pc-b"),
    "pc-a": record("pc-a", "denied", reason='The user said "no",\nthen\rleft', check="=HYPERLINK(\"http://x\")",
                   authorized_at=None, push_bytes=None, push_sha256=None, transfers=[]),
    "pc-c": record("pc-c", "unreachable", reason="-Unable to connect", check="@check the address", session_id=None),
}


def test_records_are_sorted_by_host_and_report_json_holds_them_whole():
    report = mass_support_report.render(RECORDS)
    assert [r["host"] for r in report["records"]] == ["pc-a", "pc-b", "pc-c"]
    assert json.loads(report["json"]) == report["records"]
    assert report["json"].startswith('[\n    {\n        "authorized_at": null,')  # indented, keys sorted
    assert not report["json"].endswith("\n")  # the playbook adds the last line break


def test_report_csv_has_a_row_per_device_every_field_quoted_on_one_line_and_no_formula():
    text = mass_support_report.render(RECORDS)["csv"]
    lines = text.split("\n")
    assert lines[0] == ",".join(mass_support_report.CSV_COLUMNS) and len(lines) == 4
    assert all(line.startswith('"') and line.endswith('"') for line in lines[1:])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [row["host"] for row in rows] == ["pc-a", "pc-b", "pc-c"]
    assert (rows[0]["reason"], rows[0]["check"]) == ('The user said "no", then left', "'=HYPERLINK(\"http://x\")")
    assert rows[0]["authorized_at"] == "" and rows[1]["push_bytes"] == "262144"  # None is empty
    assert (rows[2]["reason"], rows[2]["check"]) == ("'-Unable to connect", "'@check the address")


def test_counts_name_every_status_and_unhandled_names_the_devices_not_done():
    report = mass_support_report.render(RECORDS)
    assert report["counts"] == dict(dict.fromkeys(STATUSES, 0), done=1, denied=1, unreachable=1)
    assert report["unhandled"] == ["pc-a", "pc-c"]


def test_the_summary_says_why_for_each_device_not_done_then_the_totals():
    summary = mass_support_report.render(RECORDS)["summary"]
    assert summary[:3] == ["pc-a  denied       The user said \"no\", then left -- =HYPERLINK(\"http://x\")",
                           "pc-c  unreachable  -Unable to connect -- @check the address", ""]
    assert summary[3] == "STATUS       DEVICES"
    assert summary[4:] == [f"{status:<12} {n:6d}" for status, n in
                           [("done", 1), ("denied", 1), ("timed_out", 0), ("idle", 0), ("unreachable", 1),
                            ("failed", 0), ("total", 3)]]


def test_an_all_done_run_has_only_the_totals():
    summary = mass_support_report.render({"pc-b": record("pc-b")})["summary"]
    assert summary[0] == "STATUS       DEVICES" and summary[-1] == "total             1"


@pytest.mark.parametrize("given", [["pc-a"], {"pc-a": "done"}, {"pc-a": {"status": "done"}}])
def test_what_is_not_records_by_host_is_refused(given):
    assert "mapping of device name" in mass_support_report.records_problem(given)
    assert mass_support_report.records_problem(RECORDS) is None


def test_the_files_are_written_whole_with_a_last_line_break_and_a_failed_write_keeps_the_previous_report(
        tmp_path, monkeypatch):
    report = mass_support_report.render(RECORDS)
    paths = mass_support_report.write(str(tmp_path), report)
    assert paths == [str(tmp_path / "report.json"), str(tmp_path / "report.csv")]
    assert json.loads((tmp_path / "report.json").read_text()) == report["records"]
    assert (tmp_path / "report.csv").read_text() == report["csv"] + "\n"
    assert oct((tmp_path / "report.csv").stat().st_mode & 0o777) == "0o640"

    def disk_full(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mass_support_report.os, "replace", disk_full)
    with pytest.raises(OSError, match="No space left"):
        mass_support_report.write(str(tmp_path), mass_support_report.render({"pc-b": record("pc-b")}))
    assert json.loads((tmp_path / "report.json").read_text()) == report["records"]  # the previous report, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.csv", "report.json"]  # no half-written file left


def test_a_cell_that_a_tab_or_carriage_return_would_turn_into_a_formula_stays_text():
    hostile = {"pc-d": record("pc-d", "failed", reason="\t=cmd|' /C calc'!A0", check="\r@SUM(1)")}
    row = next(csv.DictReader(io.StringIO(mass_support_report.render(hostile)["csv"])))
    assert (row["reason"], row["check"]) == ("'\t=cmd|' /C calc'!A0", "' @SUM(1)")
