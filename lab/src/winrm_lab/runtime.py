"""A running lab: a fleet's listeners, its CA, the control surface, the inventory and the manifest.

`RunningLab` puts the pieces together in the order the promise "the files exist only while every device listens"
needs: certificates first, then every listener, then the control surface, and only then the inventory and the
manifest; on the way down the files go first. (Accounts need no file of ours: the server's NTLM acceptor writes
the hashes of each device's `accounts` where pyspnego looks for them.)

`auth` picks how the inventory's hosts authenticate (NTLM, the default, is always accepted too):
- kerberos: the lab's own KDC (kdc.py) with the fleet's account as `user@REALM` and `HTTP/<device>` for every device;
  each device gets the realm account DOMAIN\\user. Clients point KRB5_CONFIG at `auth.krb5_conf` (manifest).
- credssp: every device allows CredSSP (over HTTPS); the inventory uses it with the fleet's account.
- certificate: the lab CA issues a client certificate mapped to the fleet's account on every device, and one mapped
  to no account (`auth.unmapped_cert_pem`, for showing a wrong certificate).
"""

from __future__ import annotations

import logging
import pathlib

import os

from . import kdc, outputs
from .control import ControlSurface
from .pki import CertificateAuthority
from .scenarios import LAB_USER, Fleet, prepare_file_systems
from .server import LabServer

log = logging.getLogger(__name__)


class RunningLab:
    def __init__(self, fleet: Fleet, inventory_path: pathlib.Path | str | None = None,
                 manifest_path: pathlib.Path | str | None = None, auth: str = "ntlm") -> None:
        if auth not in outputs.AUTH_MODES:
            raise ValueError(f"unknown authentication {auth!r}; choose one of {', '.join(outputs.AUTH_MODES)}")
        self.fleet = fleet
        self.auth = auth
        self.realm: kdc.KerberosRealm | None = None
        self.auth_files: dict[str, str] = {}  # what outputs write about the authentication (paths, realm)
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
            self._prepare_authentication()
            await self.server.start()  # returns once every device's listeners are bound
            self.control = ControlSurface(self.fleet.devices, refresh_listeners=self.server.refresh_listeners)
            await self.control.start()
        except BaseException:
            await self.stop()
            raise
        if self.inventory_path:
            outputs.write_inventory(self.inventory_path, self.fleet, self.ca_file, self.auth, self.auth_files)
        if self.manifest_path:
            outputs.write_manifest(self.manifest_path, self.fleet, self.ca_file, self.control.url,
                                   self.control.token, self.inventory_path, self.auth, self.auth_files)

    def _prepare_authentication(self) -> None:
        assert self.ca is not None and self.server is not None
        password = self.fleet.accounts[LAB_USER]
        if self.auth == "kerberos":
            self.realm = kdc.KerberosRealm(self.fleet.work_dir / "kerberos")
            self.realm.start({LAB_USER: password}, [device.name.lower() for device in self.fleet.devices])
            # The acceptor (pyspnego over GSSAPI, in this process) reads the realm's configuration from KRB5_CONFIG and
            # each device's key from that device's keytab.
            os.environ.update(self.realm.environment())
            self.server.authenticator.kerberos_domain = self.realm.netbios_domain
            self.server.authenticator.kerberos_keytab = self.realm.keytab
            for device in self.fleet.devices:
                device.accounts[f"{self.realm.netbios_domain}\\{LAB_USER}"] = password
            self.auth_files = {"realm": self.realm.realm, "krb5_conf": str(self.realm.krb5_conf),
                               "principal": f"{LAB_USER}@{self.realm.realm}"}
        elif self.auth == "credssp":
            for device in self.fleet.devices:
                device.service.allow_credssp = True
        elif self.auth == "certificate":
            clients = self.fleet.work_dir / "pki" / "clients"
            cert, key = self.ca.issue_client(f"{LAB_USER}@localhost", clients)
            unmapped_cert, unmapped_key = self.ca.issue_client("nobody@localhost", clients)
            for device in self.fleet.devices:
                device.service.allow_certificate = True
            self.auth_files = {"cert_pem": str(cert), "cert_key_pem": str(key),
                               "unmapped_cert_pem": str(unmapped_cert), "unmapped_cert_key_pem": str(unmapped_key)}

    async def stop(self) -> None:
        self._remove_outputs()
        if self.control is not None:
            await self.control.stop()
            self.control = None
        if self.server is not None:
            await self.server.stop()
            self.server = None
        if self.realm is not None:
            self.realm.stop()
            self.realm = None

    def _remove_outputs(self) -> None:
        for path in (self.inventory_path, self.manifest_path):
            if path is not None:
                path.unlink(missing_ok=True)

    def summary(self) -> str:
        devices = self.fleet.devices
        first, last = devices[0], devices[-1]
        span = first.address if len(devices) == 1 else f"{first.address}-{last.address}"
        expected = ", ".join(f"{count} {status}" for status, count in sorted(self.counts().items()))
        parts = [f"winrm-lab: {len(devices)} device(s), scenario {self.fleet.scenario}, seed {self.fleet.seed}, "
                 f"authentication {self.auth} "
                 f"(expected: {expected}), listening on {span} ports {first.http_port}/{first.https_port}"]
        if self.control is not None:
            parts.append(f"control {self.control.url}")
        if self.inventory_path:
            parts.append(f"inventory {self.inventory_path}")
        if self.manifest_path:
            parts.append(f"manifest {self.manifest_path}")
        if self.realm is not None:
            parts.append(f"Kerberos realm {self.realm.realm}: export KRB5_CONFIG={self.realm.krb5_conf}")
        return "; ".join(parts)

    def counts(self) -> dict[str, int]:
        tally: dict[str, int] = {}
        for device in self.fleet.devices:
            key = device.expected.get("status", "?")
            tally[key] = tally.get(key, 0) + 1
        return tally

