"""Fleet playbooks against one lab: controller CPU per device and devices per second for the shipped device_info
playbook (one fleet task), the per-host module path it replaced, and mass_support (consents after 10 s, a push and
a collect), beside the lab's ceiling; optionally with the lab's model of Windows' own time per command.

    python bench/fleet_bench.py [--devices 500] [--forks 50] [--device-latency none|windows]
                                [--paths device_info,per_host,reauthorize_expiring,end_sessions,mass_support,ceiling]
                                [--per-host-variables] [--internal-poll-interval SECONDS]

Controller CPU is the user + system time of ansible-playbook and every process it started (its forks), read from
getrusage(RUSAGE_CHILDREN) around the run; the lab runs in another process and is not counted. Each run also records
the load average before and after it: the machine may be shared, and CPU time grows with the load.

The inventory handed to ansible-playbook keeps the connection variables every device shares (user, password,
transport, CA file, timeouts...) in the group's vars, as a fleet's inventory does; with --per-host-variables it is the
lab's own inventory, every variable on every host, which costs Ansible more to parse per host.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import pathlib
import re
import resource
import subprocess
import sys
import tempfile
import time
import typing as t

import yaml

from lablib import RunningLab
from lab_bench import client as ceiling_client

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONSENT_AFTER_SECONDS = 10.0


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def grouped_inventory(lab: RunningLab) -> pathlib.Path:
    """The lab's inventory with the variables every host has with the same value moved to the top group's vars."""
    inventory = yaml.safe_load(lab.inventory.read_text())
    top = inventory["all"]["children"]["winrm_lab"]
    groups = list(top["children"].values())
    hosts = [variables for group in groups for variables in (group.get("hosts") or {}).values()]
    shared = {name: value for name, value in hosts[0].items()
              if all(name in h and h[name] == value for h in hosts)} if hosts else {}
    for group in groups:
        for name, variables in (group.get("hosts") or {}).items():
            group["hosts"][name] = {k: v for k, v in variables.items() if k not in shared} or None
    top["vars"] = dict(top.get("vars") or {}, **shared)
    path = lab.directory / "inventory-grouped.yml"
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    return path


INVENTORY: dict[str, pathlib.Path] = {}
ENVIRONMENT: dict[str, str] = {}


def run_playbook(lab: RunningLab, playbook: str, forks: int, extra: list[str] | None = None) -> dict:
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".venv" / "collections"),
               ANSIBLE_FORKS=str(forks), ANSIBLE_HOST_KEY_CHECKING="false", **ENVIRONMENT)
    load_before = os.getloadavg()[0]
    cpu_before = children_cpu_seconds()
    started = time.monotonic()
    run = subprocess.run(["ansible-playbook", "-i", str(INVENTORY.get("path", lab.inventory)), playbook,
                          *(extra or [])], env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    cpu = children_cpu_seconds() - cpu_before
    if run.returncode != 0:
        raise RuntimeError(f"{playbook} failed ({run.returncode}):\n{run.stdout[-3000:]}\n{run.stderr[-2000:]}")
    devices = lab.devices
    return {"seconds": round(seconds, 1), "devices_per_second": round(devices / seconds, 1),
            "controller_cpu_seconds": round(cpu, 1),
            "controller_cpu_ms_per_device": round(1000 * cpu / devices, 1),
            "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)], "output": run.stdout}


def device_info_fleet(lab: RunningLab, forks: int) -> dict:
    figures = run_playbook(lab, "remote_support.windows.device_info", forks)
    table = figures.pop("output")
    if f"{lab.devices} devices: {lab.devices} active" not in table:
        raise RuntimeError("not every device was probed active:\n" + table[-2000:])
    return dict(figures, path="playbooks/device_info.yml (one fleet task, run once)")


def device_info_per_host(lab: RunningLab, forks: int) -> dict:
    figures = run_playbook(lab, str(ROOT / "bench" / "device_info_fleet.yml"), forks)
    recap = re.findall(r"ok=(\d+)\s+changed=\d+\s+unreachable=(\d+)\s+failed=(\d+)", figures.pop("output"))
    if len(recap) != lab.devices or any(int(u) or int(f) for _ok, u, f in recap):
        raise RuntimeError("the per-host run did not probe every device")
    return dict(figures, path=f"device_info module per host (forks {forks})")


def mass_support(lab: RunningLab, forks: int) -> dict:
    from winrm_lab.control import ControlClient

    control = ControlClient.from_manifest(lab.manifest_path)
    for device in lab.manifest["devices"]:
        control.set_consent(device["name"], "accept", CONSENT_AFTER_SECONDS)
    work = pathlib.Path(tempfile.mkdtemp(prefix="mass-support-bench."))
    push = work / "tool.bin"
    push.write_bytes(os.urandom(256 * 1024))
    collect = "C:\\Users\\Public\\Documents\\support\\bench-collect.log"
    for device in lab.manifest["devices"]:
        control.write_file(device["name"], collect, f"log of {device['name']}\n".encode() * 1000)
    # As JSON: key=value would read the backslash-t of "\\tool.bin" as a tab.
    run_vars = {"reason": "Benchmark: push a tool, collect a log", "push_src": str(push),
                "push_dest": "C:\\Users\\Public\\Documents\\support\\tool.bin", "collect_src": collect,
                "collect_dest": str(work / "collected"), "report_dir": str(work / "report")}
    figures = run_playbook(lab, "remote_support.windows.mass_support", forks, ["-e", json.dumps(run_vars)])
    figures.pop("output")
    report = json.loads((work / "report" / "report.json").read_text())
    statuses: dict[str, int] = {}
    for record in report:
        statuses[record["status"]] = statuses.get(record["status"], 0) + 1
    digest = hashlib.sha256(push.read_bytes()).hexdigest()
    if any(record["push_sha256"] != digest for record in report if record["status"] == "done"):
        raise RuntimeError("a pushed file's SHA-256 differs")
    if statuses.get("done") != lab.devices:
        # Every user accepts, so anything else is the run's own failure: say which, with a few reasons.
        reasons = sorted({record["reason"] for record in report if record["status"] != "done"})[:5]
        print(json.dumps({"mass_support_not_done": statuses, "reasons": reasons}), file=sys.stderr)
    return dict(figures, statuses=statuses, path=f"playbooks/mass_support.yml, consents after {CONSENT_AFTER_SECONDS:.0f} s, "
                              "push 256 KiB + collect 25 KB")


def read_only_playbook(name: str) -> t.Callable[[RunningLab, int], dict]:
    """A fleet playbook that reads every device's session and here finds nothing to change (no session is open or
    due): what reading the whole fleet costs."""

    def run(lab: RunningLab, forks: int) -> dict:
        figures = run_playbook(lab, f"remote_support.windows.{name}", forks)
        output = figures.pop("output")
        if f"{lab.devices} devices:" not in output:
            raise RuntimeError(f"{name} did not report on every device:\n{output[-2000:]}")
        return dict(figures, path=f"playbooks/{name}.yml (fleet tasks, nothing to change)")

    return run


def ceiling(lab: RunningLab, seconds: float = 10.0) -> dict:
    devices = lab.endpoints()
    ca_file = lab.manifest["ca_file"]
    with multiprocessing.Pool(3) as pool:
        cpu_before = lab.cpu_seconds()
        started = time.monotonic()
        counts = pool.map(ceiling_client, [(devices, ca_file, seconds, seed) for seed in range(3)])
        elapsed = time.monotonic() - started
        lab_cpu = lab.cpu_seconds() - cpu_before
    return {"path": "lab ceiling: complete NTLM commands from 3 client processes",
            "complete_commands_per_second_observed": round(sum(counts) / elapsed, 1),
            "commands_per_lab_cpu_second": round(sum(counts) / lab_cpu, 1)}


PATHS = {"device_info": device_info_fleet, "per_host": device_info_per_host, "mass_support": mass_support,
         "reauthorize_expiring": read_only_playbook("reauthorize_expiring"),
         "end_sessions": read_only_playbook("end_sessions"),
         "ceiling": lambda lab, forks: ceiling(lab)}


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--forks", type=int, default=50)
    parser.add_argument("--device-latency", default="none", choices=("none", "windows"))
    parser.add_argument("--paths", default="device_info,per_host,reauthorize_expiring,end_sessions,mass_support,"
                                           "ceiling")
    parser.add_argument("--per-host-variables", action="store_true",
                        help="hand ansible-playbook the lab's inventory as it is (every variable on every host)")
    parser.add_argument("--internal-poll-interval", type=float,
                        help="Ansible's internal_poll_interval (default 0.001 s): how often ansible-playbook polls "
                             "its workers while a task runs, which costs CPU for as long as the fleet task runs")
    args = parser.parse_args()
    if args.internal_poll_interval is not None:
        ENVIRONMENT["ANSIBLE_INTERNAL_POLL_INTERVAL"] = str(args.internal_poll_interval)
    sys.path.insert(0, str(ROOT / ".venv" / "collections"))
    figures: dict = {"devices": args.devices, "device_latency": args.device_latency,
                     "inventory": "per-host variables" if args.per_host_variables else "shared variables grouped",
                     "internal_poll_interval": args.internal_poll_interval or 0.001,
                     "runs": {}}
    with RunningLab(args.devices, "healthy", device_latency=args.device_latency) as lab:
        if not args.per_host_variables:
            INVENTORY["path"] = grouped_inventory(lab)
        for name in args.paths.split(","):
            figures["runs"][name] = PATHS[name](lab, args.forks)
            print(json.dumps({name: figures["runs"][name]}), file=sys.stderr, flush=True)
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
