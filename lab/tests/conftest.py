"""Shared fixtures: devices with file roots under tmp_path, a lab CA, and an in-process LabServer.

    def test_something(start_lab):
        lab = start_lab(2, allow_basic=True)          # two devices, listening
        device = lab.devices[0]
        lab.http_url(device), lab.https_url(device), lab.ca.ca_path

`make_devices(count, **service)` builds devices without starting anything (set faults or accounts, then pass them
to `start_lab(devices=...)`). Every test gets its own loopback addresses (from the test process id) and free ports,
so tests run in parallel under pytest-xdist.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import pathlib
import socket
import typing as t

import pytest

from winrm_lab.device import Device, Hardware
from winrm_lab.pki import CertificateAuthority
from winrm_lab.server import LabServer, LabServerThread

USER = "Administrator"
PASSWORD = "Lab-Passw0rd!"

# 127.220-249.x.y: clear of the 127.100-219 blocks lab_fixtures.base_address hands out.
_ADDRESS_BLOCK = 220 + os.getpid() % 30
_next_host = itertools.count(1)


def _next_address() -> str:
    index = next(_next_host)
    return f"127.{_ADDRESS_BLOCK}.{index // 250}.{index % 250 + 1}"


def _free_ports(address: str) -> tuple[int, int]:
    """Two distinct free ports on `address` (both probes stay bound until both are chosen)."""
    with socket.socket() as first, socket.socket() as second:
        first.bind((address, 0))
        second.bind((address, 0))
        return first.getsockname()[1], second.getsockname()[1]


@pytest.fixture
def lab_ca(tmp_path: pathlib.Path) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path / "pki")


@pytest.fixture
def make_devices(tmp_path: pathlib.Path) -> t.Callable[..., list[Device]]:
    """make_devices(count=1, accounts=None, **service settings) -> Devices, not yet served."""
    counter = itertools.count()

    def make(count: int = 1, accounts: dict[str, str] | None = None, **service: t.Any) -> list[Device]:
        devices = []
        for _ in range(count):
            number = next(counter)
            address = _next_address()
            http_port, https_port = _free_ports(address)
            device = Device(
                name=f"LAB-PC{number:04d}", address=address, http_port=http_port, https_port=https_port,
                hardware=Hardware("Dell Inc.", "OptiPlex 7090", f"SN{number:06d}", [3],
                                  "Microsoft Windows 10 Pro", "10.0.19045", 1),
                accounts=dict(accounts or {USER: PASSWORD}),
                file_root=tmp_path / "devices" / f"pc{number:04d}",
            )
            (device.file_root / "C" / "Users" / USER).mkdir(parents=True, exist_ok=True)
            for key, value in service.items():
                setattr(device.service, key, value)
            devices.append(device)
        return devices

    return make


@dataclasses.dataclass
class Lab:
    devices: list[Device]
    ca: CertificateAuthority
    handle: LabServerThread

    @property
    def server(self) -> LabServer:
        return self.handle.server

    @property
    def device(self) -> Device:
        return self.devices[0]

    def http_url(self, device: Device | None = None) -> str:
        device = device or self.device
        return f"http://{device.address}:{device.http_port}/wsman"

    def https_url(self, device: Device | None = None) -> str:
        device = device or self.device
        return f"https://{device.address}:{device.https_port}/wsman"

    def refresh_listeners(self, device: Device | None = None) -> None:
        self.handle.refresh_listeners(device or self.device)


@pytest.fixture
def start_lab(make_devices: t.Callable[..., list[Device]],
              lab_ca: CertificateAuthority) -> t.Iterator[t.Callable[..., Lab]]:
    """start_lab(count=1, devices=None, **service settings) -> Lab, serving until the test ends."""
    running: list[LabServerThread] = []

    def start(count: int = 1, devices: list[Device] | None = None, **service: t.Any) -> Lab:
        devices = devices if devices is not None else make_devices(count, **service)
        handle = LabServer(devices, lab_ca).run_in_thread()
        running.append(handle)
        return Lab(devices, lab_ca, handle)

    yield start
    for handle in running:
        handle.stop()


@pytest.fixture
def lab(start_lab: t.Callable[..., Lab]) -> Lab:
    """One device with Windows' default WinRM service settings."""
    return start_lab(1)
