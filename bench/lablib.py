"""Starting a winrm-lab fleet for a benchmark, and measuring it: start-up time, peak memory, CPU."""

from __future__ import annotations

import json
import os
import pathlib
import random
import signal
import subprocess
import tempfile
import time

import psutil


class RunningLab:
    """A `winrm-lab` process started for a benchmark; use as a context manager."""

    def __init__(self, devices: int, scenario: str = "healthy", seed: int = 3, device_latency: str = "none") -> None:
        self.devices = devices
        self.device_latency = device_latency
        self.scenario = scenario
        self.seed = seed
        self.directory = pathlib.Path(tempfile.mkdtemp(prefix="winrm-lab-bench."))
        self.inventory = self.directory / "inventory.yml"
        self.manifest_path = self.directory / "manifest.json"
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds = 0.0
        self.manifest: dict = {}

    def __enter__(self) -> "RunningLab":
        base = f"127.{random.randint(30, 229)}.0.1"
        started = time.monotonic()
        self.process = subprocess.Popen(
            ["winrm-lab", "--devices", str(self.devices), "--scenario", self.scenario, "--seed", str(self.seed),
             "--base-address", base, "--work-dir", str(self.directory / "devices"),
             "--inventory", str(self.inventory), "--manifest", str(self.manifest_path),
             *(["--device-latency", self.device_latency] if self.device_latency != "none" else [])],
            stdout=subprocess.DEVNULL, stderr=open(self.directory / "lab.log", "wb"))
        while not self.manifest_path.exists():
            if self.process.poll() is not None:
                raise RuntimeError("winrm-lab exited: " + (self.directory / "lab.log").read_text())
            if time.monotonic() - started > 600:
                raise RuntimeError("winrm-lab did not get ready in 10 minutes")
            time.sleep(0.05)
        self.startup_seconds = time.monotonic() - started
        self.manifest = json.loads(self.manifest_path.read_text())
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def peak_rss_bytes(self) -> int:
        """The lab process's high-water mark of resident memory (VmHWM)."""
        for line in pathlib.Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return psutil.Process(self.pid).memory_info().rss

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.pid).cpu_times()
        return times.user + times.system

    def endpoints(self) -> list[dict]:
        return [d for d in self.manifest["devices"] if d["expected"]["status"] == "active"]


def protocol_for(device: dict, ca_file: str, **overrides):
    """A pywinrm Protocol for a lab device, as the inventory describes it (NTLM, validation on)."""
    import winrm.protocol

    kwargs = dict(endpoint=device["endpoint"]["url"], transport="ntlm",
                  username=device["credentials"]["username"], password=device["credentials"]["password"],
                  server_cert_validation="validate", ca_trust_path=ca_file,
                  message_encryption=device["message_encryption"], operation_timeout_sec=5, read_timeout_sec=10)
    kwargs.update(overrides)
    return winrm.protocol.Protocol(**kwargs)


def pin_to_cpu(cpu: int) -> None:
    """Keeps a process on one core so the lab and its load do not compete for the same one."""
    try:
        os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError):
        pass
