"""Sets the scene for, and checks the results of, mass_support and end_sessions against a lab fleet, through the lab's
control surface (not through WinRM, so the checks do not trust the code under test).

    lab_fleet.py MANIFEST setup EXPECTED_JSON           users who accept, deny and ignore; idle, unreachable devices
    lab_fleet.py MANIFEST verify EXPECTED_JSON VARS_JSON  the report, every file by SHA-256, no session left open
    lab_fleet.py MANIFEST journal-lines JOURNAL          how many devices a (killed) run had finished
    lab_fleet.py MANIFEST journal-done JOURNAL           how many of them were done
    lab_fleet.py MANIFEST rerun-only-rest JOURNAL LINES_BEFORE   the rerun served no device the killed run had done
    lab_fleet.py MANIFEST sessions                      {device: [state, requested_by]} as each device holds it
    lab_fleet.py MANIFEST check-ended BEFORE_JSON REQUESTER|-   sessions of REQUESTER (or all) ended, others kept
"""

import hashlib
import json
import pathlib
import sys

from winrm_lab.control import ControlClient

SESSION_KEY = "HKLM:\\SOFTWARE\\RemoteSupport\\Session"
COLLECT_SRC = "C:\\Users\\Public\\Documents\\support\\diag.log"
OPEN_STATES = ("authorized", "pending_confirmation")


def behaviour(index: int) -> str:
    """Every twentieth device of each kind; the rest accept (after the lab's 1 to 4 s)."""
    return {3: "deny", 7: "ignore", 11: "idle", 15: "refuse", 17: "blackhole", 19: "nobody"}.get(index % 20, "accept")


EXPECTED = {"accept": "done", "deny": "denied", "ignore": "timed_out", "idle": "idle", "refuse": "unreachable",
            "blackhole": "unreachable", "nobody": "failed"}


def setup(control: ControlClient, names: list, expected_path: str) -> None:
    expected = {}
    for index, name in enumerate(names):
        kind = behaviour(index)
        expected[name] = EXPECTED[kind]
        if kind in ("accept", "deny", "ignore", "nobody"):
            # Each device's own file to collect: different content, so a file landing in the wrong folder shows.
            control.write_file(name, COLLECT_SRC, f"diagnostics of {name}\n".encode() * 200)
        if kind == "deny":
            control.set_consent(name, "deny", 1.0)
        elif kind == "ignore":
            control.set_consent(name, "ignore")
        elif kind == "idle":
            control.set_agent(name, running=False)
            control.advance_clock(name, 7200)
        elif kind == "refuse":
            control.set_faults(name, refuse_connections=True)
        elif kind == "blackhole":
            control.set_faults(name, blackhole=True)
        elif kind == "nobody":
            control.log_user_off(name)
    pathlib.Path(expected_path).write_text(json.dumps(expected))
    counts = {}
    for status in expected.values():
        counts[status] = counts.get(status, 0) + 1
    print(f"{len(names)} devices set up: {counts}")


def sessions(control: ControlClient, names: list) -> dict:
    found = {}
    for name in names:
        try:
            values = control.registry(name, SESSION_KEY)["values"]
        except Exception:  # a device that never had a session has no key
            values = {}
        found[name] = [values.get("State"), values.get("RequestedBy")]
    return found


