"""File transfer against the lab, one run: remote_support.windows.file_transfer beside what Ansible's winrm connection
plugin does (put_file, fetch_file) and beside the lab's raw ceiling, 100 MB each direction over HTTPS and over HTTP
with NTLM message encryption; then the controller's peak memory while moving a 1 GB file.

    python bench/file_transfer_bench.py [--size-mb 100] [--repeats 3] [--large-mb 1024] [--skip-large]

Prints one JSON document. Nothing is asserted: docs/benchmarks.md records what a run printed, and under which load.
Each 100 MB figure is the median of --repeats transfers, taken in turns (module, baselines, ceiling, then again), and
lists every repeat's MB/s: on a shared two-core machine one transfer of a few seconds varies by a fifth or more.

- module: file_transfer's core (module_utils/file_transfer.py) as the action plugin runs it, through the collection's
  WinRM client: facts, session, prepare, then one streaming command with device-sized chunks.
- ansible put_file (the baseline docs/benchmarks.md compares with): what ansible.builtin.winrm does for put_file, base64 lines through one
  command's stdin, every Send sized for pywinrm's default envelope (150 KiB), SHA-1 on the device, the controller's
  SHA-1 afterwards. Also with Ansible's own read size (250,000 bytes, ~445 KB Sends), which the same plugin uses.
- ansible fetch_file: one command per 512 KiB, answered in base64, received with pywinrm's default envelope.
- ceiling: the same bytes through one command with nothing done to them on either side (bench_raw_stream), at the
  device's envelope size, prepared ahead (sending) or received ahead (receiving) on a second thread as the module
  does: what WinRM itself costs in the lab (HTTP, TLS or NTLM sealing, SOAP, base64).
"""

from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import json
import os
import pathlib
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time

import psutil

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / ".venv" / "collections"))

from lablib import RunningLab, protocol_for  # noqa: E402

from ansible_collections.remote_support.windows.plugins.module_utils import (  # noqa: E402
    device_script,
    file_transfer,
    file_transfer_workers,
    support_session,
)
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_client import WinRMClient
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_settings import resolve_settings
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_streaming import (
    envelope_bytes,
    stream_command_arguments,
    stream_header,
)

POLICY_KEY = r"HKLM:\SOFTWARE\RemoteSupport\Policy"
DEVICE_FOLDER = "C:\\Users\\Public\\Documents"
PYWINRM_DEFAULT_ENVELOPE = 153600
ANSIBLE_PUT_BUFFER = 250000
ANSIBLE_FETCH_BUFFER = 2 ** 19


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def bench_script(name: str) -> device_script.DeviceScript:
    """A benchmark-only device script (bench/device_scripts), loaded as the collection loads its own."""
    folder = ROOT / "bench" / "device_scripts"
    contract = json.loads((folder / f"{name}.contract.json").read_text(encoding="utf-8"))
    return device_script.DeviceScript(name=name, version=contract["version"],
                                      text=(folder / f"{name}.ps1").read_text(encoding="utf-8"), contract=contract)


def overlay_scripts() -> str:
    """The collection's device scripts plus the benchmark's own, in one folder for the lab to read."""
    folder = pathlib.Path(tempfile.mkdtemp(prefix="ft-bench-scripts."))
    for source in (ROOT / "plugins" / "module_utils" / "device_scripts", ROOT / "bench" / "device_scripts"):
        for path in source.iterdir():
            (folder / path.name).symlink_to(path)
    return str(folder)


def settings_for(device: dict, ca_file: str):
    host_vars = {"ansible_host": device["address"], "ansible_port": device["endpoint"]["port"],
                 "ansible_user": device["credentials"]["username"],
                 "ansible_password": device["credentials"]["password"],
                 "ansible_winrm_scheme": device["endpoint"]["scheme"], "ansible_winrm_ca_trust_path": ca_file,
                 "ansible_winrm_message_encryption": device["message_encryption"],
                 "ansible_winrm_operation_timeout_sec": 5, "ansible_winrm_read_timeout_sec": 30}
    return resolve_settings({}, host_vars, device["name"])


def authorize(client: WinRMClient) -> None:
    result = support_session.run(client, {
        "state": "authorized", "reason": "file transfer benchmark", "requested_by": "bench", "wait": True,
        "wait_timeout": 60, "renew_before": 600, "poll_interval": 1, "idle_after": 900,
    }, check_mode=False, controller_now=utc_now, monotonic=time.monotonic)
    if result.get("state") != "authorized":
        raise SystemExit(f"could not authorize a session: {result}")


