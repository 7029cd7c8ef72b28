"""Sets the scene for, and checks the result of, the overlapping reauthorize_expiring runs, through the lab's
control surface (not through WinRM).

    lab_sessions.py MANIFEST no-confirmation | snapshot | advance SECONDS | verify BEFORE REPORT1 REPORT2
"""

import json
import re
import sys

from winrm_lab.control import ControlClient

SESSION_KEY = "HKLM:\\SOFTWARE\\RemoteSupport\\Session"
POLICY_KEY = "HKLM:\\SOFTWARE\\RemoteSupport\\Policy"
RENEWED = 1007


def main() -> None:
    manifest_path, command, *args = sys.argv[1:]
    control = ControlClient.from_manifest(manifest_path)
    names = [device["name"] for device in json.load(open(manifest_path))["devices"]]
    if command == "no-confirmation":
        for name in names:
            control.set_registry_value(name, POLICY_KEY, "ConfirmationRequired", 0)
    elif command == "snapshot":
        print(json.dumps({name: control.registry(name, SESSION_KEY)["values"] for name in names}))
    elif command == "advance":
        control.advance_all_clocks(float(args[0]))
    elif command == "verify":
        verify(control, names, *args)
    else:
        raise SystemExit(f"unknown command {command}")


def counts(report_path: str) -> dict:
    last = open(report_path, encoding="utf-8").read().strip().splitlines()[-1]
    return {word: int(number) for number, word in re.findall(r"(\d+) (renewed|kept|skipped|failed)", last)}


def verify(control: ControlClient, names: list, before_path: str, *reports: str) -> None:
    before = json.load(open(before_path))
    problems = []
    for name in names:
        values = control.registry(name, SESSION_KEY)["values"]
        renewals = [e for e in control.events(name, log="Application")
                    if e["source"] == "RemoteSupport.Windows" and e["event_id"] == RENEWED]
        if values.get("State") != "authorized":
            problems.append(f"{name}: session is {values.get('State')}, not authorized")
        if values.get("Id") != before[name].get("Id"):
            problems.append(f"{name}: the session id changed: a renewal must keep it")
        if values.get("ExpiresAt", "") <= before[name].get("ExpiresAt", ""):
            problems.append(f"{name}: not renewed (expires {values.get('ExpiresAt')})")
        if len(renewals) != 1:
            problems.append(f"{name}: renewed {len(renewals)} times, expected exactly once")
    totals = [counts(report) for report in reports]
    renewed = sum(t.get("renewed", 0) for t in totals)
    if renewed != len(names):
        problems.append(f"the two runs report {renewed} renewals for {len(names)} devices")
    for report in reports:
        for line in open(report, encoding="utf-8"):
            if " failed " in line and "changed by" not in line:
                problems.append(f"a failure that is not a reported conflict: {line.strip()}")
    print(f"runs: {totals}")
    if problems:
        raise SystemExit("\n".join(problems[:40]))
    print(f"{len(names)} sessions renewed exactly once; conflicts reported: "
          f"{sum(t.get('failed', 0) for t in totals)}")


if __name__ == "__main__":
    main()
