"""device_info across a fleet: devices per second through ansible-playbook, through a plain pywinrm loop doing the
same probe, and the lab's own ceiling, in one run against one lab.

    python bench/device_info_bench.py [--devices 1000] [--forks 50]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import pathlib
import re
import subprocess
import sys
import time

from lablib import RunningLab, protocol_for
from lab_bench import client as ceiling_client

ROOT = pathlib.Path(__file__).resolve().parent.parent


def collection_device_script():
    sys.path.insert(0, str(ROOT / ".venv" / "collections"))
    from ansible_collections.remote_support.windows.plugins.module_utils import device_script
    return device_script.load("get_device_facts")


def plain_pywinrm_probe(device: dict, ca_file: str, script) -> dict:
    """The same probe device_info makes (bootstrap + facts script, one shell), written directly on pywinrm."""
    protocol = protocol_for(device, ca_file)
    shell_id = protocol.open_shell(codepage=65001, noprofile=True)
    command_id = protocol.run_command(shell_id, "powershell.exe", script.command_arguments(), skip_cmd_shell=True)
    protocol.send_command_input(shell_id, command_id, script.stdin_payload({}), end=True)
    stdout, stderr, exit_code = protocol.get_command_output(shell_id, command_id)
    protocol.close_shell(shell_id)
    if exit_code != 0:
        raise RuntimeError(stderr.decode(errors="replace"))
    return json.loads(stdout)


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--forks", type=int, default=50)
    parser.add_argument("--ceiling-seconds", type=float, default=15.0)
    args = parser.parse_args()
    script = collection_device_script()

    with RunningLab(args.devices, "healthy") as lab:
        ca_file = lab.manifest["ca_file"]
        devices = lab.endpoints()

        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".venv" / "collections"),
                   ANSIBLE_FORKS=str(args.forks), ANSIBLE_HOST_KEY_CHECKING="false")
        started = time.monotonic()
        run = subprocess.run(["ansible-playbook", "-i", str(lab.inventory), str(ROOT / "bench" / "device_info_fleet.yml")],
                             env=env, capture_output=True, text=True)
        playbook_seconds = time.monotonic() - started
        recap = re.findall(r"ok=(\d+)\s+changed=\d+\s+unreachable=(\d+)\s+failed=(\d+)", run.stdout)
        failed = sum(int(f) + int(u) for _ok, u, f in recap)
        if run.returncode != 0 or len(recap) != len(devices) or failed:
            raise RuntimeError(f"playbook run failed ({run.returncode}, {failed} failures):\n{run.stdout[-3000:]}")

        started = time.monotonic()
        for device in devices:
            facts = plain_pywinrm_probe(device, ca_file, script)
            assert facts["computer_name"] == device["name"]
        loop_seconds = time.monotonic() - started

        with multiprocessing.Pool(3) as pool:
            cpu_before = lab.cpu_seconds()
            started = time.monotonic()
            counts = pool.map(ceiling_client, [(devices, ca_file, args.ceiling_seconds, seed) for seed in range(3)])
            elapsed = time.monotonic() - started
            lab_cpu = lab.cpu_seconds() - cpu_before

        figures = {
            "devices": len(devices),
            "ansible_playbook": {"forks": args.forks, "strategy": "linear", "seconds": round(playbook_seconds, 1),
                                 "devices_per_second": round(len(devices) / playbook_seconds, 1)},
            "plain_pywinrm_loop": {"threads": 1, "seconds": round(loop_seconds, 1),
                                   "devices_per_second": round(len(devices) / loop_seconds, 1)},
            "lab_ceiling": {"client_processes": 3,
                            "complete_commands_per_second_observed": round(sum(counts) / elapsed, 1),
                            "commands_per_lab_cpu_second": round(sum(counts) / lab_cpu, 1)},
        }
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