def module(client: WinRMClient, direction: str, src: str, dest: str) -> dict:
    started = time.monotonic()
    result = file_transfer.run(client, {
        "direction": direction, "src": src, "dest": dest, "force": True, "requested_by": "bench", "idle_after": 900,
    }, check_mode=False, diff=False, controller_now=utc_now, monotonic=time.monotonic, progress=lambda line: None,
        controller_host=socket.gethostname())
    seconds = time.monotonic() - started
    if result.get("failed") or not result.get("changed"):
        raise SystemExit(f"file_transfer did not transfer: {result.get('msg')}")
    return {"seconds": round(seconds, 2), "chunk_bytes": result["transfer"]["chunk_bytes"]}


def ansible_put_file(device: dict, ca_file: str, src: str, dest: str, read_size: int) -> dict:
    """ansible.builtin.winrm's put_file: base64 lines on one command's stdin, one Send per read."""
    protocol = protocol_for(device, ca_file, read_timeout_sec=30)
    script = bench_script("bench_put_file_base64")
    started = time.monotonic()
    shell = protocol.open_shell(codepage=65001)
    command = protocol.run_command(shell, "powershell.exe", stream_command_arguments(), skip_cmd_shell=True)
    protocol.send_command_input(shell, command, stream_header(script, {"path": dest}))
    size = os.path.getsize(src)
    largest = 0
    with open(src, "rb") as handle:
        while True:
            data = handle.read(read_size)
            # "yes, we're double-encoding over the wire in this case" (the plugin's own comment)
            line = base64.b64encode(data) + b"\r\n"
            last = handle.tell() == size
            protocol.send_command_input(shell, command, line, end=last)
            largest = max(largest, len(line))
            if last:
                break
    stdout, stderr, code = protocol.get_command_output(shell, command)
    protocol.cleanup_command(shell, command)
    protocol.close_shell(shell)
    remote = json.loads(stdout.decode().strip().splitlines()[-1])["sha1"]
    local = hashlib.sha1()  # noqa: S324 - what the plugin compares
    with open(src, "rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            local.update(block)
    seconds = time.monotonic() - started
    if code != 0 or remote != local.hexdigest():
        raise SystemExit(f"baseline put_file failed: {code} {stderr[:300]!r}")
    return {"seconds": round(seconds, 2), "read_bytes": read_size,
            "send_envelope_bytes": len(base64.b64encode(b"x" * largest)) + 1400}


def ansible_fetch_file(device: dict, ca_file: str, src: str, dest: str, size: int) -> dict:
    """ansible.builtin.winrm's fetch_file: one command per 512 KiB, answered in base64."""
    protocol = protocol_for(device, ca_file, read_timeout_sec=30)
    script = bench_script("bench_fetch_file_base64")
    started = time.monotonic()
    shell = protocol.open_shell(codepage=65001)
    offset = 0
    with open(dest, "wb") as out:
        while True:
            command = protocol.run_command(shell, "powershell.exe", script.command_arguments(), skip_cmd_shell=True)
            protocol.send_command_input(shell, command, script.stdin_payload(
                {"path": src, "offset": offset, "buffer_size": ANSIBLE_FETCH_BUFFER}), end=True)
            stdout, stderr, code = protocol.get_command_output(shell, command)
            protocol.cleanup_command(shell, command)
            if code != 0:
                raise SystemExit(f"baseline fetch_file failed: {stderr[:300]!r}")
            data = base64.b64decode(json.loads(stdout.decode().strip().splitlines()[-1])["data"])
            out.write(data)
            if len(data) < ANSIBLE_FETCH_BUFFER:
                break
            offset += len(data)
    protocol.close_shell(shell)
    seconds = time.monotonic() - started
    if os.path.getsize(dest) != size:
        raise SystemExit("baseline fetch_file returned the wrong size")
    return {"seconds": round(seconds, 2), "buffer_bytes": ANSIBLE_FETCH_BUFFER}


def ceiling(client: WinRMClient, direction: str, size: int, max_envelope_kb: int) -> dict:
    script = bench_script("bench_raw_stream")
    envelope = envelope_bytes(max_envelope_kb)
    started = time.monotonic()
    with client.shell() as shell:
        command = shell.start_stream(script, {"direction": direction, "bytes": size}, envelope)
        if direction == "in":
            # Encoded on a second thread, a couple ahead, as the module does, so only WinRM's cost is left.
            ready: queue.Queue = queue.Queue(maxsize=2)

            def encode() -> None:
                zeros = bytes(command.chunk_bytes)
                left = size
                while left > 0:
                    count = min(left, len(zeros))
                    left -= count
                    ready.put(command.send_envelope(zeros[:count], left == 0))
                ready.put(None)

            threading.Thread(target=encode, daemon=True).start()
            for message in iter(ready.get, None):
                command.send_message(message)
        # Received on a second thread, ahead of the caller, as the module does.
        reader = file_transfer_workers.OutputReader(command)
        reader.start()
        try:
            while not reader.ended:
                reader.receive()
        finally:
            reader.close()
    return {"seconds": round(time.monotonic() - started, 2), "envelope_bytes": envelope}


def file_sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def rate(size: int, figures: dict) -> dict:
    figures["mb_per_second"] = round(size / figures["seconds"] / 1e6, 1)
    return figures


def median(size: int, runs: list[dict]) -> dict:
    """The median run of several of the same transfer, with every run's MB/s beside it."""
    ordered = sorted((rate(size, run) for run in runs), key=lambda run: run["seconds"])
    figures = dict(ordered[len(ordered) // 2])
    figures["runs_mb_per_second"] = [run["mb_per_second"] for run in runs]
    return figures


def peak_rss_engine(device: dict, ca_file: str, direction: str, src: str, dest: str) -> dict:
    """Moves one file with the module's core in a process of its own and reports that process's peak RSS."""
    code = """
import datetime, json, socket, sys, time
sys.path.insert(0, sys.argv[1])
from ansible_collections.remote_support.windows.plugins.module_utils import file_transfer
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_client import WinRMClient
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_settings import resolve_settings
job = json.loads(sys.argv[2])
client = WinRMClient(resolve_settings({}, job["host_vars"], job["name"]))
now = lambda: datetime.datetime.now(datetime.timezone.utc)
started = time.monotonic()
result = file_transfer.run(client, job["options"], check_mode=False, diff=False, controller_now=now,
                           monotonic=time.monotonic, progress=lambda line: None, controller_host=socket.gethostname())
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across fork and exec, so it would report the parent's size.
peak = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"msg": result["msg"], "failed": bool(result.get("failed")), "seconds": time.monotonic() - started,
                  "peak_rss_bytes": peak}))
"""
    settings = settings_for(device, ca_file)
    job = {"name": device["name"], "host_vars": {
        "ansible_host": settings.host, "ansible_port": settings.port, "ansible_user": settings.user,
        "ansible_password": settings.password, "ansible_winrm_scheme": settings.scheme,
        "ansible_winrm_ca_trust_path": ca_file, "ansible_winrm_message_encryption": settings.message_encryption,
        "ansible_winrm_operation_timeout_sec": 5, "ansible_winrm_read_timeout_sec": 30},
        "options": {"direction": direction, "src": src, "dest": dest, "force": True, "requested_by": "bench",
                    "idle_after": 900}}
    output = subprocess.run([sys.executable, "-c", code, str(ROOT / ".venv" / "collections"), json.dumps(job)],
                            check=True, capture_output=True, text=True).stdout
    figures = json.loads(output.strip().splitlines()[-1])
    if figures["failed"]:
        raise SystemExit(f"1 GB transfer failed: {figures['msg']}")
    return {"seconds": round(figures["seconds"], 1), "peak_rss_mib": round(figures["peak_rss_bytes"] / 2**20, 1)}


def peak_rss_playbook(lab: RunningLab, host: str, src: str, dest: str) -> dict:
    """The same through ansible-playbook: the peak RSS of every process of the run (main process and its workers)."""
    folder = pathlib.Path(tempfile.mkdtemp(prefix="ft-bench-play."))
    playbook = folder / "transfer.yml"
    playbook.write_text(f"""- hosts: {host}
  gather_facts: false
  tasks:
    - remote_support.windows.file_transfer:
        direction: to_device
        src: {src}
        dest: '{dest}'
""")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".venv" / "collections"),
               ANSIBLE_HOST_KEY_CHECKING="false", ANSIBLE_STDOUT_CALLBACK="default")
    started = time.monotonic()
    process = subprocess.Popen(["ansible-playbook", "-i", str(lab.inventory), str(playbook)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peaks: dict[int, int] = {}
    watched = psutil.Process(process.pid)
    while process.poll() is None:
        try:
            for proc in [watched] + watched.children(recursive=True):
                try:
                    peaks[proc.pid] = max(peaks.get(proc.pid, 0), proc.memory_info().rss)
                except psutil.Error:
                    pass
        except psutil.Error:
            pass
        time.sleep(0.1)
    output = process.stdout.read()
    if process.returncode != 0:
        raise SystemExit(f"ansible-playbook failed:\n{output[-2000:]}")
    ordered = sorted(peaks.values(), reverse=True)
    return {"seconds": round(time.monotonic() - started, 1), "peak_rss_mib_largest_process": round(ordered[0] / 2**20, 1),
            "processes": len(ordered)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--large-mb", type=int, default=1024)
    parser.add_argument("--skip-large", action="store_true")
    args = parser.parse_args()
    size = args.size_mb * 1000 * 1000
    os.environ["WINRM_LAB_DEVICE_SCRIPTS"] = overlay_scripts()
    work = pathlib.Path(tempfile.mkdtemp(prefix="ft-bench."))
    src = work / "random.bin"
    with open(src, "wb") as handle:
        for _ in range(args.size_mb):
            handle.write(os.urandom(1000 * 1000))
    report: dict = {"size_bytes": size, "machine": {"cpus": os.cpu_count(), "load_average_1m_before": os.getloadavg()[0]}}
    with RunningLab(8, "healthy") as lab:
        ca_file = lab.manifest["ca_file"]
        from winrm_lab.control import ControlClient

        control = ControlClient.from_manifest(lab.manifest_path)
        endpoints = {}
        for device in lab.endpoints():
            kind = "https" if device["endpoint"]["scheme"] == "https" else "http_ntlm_sealed"
            endpoints.setdefault(kind, device)
        for kind in ("https", "http_ntlm_sealed"):
            device = endpoints[kind]
            control.set_registry_value(device["name"], POLICY_KEY, "ConfirmationRequired", 0)
            client = WinRMClient(settings_for(device, ca_file))
            authorize(client)
            envelope_kb = control.device(device["name"])["service"]["max_envelope_size_kb"]
            figures: dict = {"device": device["name"], "max_envelope_size_kb": envelope_kb}
            dest = f"{DEVICE_FOLDER}\\random.bin"
            back = work / f"back-{kind}.bin"
            measured: dict[str, list[dict]] = {}

            def measure(name: str, transfer) -> None:
                measured.setdefault(name, []).append(transfer())

            for repeat in range(args.repeats):
                if repeat:  # else the module finds the same file and moves nothing
                    control.delete_file(device["name"], dest)
                    back.unlink()
                measure("up_module", lambda: module(client, "to_device", str(src), dest))
                measure("up_put_file", lambda: ansible_put_file(
                    device, ca_file, str(src), f"{DEVICE_FOLDER}\\baseline.bin",
                    ((PYWINRM_DEFAULT_ENVELOPE - 2048) * 3 // 4 - 2) * 3 // 4 // 3 * 3))
                measure("up_put_file_read_size", lambda: ansible_put_file(
                    device, ca_file, str(src), f"{DEVICE_FOLDER}\\baseline2.bin", ANSIBLE_PUT_BUFFER))
                measure("up_ceiling", lambda: ceiling(client, "in", size, envelope_kb))
                measure("down_module", lambda: module(client, "from_device", dest, str(back)))
                measure("down_fetch_file", lambda: ansible_fetch_file(device, ca_file, dest, str(work / "fetched.bin"),
                                                                      size))
                measure("down_ceiling", lambda: ceiling(client, "out", size, envelope_kb))
            figures["to_device"] = {
                "module": median(size, measured["up_module"]),
                "ansible_put_file_pywinrm_default_envelope": median(size, measured["up_put_file"]),
                "ansible_put_file_ansible_read_size": median(size, measured["up_put_file_read_size"]),
                "ceiling": median(size, measured["up_ceiling"]),
            }
            figures["from_device"] = {
                "module": median(size, measured["down_module"]),
                "ansible_fetch_file": median(size, measured["down_fetch_file"]),
                "ceiling": median(size, measured["down_ceiling"]),
            }
            if file_sha256(back) != file_sha256(src):
                raise SystemExit("the file that came back differs")
            for direction in ("to_device", "from_device"):
                moved = figures[direction]
                baseline = moved.get("ansible_put_file_pywinrm_default_envelope") or moved["ansible_fetch_file"]
                moved["module_vs_baseline"] = round(moved["module"]["mb_per_second"] / baseline["mb_per_second"], 1)
                moved["module_vs_ceiling"] = round(moved["module"]["mb_per_second"] / moved["ceiling"]["mb_per_second"],
                                                   2)
            report[kind] = figures
            for name in ("back-" + kind + ".bin", "fetched.bin"):
                (work / name).unlink(missing_ok=True)

        if not args.skip_large:
            device = endpoints["https"]
            large = work / "large.bin"
            with open(large, "wb") as handle:
                block = os.urandom(1024 * 1024)
                for _ in range(args.large_mb):
                    handle.write(block)
            dest = f"{DEVICE_FOLDER}\\large.bin"
            report["large_file"] = {
                "bytes": args.large_mb * 1024 * 1024,
                "to_device_core": peak_rss_engine(device, ca_file, "to_device", str(large), dest),
                "from_device_core": peak_rss_engine(device, ca_file, "from_device", dest, str(work / "large-back.bin")),
            }
            control.delete_file(device["name"], dest)
            report["large_file"]["to_device_ansible_playbook"] = peak_rss_playbook(lab, device["name"], str(large),
                                                                                  dest)
        report["lab_peak_rss_mib"] = round(lab.peak_rss_bytes() / 2**20, 1)
    report["machine"]["load_average_1m_after"] = os.getloadavg()[0]
    print(json.dumps(report, indent=2))
    for path in work.iterdir():
        path.unlink()
    work.rmdir()


if __name__ == "__main__":
    main()
