"""A running lab: a fleet's listeners, its CA, the control surface, the inventory and the manifest.

`RunningLab` puts the pieces together in the order the promise "the files exist only while every device listens"
needs: certificates first, then every listener, then the control surface, and only then the inventory and the
manifest; on the way down the files go first. (Accounts need no file of ours: the server's NTLM acceptor writes
the hashes of each device's `accounts` where pyspnego looks for them.)
"""

from __future__ import annotations

import logging
import pathlib

from . import outputs
from .control import ControlSurface
from .pki import CertificateAuthority
from .scenarios import Fleet, prepare_file_systems
from .server import LabServer

log = logging.getLogger(__name__)


class RunningLab:
    def __init__(self, fleet: Fleet, inventory_path: pathlib.Path | str | None = None,
                 manifest_path: pathlib.Path | str | None = None) -> None:
        self.fleet = fleet
        self.inventory_path = pathlib.Path(inventory_path).absolute() if inventory_path else None
        self.manifest_path = pathlib.Path(manifest_path).absolute() if manifest_path else None
        self.ca: CertificateAuthority | None = None
        self.server: LabServer | None = None
        self.control: ControlSurface | None = None

    @property
    def ca_file(self) -> pathlib.Path:
        assert self.ca is not None, "the lab has not started"
        return self.ca.ca_path

    async def start(self) -> None:
        # Outputs left by a lab that was killed would describe listeners that no longer exist.
        self._remove_outputs()
        self.fleet.work_dir.mkdir(parents=True, exist_ok=True)
        prepare_file_systems(self.fleet)
        self.ca = CertificateAuthority.create(self.fleet.work_dir / "pki")
        self.server = LabServer(self.fleet.devices, self.ca)
        try:
            await self.server.start()  # returns once every device's listeners are bound
            self.control = ControlSurface(self.fleet.devices, refresh_listeners=self.server.refresh_listeners)
            await self.control.start()
        except BaseException:
            await self.stop()
            raise
        if self.inventory_path:
            outputs.write_inventory(self.inventory_path, self.fleet, self.ca_file)
        if self.manifest_path:
            outputs.write_manifest(self.manifest_path, self.fleet, self.ca_file, self.control.url,
                                   self.control.token, self.inventory_path)

    async def stop(self) -> None:
        self._remove_outputs()
        if self.control is not None:
            await self.control.stop()
            self.control = None
        if self.server is not None:
            await self.server.stop()
            self.server = None

    def _remove_outputs(self) -> None:
        for path in (self.inventory_path, self.manifest_path):
            if path is not None:
                path.unlink(missing_ok=True)

    def summary(self) -> str:
        devices = self.fleet.devices
        first, last = devices[0], devices[-1]
        span = first.address if len(devices) == 1 else f"{first.address}-{last.address}"
        expected = ", ".join(f"{count} {status}" for status, count in sorted(self.counts().items()))
        parts = [f"winrm-lab: {len(devices)} device(s), scenario {self.fleet.scenario}, seed {self.fleet.seed} "
                 f"(expected: {expected}), listening on {span} ports {first.http_port}/{first.https_port}"]
        if self.control is not None:
            parts.append(f"control {self.control.url}")
        if self.inventory_path:
            parts.append(f"inventory {self.inventory_path}")
        if self.manifest_path:
            parts.append(f"manifest {self.manifest_path}")
        return "; ".join(parts)

    def counts(self) -> dict[str, int]:
        tally: dict[str, int] = {}
        for device in self.fleet.devices:
            key = device.expected.get("status", "?")
            tally[key] = tally.get(key, 0) + 1
        return tally

