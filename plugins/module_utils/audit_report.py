# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet's audit report, built in one place from each device's support_audit result: the report itself (what
audit.json holds), its CSV (one row per session and per transfer) and a self-contained HTML page (summary and a
timeline per device; no script, no network: a Content-Security-Policy forbids every fetch).

Whatever runs support_audit across the inventory (one task per host today, one task for many devices later) hands
`build` a mapping of device name -> that device's result, and writes the three renderings `render` returns.
"""

from __future__ import annotations

import csv
import datetime
import html
import io
import json
import typing as t

from ansible_collections.remote_support.windows.plugins.module_utils.tables import spreadsheet_text

REPORT_VERSION = 1
CSV_COLUMNS = (
    "device", "row", "session_id", "requested_by", "authenticated_account", "reason", "requested_at", "consent",
    "authorized_at", "authorized_by", "renewals", "state", "ended_at", "ended_by", "remote_control_seconds",
    "transfers", "direction", "device_path", "controller_path", "size", "sha256", "result", "bytes_transferred",
    "transfer_at", "error",
)
SUMMARY_FIGURES = ("sessions", "denials", "timeouts", "transfers", "transfer_bytes", "remote_control_seconds")


def _parse(stamp: str | None) -> datetime.datetime | None:
    if not stamp:
        return None
    return datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


def grant_seconds(grant: t.Mapping[str, t.Any], since: str, device_time: str) -> int:
    """How long a remote-control grant lasted inside the window: from its start (or the window's) to its end, or,
    where no end was written, to its `until` or the device's clock, whichever came first."""
    start = _parse(grant.get("started_at")) or _parse(since)
    end = _parse(grant.get("ended_at"))
    if end is None:
        candidates = [moment for moment in (_parse(grant.get("until")), _parse(device_time)) if moment is not None]
        end = min(candidates) if candidates else start
    return max(0, int((end - start).total_seconds())) if start and end else 0


def _session_figures(session: t.Mapping[str, t.Any], since: str, device_time: str) -> dict[str, int]:
    return {
        "sessions": 1,
        "denials": sum(1 for answer in session["consents"] if answer["answer"] == "denied"),
        "timeouts": sum(1 for answer in session["consents"] if answer["answer"] == "timed_out"),
        "transfers": len(session["transfers"]),
        "transfer_bytes": sum(each["bytes_transferred"] for each in session["transfers"]),
        "remote_control_seconds": sum(grant_seconds(grant, since, device_time) for grant in session["remote_control"]),
    }


def _zero() -> dict[str, int]:
    return {name: 0 for name in SUMMARY_FIGURES}


def _add(total: dict[str, int], figures: t.Mapping[str, int]) -> None:
    for name in SUMMARY_FIGURES:
        total[name] += figures[name]


def timeline(session: t.Mapping[str, t.Any]) -> list[dict[str, t.Any]]:
    """What happened in a session, in order of time."""
    entries = []

    def add(at: str | None, what: str) -> None:
        if at:
            entries.append({"at": at, "session_id": session["id"], "what": what})

    if session["requested_at"]:
        add(session["requested_at"], f"requested by {session['requested_by']}"
            + (f" (authenticated as {session['authenticated_account']})" if session["authenticated_account"] else "")
            + f": {session['reason']}")
    for answer in session["consents"]:
        add(answer["at"], f"consent {answer['answer'].replace('_', ' ')} by {answer['by']}")
    if session["authorized_at"]:
        add(session["authorized_at"], f"authorized by {session['authorized_by']}")
    for renewal in session["renewals"]:
        add(renewal["at"], f"renewed by {renewal['by']}")
    for grant in session["remote_control"]:
        add(grant["started_at"], f"remote control ({grant['mode']}) granted to {grant['account']}")
        add(grant["ended_at"], f"remote control of {grant['account']} ended by {grant['ended_by']} "
                               f"({grant['end_reason']})")
    for transfer in session["transfers"]:
        arrow = "to device" if transfer["direction"] == "to_device" else "from device"
        add(transfer["at"], f"file {arrow} {transfer['device_path']}, {transfer['size']} bytes: {transfer['result']}")
    if session["state"] in ("expired", "deauthorized", "cancelled"):  # denials and time-outs are consents
        add(session["ended_at"], f"{session['state'].replace('_', ' ')} by {session['ended_by']}")
    return sorted(entries, key=lambda entry: entry["at"])


def build(results: t.Mapping[str, t.Mapping[str, t.Any]], generated_at: str) -> dict[str, t.Any]:
    """The report from device name -> support_audit result (a result without `sessions` could not be read)."""
    devices, unreachable = [], []
    totals = _zero()
    per_device: dict[str, dict[str, int]] = {}
    per_specialist: dict[str, dict[str, int]] = {}
    for name in sorted(results):
        result = results[name] or {}
        if "sessions" not in result:
            connection = result.get("connection") or {}
            unreachable.append({"device": name, "reason": connection.get("reason") or "failed",
                                "message": connection.get("message") or result.get("msg") or "no result"})
            continue
        figures = _zero()
        sessions = []
        for session in result["sessions"]:
            own = _session_figures(session, result["since"], result["device_time"])
            _add(figures, own)
            specialist = session["requested_by"] or "(unknown)"
            _add(per_specialist.setdefault(specialist, _zero()), own)
            sessions.append({**session, "remote_control_seconds": own["remote_control_seconds"]})
        _add(totals, figures)
        per_device[name] = figures
        devices.append({
            "device": name, "computer_name": result["computer_name"], "since": result["since"],
            "device_time": result["device_time"], "log_wrapped": result["log_wrapped"], "log": result["log"],
            "truncated": result["truncated"], "msg": result["msg"], "sessions": sessions,
            "transfers_without_session": result["transfers_without_session"],
            "other_events": result["other_events"], "unrecognized": result["unrecognized"],
            "timeline": sorted((entry for session in sessions for entry in timeline(session)),
                               key=lambda entry: entry["at"]),
        })
    return {
        "report_version": REPORT_VERSION,
        "generated_at": generated_at,
        "summary": {
            "devices": len(results), "devices_read": len(devices), "devices_unreachable": len(unreachable),
            "logs_wrapped": sum(1 for device in devices if device["log_wrapped"]),
            **totals,
            "per_device": per_device,
            "per_specialist": dict(sorted(per_specialist.items())),
        },
        "unreachable": unreachable,
        "devices": devices,
    }


class _TextCells(csv.DictWriter):
    """Free text in the report stays text in a spreadsheet (tables.spreadsheet_text)."""

    def writerow(self, rowdict: t.Mapping[str, t.Any]) -> t.Any:
        return super().writerow({key: spreadsheet_text(value) if isinstance(value, str) else value
                                 for key, value in rowdict.items()})


def to_csv(report: t.Mapping[str, t.Any]) -> str:
    """One row per session and one per transfer (spreadsheets, tickets)."""
    out = io.StringIO()
    writer = _TextCells(out, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for device in report["devices"]:
        for session in device["sessions"]:
            common = {"device": device["device"], "session_id": session["id"],
                      "requested_by": session["requested_by"] or ""}
            writer.writerow({
                **common, "row": "session",
                "authenticated_account": session["authenticated_account"] or "", "reason": session["reason"] or "",
                "requested_at": session["requested_at"] or "",
                "consent": "; ".join(f"{a['answer']} by {a['by']} at {a['at']}" for a in session["consents"]),
                "authorized_at": session["authorized_at"] or "", "authorized_by": session["authorized_by"] or "",
                "renewals": len(session["renewals"]), "state": session["state"] or "",
                "ended_at": session["ended_at"] or "", "ended_by": session["ended_by"] or "",
                "remote_control_seconds": session["remote_control_seconds"], "transfers": len(session["transfers"]),
            })
            for transfer in session["transfers"]:
                writer.writerow({
                    **common, "row": "transfer", "requested_by": transfer["requested_by"],
                    "direction": transfer["direction"], "device_path": transfer["device_path"],
                    "controller_path": transfer["controller_path"], "size": transfer["size"],
                    "sha256": transfer["sha256"] or "", "result": transfer["result"],
                    "bytes_transferred": transfer["bytes_transferred"], "transfer_at": transfer["at"],
                    "error": transfer["error"] or "",
                })
    return out.getvalue()


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f2f2f2}
td.n{text-align:right}
.warn{color:#a40000;font-weight:600}
h2{margin-top:2em;border-bottom:1px solid #ccc}
.bars{border:1px solid #ccc;max-width:60em;margin:.5em 0}
.lane{position:relative;height:.9em;margin:.2em 0}
.bar{position:absolute;top:0;bottom:0;background:#4a7bd0}
.bar.denied,.bar.timed_out{background:#c0392b}
.bar.expired{background:#999}
.bar.pending_confirmation{background:#e0a800}
.scale{display:flex;justify-content:space-between;font-size:.8em;color:#555;border-top:1px solid #ddd}
td:first-child{white-space:nowrap}
""".strip()


def _cell(value: t.Any, number: bool = False, figure: str | None = None) -> str:
    attributes = (' class="n"' if number else "") + (f' data-figure="{html.escape(figure)}"' if figure else "")
    return f"<td{attributes}>{html.escape(str(value))}</td>"


def _figures_table(rows: t.Mapping[str, t.Mapping[str, int]], kind: str) -> str:
    head = "".join(f"<th>{name.replace('_', ' ')}</th>" for name in SUMMARY_FIGURES)
    body = []
    for name, figures in rows.items():
        cells = "".join(_cell(figures[figure], True, f"{kind}:{name}:{figure}") for figure in SUMMARY_FIGURES)
        body.append(f"<tr><th>{html.escape(name)}</th>{cells}</tr>")
    return f'<table data-table="{kind}"><tr><th>{kind}</th>{head}</tr>{"".join(body)}</table>'


def _stamp(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _bars(device: t.Mapping[str, t.Any]) -> str:
    """Each session as a bar from its first to its last moment, on a scale from the first session's start (the
    window's start for one that began before it) to the device's clock, coloured by how it ended."""
    since, end = _parse(device["since"]), _parse(device["device_time"])
    starts = [_parse(session["requested_at"]) or since for session in device["sessions"]]
    start = min(starts) if starts else None
    if start is None or end is None or end <= start:
        return ""
    span = (end - start).total_seconds()
    rows = []
    for session in device["sessions"]:
        begin = _parse(session["requested_at"]) or since
        finish = _parse(session["ended_at"]) or end
        left = max(0.0, (begin - start).total_seconds() / span * 100)
        width = max(0.4, (finish - begin).total_seconds() / span * 100)
        state = session["state"] or "unknown"
        title = f"{session['id']}: {state.replace('_', ' ')}, {session['requested_at'] or '(before)'} - " \
                f"{session['ended_at'] or '(open)'}"
        rows.append(f'<div class="lane"><div class="bar {html.escape(state)}" title="{html.escape(title)}" '
                    f'style="left:{left:.2f}%;width:{min(width, 100 - left):.2f}%"></div></div>')
    scale = f'<div class="scale"><span>{html.escape(_stamp(start))}</span><span>{html.escape(_stamp(end))}</span></div>'
    return f'<div class="bars">{"".join(rows)}{scale}</div>'


def to_html(report: t.Mapping[str, t.Any]) -> str:
    """One page that needs nothing but itself: inline style, no script, every fetch forbidden."""
    summary = report["summary"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        f"<title>Support audit, {html.escape(report['generated_at'])}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Support audit</h1><p>Generated {html.escape(report['generated_at'])}.</p>",
        '<h2>Summary</h2><table data-table="totals"><tr>',
        "".join(f"<th>{name.replace('_', ' ')}</th>" for name in
                ("devices", "devices_read", "devices_unreachable", "logs_wrapped", *SUMMARY_FIGURES)),
        "</tr><tr>",
        "".join(_cell(summary[name], True, f"totals:{name}") for name in
                ("devices", "devices_read", "devices_unreachable", "logs_wrapped", *SUMMARY_FIGURES)),
        "</tr></table>",
        "<h3>Per device</h3>", _figures_table(summary["per_device"], "device"),
        "<h3>Per specialist</h3>", _figures_table(summary["per_specialist"], "specialist"),
    ]
    if report["unreachable"]:
        parts.append('<h2>Not read</h2><table data-table="unreachable"><tr><th>device</th><th>reason</th>'
                     "<th>message</th></tr>")
        for entry in report["unreachable"]:
            parts.append(f"<tr>{_cell(entry['device'])}{_cell(entry['reason'])}{_cell(entry['message'])}</tr>")
        parts.append("</table>")
    for device in report["devices"]:
        parts.append(f'<h2 id="device-{html.escape(device["device"])}">{html.escape(device["device"])} '
                     f"({html.escape(device['computer_name'])})</h2>")
        parts.append(f"<p>Events since {html.escape(device['since'])}, read at {html.escape(device['device_time'])} "
                     "by the device's clock.</p>")
        if device["log_wrapped"] or device["truncated"]:
            parts.append(f'<p class="warn" data-warning="{html.escape(device["device"])}">'
                         f"{html.escape(device['msg'])}</p>")
        parts.append(_bars(device))
        parts.append(f'<table data-table="timeline:{html.escape(device["device"])}">'
                     "<tr><th>time (UTC)</th><th>session</th><th>what</th></tr>")
        for entry in device["timeline"]:
            parts.append(f"<tr>{_cell(entry['at'])}{_cell(entry['session_id'])}{_cell(entry['what'])}</tr>")
        parts.append("</table>")
        loose = device["other_events"] + device["unrecognized"]
        if loose or device["transfers_without_session"]:
            parts.append("<p>Events of no session:</p><table><tr><th>time (UTC)</th><th>id</th><th>text</th></tr>")
            for event in loose:
                parts.append(f"<tr>{_cell(event['time_created'])}{_cell(event['event_id'])}"
                             f"{_cell(event['message'])}</tr>")
            for transfer in device["transfers_without_session"]:
                parts.append(f"<tr>{_cell(transfer['at'])}{_cell('transfer')}"
                             f"{_cell(json.dumps(transfer, sort_keys=True))}</tr>")
            parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def render(results: t.Mapping[str, t.Mapping[str, t.Any]], generated_at: str) -> dict[str, str]:
    """audit.json, audit.csv and audit.html for the devices' results."""
    report = build(results, generated_at)
    return {"json": json.dumps(report, indent=2, sort_keys=False) + "\n", "csv": to_csv(report),
            "html": to_html(report), "summary_line": summary_line(report)}


def summary_line(report: t.Mapping[str, t.Any]) -> str:
    summary = report["summary"]
    return (f"{summary['devices']} devices ({summary['devices_unreachable']} not read, {summary['logs_wrapped']} "
            f"wrapped logs): {summary['sessions']} sessions, {summary['denials']} denials, {summary['transfers']} "
            f"transfers, {summary['remote_control_seconds']} s of remote control")
