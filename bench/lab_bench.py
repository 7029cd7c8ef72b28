"""The lab at fleet size: start-up time and peak memory for N devices in one process, and its ceiling in complete
commands per second (NTLM handshake, open shell, run, receive, close) measured from several client processes.

    python bench/lab_bench.py [--devices 1000] [--seconds 20] [--clients 3]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import time

from lablib import RunningLab, protocol_for


def complete_command(device: dict, ca_file: str) -> None:
    """One complete command on one device, with a fresh connection and NTLM handshake, checked."""
    protocol = protocol_for(device, ca_file)
    shell_id = protocol.open_shell(codepage=65001)
    command_id = protocol.run_command(shell_id, "echo", ["ready"])
    stdout, _stderr, exit_code = protocol.get_command_output(shell_id, command_id)
    protocol.cleanup_command(shell_id, command_id)
    protocol.close_shell(shell_id)
    if exit_code != 0 or stdout.strip() != b"ready":
        raise RuntimeError(f"unexpected answer from {device['name']}: {exit_code} {stdout!r}")


def client(args: tuple[list[dict], str, float, int]) -> int:
    devices, ca_file, seconds, seed = args
    rng = random.Random(seed)
    done = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        complete_command(rng.choice(devices), ca_file)
        done += 1
    return done


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=3)
    args = parser.parse_args()

    with RunningLab(args.devices, "healthy") as lab:
        idle_rss = lab.peak_rss_bytes()
        devices = lab.endpoints()
        ca_file = lab.manifest["ca_file"]
        complete_command(devices[0], ca_file)  # warm-up, and proof the fleet answers
        cpu_before = lab.cpu_seconds()
        started = time.monotonic()
        with multiprocessing.Pool(args.clients) as pool:
            counts = pool.map(client, [(devices, ca_file, args.seconds, seed) for seed in range(args.clients)])
        elapsed = time.monotonic() - started
        lab_cpu = lab.cpu_seconds() - cpu_before
        commands = sum(counts)
        figures = {
            "devices": args.devices,
            "startup_seconds": round(lab.startup_seconds, 2),
            "rss_after_startup_mib": round(idle_rss / 2**20, 1),
            "peak_rss_mib": round(lab.peak_rss_bytes() / 2**20, 1),
            "client_processes": args.clients,
            "complete_commands": commands,
            "commands_per_second_observed": round(commands / elapsed, 1),
            "lab_cpu_ms_per_command": round(1000 * lab_cpu / commands, 2),
            # What one core of the lab could serve if the clients were not sharing the machine with it.
            "lab_ceiling_commands_per_second_per_core": round(commands / lab_cpu, 1),
        }
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
