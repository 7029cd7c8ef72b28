"""The lab's own Kerberos realm: an MIT KDC on loopback, for `winrm-lab --auth kerberos`.

A domain-joined fleet authenticates with Kerberos. The lab stands one up from Debian's MIT Kerberos packages
(krb5-kdc, krb5-admin-server): a throwaway realm in the lab's work directory, a user principal for the fleet's account
(with the fleet's password), a service principal `HTTP/<device name>` per device, and a keytab holding the service
keys (one keytab per device, so a device accepts only tickets for itself), which the lab's Kerberos acceptor (pyspnego over GSSAPI) reads. The KDC listens on 127.0.0.1 only, on a free
port, and `krb5.conf` (what clients point KRB5_CONFIG at) names it and nothing else: no DNS lookups, no other realm.

Nothing here is a production KDC: the master key is random and thrown away with the directory.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import secrets
import shutil
import socket
import subprocess
import time
import typing as t

DEFAULT_REALM = "WINRM-LAB.TEST"
# Debian's packages put the KDC tools in /usr/sbin, which is not on every PATH.
SEARCH_PATH = os.pathsep.join((os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/sbin"))
PACKAGES = "krb5-kdc krb5-admin-server krb5-user (Debian) or krb5-server krb5-workstation (Fedora/RHEL)"


class KerberosUnavailable(RuntimeError):
    """The MIT Kerberos tools the lab needs are missing."""


def tool(name: str) -> str:
    found = shutil.which(name, path=SEARCH_PATH)
    if found is None:
        raise KerberosUnavailable(f"winrm-lab --auth kerberos needs MIT Kerberos' {name}: install {PACKAGES}")
    return found


def _free_port() -> int:
    # A port free for both TCP and UDP on 127.0.0.1 (the KDC listens on both).
    for _attempt in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise OSError("no free port for the KDC on 127.0.0.1")


class KerberosRealm:
    """One running KDC. `start(users, services)`, then `krb5_conf`, `keytab`; `stop()` ends it."""

    def __init__(self, directory: pathlib.Path | str, realm: str = DEFAULT_REALM) -> None:
        self.directory = pathlib.Path(directory)
        self.realm = realm
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def krb5_conf(self) -> pathlib.Path:
        return self.directory / "krb5.conf"

    def keytab(self, host: str) -> pathlib.Path:
        """The keytab of one device: its own service key only, as a Windows computer account has."""
        return self.directory / "keytabs" / f"{host}.keytab"

    @property
    def netbios_domain(self) -> str:
        """The domain part Windows shows for the realm's accounts (DOMAIN\\user)."""
        return self.realm.split(".")[0]

    def environment(self) -> dict[str, str]:
        return {"KRB5_CONFIG": str(self.krb5_conf), "KRB5_KDC_PROFILE": str(self.directory / "kdc.conf")}

    def start(self, users: t.Mapping[str, str], service_hosts: t.Iterable[str], timeout: float = 30.0) -> None:
        """Creates the realm with `users` (name -> password) and HTTP/<host> for each service host, then starts the
        KDC and returns once it accepts connections."""
        kdb5_util, kadmin, krb5kdc = tool("kdb5_util"), tool("kadmin.local"), tool("krb5kdc")
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        self.port = _free_port()
        self._write_configuration()
        env = dict(os.environ, **self.environment())
        master = secrets.token_urlsafe(24)
        self._run([kdb5_util, "create", "-s", "-r", self.realm, "-P", master], env)
        # One kadmin.local reads every command: one process instead of two per device.
        commands = [f"addprinc -pw {password} {user}@{self.realm}" for user, password in users.items()]
        for host in sorted(set(service_hosts)):
            principal = f"HTTP/{host}@{self.realm}"
            commands += [f"addprinc -randkey {principal}", f"ktadd -k {self.keytab(host)} -norandkey {principal}"]
        (self.directory / "keytabs").mkdir(mode=0o700, exist_ok=True)
        self._run([kadmin, "-r", self.realm], env, "\n".join(commands) + "\nquit\n")
        log = open(self.directory / "krb5kdc.out", "wb")  # noqa: SIM115 - the KDC writes to it until stop()
        self._process = subprocess.Popen([krb5kdc, "-n", "-r", self.realm], env=env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the KDC exited at start: {(self.directory / 'krb5kdc.out').read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the KDC did not listen on 127.0.0.1:{self.port} within {timeout:.0f} s")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def _run(self, command: list[str], env: dict[str, str], stdin: str = "") -> None:
        completed = subprocess.run(command, input=stdin.encode(), env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, timeout=120, check=False)
        output = completed.stdout.decode("utf-8", "replace")
        if completed.returncode != 0 or "error" in output.lower() and "while" in output.lower():
            # The commands carry passwords; say which tool failed and its last words, not what it was given.
            tail = "\n".join(line for line in output.splitlines() if "-pw" not in line)[-1500:]
            raise RuntimeError(f"{os.path.basename(command[0])} failed ({completed.returncode}): {tail}")

    def _write_configuration(self) -> None:
        d = self.directory
        (d / "kdc.conf").write_text(f"""[kdcdefaults]
    kdc_listen = 127.0.0.1:{self.port}
    kdc_tcp_listen = 127.0.0.1:{self.port}

[realms]
    {self.realm} = {{
        database_name = {d}/principal
        key_stash_file = {d}/stash
        acl_file = {d}/kadm5.acl
        max_life = 10h 0m 0s
        max_renewable_life = 1d 0h 0m 0s
        supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal
    }}

[logging]
    kdc = FILE:{d}/kdc.log
""")
        (d / "kadm5.acl").write_text("")
        self.krb5_conf.write_text(f"""# The lab's own realm; point KRB5_CONFIG here. Only this realm, only its loopback KDC.
[libdefaults]
    default_realm = {self.realm}
    dns_lookup_kdc = false
    dns_lookup_realm = false
    dns_canonicalize_hostname = false
    rdns = false
    forwardable = true
    udp_preference_limit = 1

[realms]
    {self.realm} = {{
        kdc = 127.0.0.1:{self.port}
    }}
""")