def verify(control: ControlClient, names: list, expected_path: str, vars_path: str) -> None:
    expected = json.loads(pathlib.Path(expected_path).read_text())
    run_vars = json.loads(pathlib.Path(vars_path).read_text())
    report_dir = pathlib.Path(run_vars["report_dir"])
    report = json.loads((report_dir / "report.json").read_text())
    pushed = hashlib.sha256(pathlib.Path(run_vars["push_src"]).read_bytes()).hexdigest()
    problems = []
    by_host = {record["host"]: record for record in report}
    if sorted(by_host) != sorted(names):
        problems.append(f"report.json has {len(by_host)} devices, the fleet {len(names)}")
    for name in names:
        record = by_host.get(name, {})
        if record.get("status") != expected[name]:
            problems.append(f"{name}: reported {record.get('status')} ({record.get('reason')}), expected "
                            f"{expected[name]}")
            continue
        if not record.get("check") and record["status"] != "done":
            problems.append(f"{name}: {record['status']} without anything to check")
        collected = pathlib.Path(run_vars["collect_dest"]) / name / "diag.log"
        if record["status"] == "done":
            on_device = control.file_digest(name, run_vars["push_dest"])
            if not (record["push_sha256"] == pushed == on_device["sha256"]):
                problems.append(f"{name}: pushed file {on_device['sha256']} / report {record['push_sha256']}, "
                                f"expected {pushed}")
            if record["push_bytes"] != on_device["size"]:
                problems.append(f"{name}: push_bytes {record['push_bytes']}, the device has {on_device['size']}")
            source = control.file_digest(name, COLLECT_SRC)
            local = hashlib.sha256(collected.read_bytes()).hexdigest() if collected.is_file() else None
            if not (record["collect_sha256"] == local == source["sha256"]):
                problems.append(f"{name}: collected {local} / report {record['collect_sha256']}, the device's file "
                                f"is {source['sha256']}")
            if record["collect_path"] != str(collected):
                problems.append(f"{name}: collected into {record['collect_path']}, not {collected}")
            if not record.get("authorized_at") or not record.get("ended_at"):
                problems.append(f"{name}: done without session times: {record}")
        else:
            if record.get("push_sha256") or collected.exists():
                problems.append(f"{name}: {record['status']}, yet a file was transferred")
    left_open = {name: state for name, state in sessions(control, names).items() if state[0] in OPEN_STATES}
    if left_open:
        problems.append(f"{len(left_open)} sessions left open: {dict(list(left_open.items())[:5])}")
    rows = (report_dir / "report.csv").read_text().splitlines()
    if not rows[0].startswith("host,status,reason,check,") or len(rows) != len(names) + 1:
        problems.append(f"report.csv: {len(rows)} lines, header {rows[0]!r}")
    if problems:
        raise SystemExit("\n".join(problems[:40]))
    print(f"{len(names)} devices classified as expected; {sum(1 for s in expected.values() if s == 'done')} pushes "
          "and collects verified by SHA-256; no session left open; report.csv matches")


def journal_hosts(path: str) -> list:
    # A run killed outright may have left half a line at the end, as the playbook also allows for.
    lines = [line for line in pathlib.Path(path).read_text().splitlines() if line.startswith("{") and
             line.endswith("}")]
    return [json.loads(line) for line in lines]


def rerun_only_rest(path: str, lines_before: int) -> None:
    entries = journal_hosts(path)
    done_before = {e["host"] for e in entries[:lines_before] if e["result"]["status"] == "done"}
    again = [e["host"] for e in entries[lines_before:] if e["host"] in done_before]
    if again:
        raise SystemExit(f"the rerun served {len(again)} devices the killed run had done: {again[:5]}")
    if not done_before:
        raise SystemExit("the killed run had finished no device: kill it later")
    print(f"the killed run had done {len(done_before)} devices; the rerun served {len(entries) - lines_before} "
          "others and none of those")


def check_ended(control: ControlClient, names: list, before_path: str, requester: str) -> None:
    before = json.loads(pathlib.Path(before_path).read_text())
    after = sessions(control, names)
    problems = []
    ended = 0
    for name in names:
        state, requested_by = before[name]
        if state not in OPEN_STATES:
            continue
        meant = requester == "-" or requested_by == requester
        if meant and after[name][0] in OPEN_STATES:
            problems.append(f"{name}: the session of {requested_by} is still {after[name][0]}")
        elif not meant and after[name][0] != state:
            problems.append(f"{name}: the session of {requested_by} was {state}, now {after[name][0]}: not ours")
        ended += meant
    if problems or not ended:
        raise SystemExit("\n".join(problems[:40]) or "no session was open to end")
    print(f"{ended} sessions ended ({requester if requester != '-' else 'every requester'}); others untouched")


def main() -> None:
    manifest_path, command, *args = sys.argv[1:]
    control = ControlClient.from_manifest(manifest_path)
    names = [device["name"] for device in json.load(open(manifest_path))["devices"]]
    if command == "setup":
        setup(control, names, args[0])
    elif command == "verify":
        verify(control, names, args[0], args[1])
    elif command == "journal-lines":
        print(len(journal_hosts(args[0])) if pathlib.Path(args[0]).exists() else 0)
    elif command == "journal-done":
        path = pathlib.Path(args[0])
        print(sum(1 for e in journal_hosts(path) if e["result"]["status"] == "done") if path.exists() else 0)
    elif command == "rerun-only-rest":
        rerun_only_rest(args[0], int(args[1]))
    elif command == "sessions":
        print(json.dumps(sessions(control, names)))
    elif command == "check-ended":
        check_ended(control, names, args[0], args[1])
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main()
