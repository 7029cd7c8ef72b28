"""Checks the audit_report playbook's output: audit.json's figures against the day's journal, audit.csv's rows, and
audit.html opened in headless Chromium: it renders (a screenshot, no console message, nothing fetched) and every
summary figure on the page equals audit.json's.

    check_report.py REPORT-DIR JOURNAL-DIR UNREACHABLE-HOST CHROMIUM WORK-DIR
"""

import csv
import datetime
import html.parser
import json
import pathlib
import subprocess
import sys

SPECIALIST, OTHER = "CONTOSO\\jdoe", "CONTOSO\\asmith"
FIGURES = ("sessions", "denials", "timeouts", "transfers", "transfer_bytes", "remote_control_seconds")


def fail(message: str) -> None:
    raise SystemExit(f"audit report: {message}")


def equal(what: str, got, expected) -> None:
    if got != expected:
        fail(f"{what}: {got!r}, expected {expected!r}")


def parse(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")


def seconds(start: str, end: str) -> int:
    return int((parse(end) - parse(start)).total_seconds())


def size(journal: dict, name: str) -> int:
    return journal[name]["size"]


def expected_figures(journals: dict) -> tuple:
    """The day as day.yml did it: who asked for what, from the modules' own results."""
    by_role = {j["role"]: j for j in journals.values()}
    consent, expiry, noconf = by_role["consent"], by_role["expiry"], by_role["noconf"]
    rc1 = seconds(consent["rc1"]["grant"]["granted_at"], consent["rc1_stop"]["device_time"])
    rc2_end = expiry["audit"]["sessions"][0]["remote_control"][0]["ended_at"]
    rc2 = seconds(expiry["rc2"]["grant"]["granted_at"], rc2_end)
    per_device = {
        consent["device"]: dict(sessions=3, denials=1, timeouts=1, transfers=2,
                                transfer_bytes=size(consent, "t1") + size(consent, "t2"), remote_control_seconds=rc1),
        expiry["device"]: dict(sessions=1, denials=0, timeouts=0, transfers=1, transfer_bytes=size(expiry, "t4"),
                               remote_control_seconds=rc2),
        noconf["device"]: dict(sessions=2, denials=0, timeouts=0, transfers=1, transfer_bytes=size(noconf, "t5"),
                               remote_control_seconds=0),
        by_role["wrapped"]["device"]: dict(sessions=0, denials=0, timeouts=0, transfers=0, transfer_bytes=0,
                                           remote_control_seconds=0),
    }
    per_specialist = {
        OTHER: dict(sessions=2, denials=1, timeouts=0, transfers=1, transfer_bytes=size(expiry, "t4"),
                    remote_control_seconds=rc2),
        SPECIALIST: dict(sessions=4, denials=0, timeouts=1, transfers=3,
                         transfer_bytes=size(consent, "t1") + size(consent, "t2") + size(noconf, "t5"),
                         remote_control_seconds=rc1),
    }
    totals = {name: sum(each[name] for each in per_device.values()) for name in FIGURES}
    return totals, per_device, per_specialist


class Figures(html.parser.HTMLParser):
    """data-figure cells and the rows of each data-table, from the DOM Chromium rendered."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict = {}
        self.rows: dict = {}
        self._table = None
        self._figure = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "table":
            self._table = attributes.get("data-table")
        elif tag == "tr" and self._table:
            self.rows[self._table] = self.rows.get(self._table, 0) + 1
        elif tag == "td" and "data-figure" in attributes:
            self._figure = attributes["data-figure"]
            self.figures[self._figure] = ""

    def handle_endtag(self, tag):
        if tag == "td":
            self._figure = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._figure:
            self.figures[self._figure] += data


def open_in_chromium(chromium: str, page: pathlib.Path, work: pathlib.Path) -> str:
    work.mkdir(parents=True, exist_ok=True)
    common = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--no-first-run", f"--user-data-dir={work / 'profile'}", "--enable-logging=stderr", "--v=0"]
    screenshot = work / "audit.png"
    shot = subprocess.run([*common, f"--screenshot={screenshot}", "--window-size=1280,2000", page.as_uri()],
                          capture_output=True, text=True, timeout=180, check=False)
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=180,
                         check=False)
    for run in (shot, dom):
        if run.returncode != 0:
            fail(f"chromium exited with {run.returncode}: {run.stderr[-2000:]}")
        # Console messages (script errors, a refused fetch under the page's Content-Security-Policy) are logged as
        # CONSOLE lines; the page has no script and fetches nothing, so there must be none.
        console = [line for line in run.stderr.splitlines() if "CONSOLE" in line or "Refused to" in line]
        if console:
            fail("the page logged in the browser's console:\n" + "\n".join(console))
    data = screenshot.read_bytes()
    if not data.startswith(b"\x89PNG") or len(data) < 5000:
        fail(f"chromium's screenshot of the page is not a rendered page ({len(data)} bytes)")
    return dom.stdout


def main() -> None:
    report_dir, journal_dir, gone_host, chromium, work = sys.argv[1:]
    report_dir, work = pathlib.Path(report_dir), pathlib.Path(work)
    hosts = (pathlib.Path(journal_dir) / "hosts").read_text().split()
    journals = {}
    for role, host in zip(("consent", "expiry", "noconf", "wrapped"), hosts):
        journals[host] = {**json.loads((pathlib.Path(journal_dir) / f"{host}.json").read_text()), "role": role}

    # audit.json: the figures of the day, and the device that could not be read
    report = json.loads((report_dir / "audit.json").read_text(encoding="utf-8"))
    summary = report["summary"]
    totals, per_device, per_specialist = expected_figures(journals)
    equal("devices", (summary["devices"], summary["devices_read"], summary["devices_unreachable"],
                      summary["logs_wrapped"]), (5, 4, 1, 1))
    equal("totals", {name: summary[name] for name in FIGURES}, totals)
    equal("per device", summary["per_device"], per_device)
    equal("per specialist", summary["per_specialist"], per_specialist)
    equal("not read", [(u["device"], u["reason"]) for u in report["unreachable"]], [(gone_host, "refused")])
    wrapped = [d["device"] for d in report["devices"] if d["log_wrapped"]]
    equal("wrapped", wrapped, [hosts[3]])

    # audit.csv: one row per session and per transfer
    with open(report_dir / "audit.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    sessions = [s for d in report["devices"] for s in d["sessions"]]
    equal("csv session rows", sorted(r["session_id"] for r in rows if r["row"] == "session"),
          sorted(s["id"] for s in sessions))
    transfers = [(r["session_id"], r["direction"], r["device_path"], int(r["size"]), r["sha256"], r["result"])
                 for r in rows if r["row"] == "transfer"]
    equal("csv transfer rows", sorted(transfers), sorted(
        (s["id"], t["direction"], t["device_path"], t["size"], t["sha256"], t["result"])
        for s in sessions for t in s["transfers"]))

    # audit.html in Chromium: what the page shows equals audit.json
    page = Figures()
    page.feed(open_in_chromium(chromium, report_dir / "audit.html", work))
    shown = {}
    for name in ("devices", "devices_read", "devices_unreachable", "logs_wrapped", *FIGURES):
        shown[f"totals:{name}"] = summary[name]
    for kind, table in (("device", summary["per_device"]), ("specialist", summary["per_specialist"])):
        for key, figures in table.items():
            for name in FIGURES:
                shown[f"{kind}:{key}:{name}"] = figures[name]
    equal("figures on the page", {key: int(value) for key, value in page.figures.items()}, shown)
    for device in report["devices"]:
        equal(f"timeline rows of {device['device']}", page.rows.get(f"timeline:{device['device']}", 0) - 1,
              len(device["timeline"]))
    equal("devices not read on the page", page.rows.get("unreachable", 0) - 1, 1)
    print(f"audit report checked: {len(shown)} figures on the page equal audit.json's")


if __name__ == "__main__":
    main()
