# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's one WinRM client: opens a shell on one device (trying each transport in order, with a managed
Kerberos ticket when asked) and runs device scripts in it, each as one command.

The fifth layer (winrm_settings -> winrm_failures -> winrm_http -> winrm_envelopes -> winrm_client ->
winrm_streaming): every failure leaves it as a DeviceError named by winrm_failures.classify. Each client talks to one
device; make one per device and thread.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
import typing as t
import weakref

try:
    import requests
    import requests.adapters
    import urllib3.util.ssl_
    import winrm.transport

    HAS_WINRM = True
    WINRM_IMPORT_ERROR = None
except ImportError as import_error:  # reported by the action plugin with the install hint
    HAS_WINRM = False
    WINRM_IMPORT_ERROR = import_error

from ansible_collections.remote_support.windows.plugins.module_utils.device_script import DeviceScript
from ansible_collections.remote_support.windows.plugins.module_utils import winrm_http
from ansible_collections.remote_support.windows.plugins.module_utils.errors import DeviceError
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_envelopes import WinRSProtocol
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_failures import classify, kerberos_advice
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_settings import WinRMSettings
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_streaming import (
    SAFE_ENVELOPE_BYTES,
    StreamingCommand,
    stream_command_arguments,
    stream_header,
)

# Characters of stdin per Send. pywinrm asks for 153,600-byte envelopes; base64 grows data by 4/3 and the envelope
# itself needs a little room, so 96 KiB of data per Send stays well inside what every Windows version accepts.
STDIN_CHUNK_BYTES = 96 * 1024

try:
    from spnego._ntlm_raw.crypto import lmowfv1, ntowfv1

    def _ntlm_hashes(password: str) -> tuple[bytes, bytes]:
        return lmowfv1(password), ntowfv1(password)
except ImportError:  # another pyspnego layout: the password goes as it is, hashed per handshake
    _ntlm_hashes = None  # type: ignore[assignment]

_NTLM_HASH_FORM = re.compile(r"^[a-fA-F0-9]{32}:[a-fA-F0-9]{32}$")

# KRB5CCNAME is process-wide: clients in other threads wait while one authenticates with its own ticket cache.
_KERBEROS_LOCK = threading.Lock()


class _DeviceAdapter(requests.adapters.HTTPAdapter if HAS_WINRM else object):  # type: ignore[misc]
    """requests' transport adapter for one device's session, mounted through requests' public Session.mount.

    With a CA file to trust, every connection uses one SSL context that already holds it, shared by every device
    with the same file: requests would otherwise have urllib3 build a context and load the file again for each
    device's connection (about 2 ms of CPU each, a tenth of a fleet probe). cert_verify is the hook requests
    documents for adapters that handle verification themselves; the certificate is still required and the host
    name still checked by urllib3, against exactly that file."""

    def __init__(self, ssl_context: t.Any) -> None:
        self._ssl_context = ssl_context
        super().__init__()

    def init_poolmanager(self, *args: t.Any, **kwargs: t.Any) -> None:
        kwargs["ssl_context"] = self._ssl_context
        super().init_poolmanager(*args, **kwargs)

    def cert_verify(self, conn: t.Any, url: str, verify: t.Any, cert: t.Any) -> None:
        super().cert_verify(conn, url, verify, cert)
        conn.ca_certs = conn.ca_cert_dir = None  # already in the context; loading it again is the cost saved


@functools.lru_cache(maxsize=None)
def _trusting(ca_path: str) -> t.Any:
    """One SSL context per CA file (or folder) for the process, made as urllib3 makes its own."""
    context = urllib3.util.ssl_.create_urllib3_context()
    if os.path.isdir(ca_path):
        context.load_verify_locations(capath=ca_path)
    else:
        context.load_verify_locations(cafile=ca_path)
    return context


@functools.lru_cache(maxsize=64)
def _ntlm_password(password: str) -> str:
    """The password as the "LM:NT" hash pair pyspnego accepts in its place (spnego.client, spnego.NTLMHash).

    pyspnego derives both hashes from a password for every authentication, the LM one with a pure-Python DES that
    costs about 3 ms of CPU: a tenth of a device's probe when a fleet of devices shares one password. Derived once
    here with pyspnego's own functions (not public: there is no public way to derive them), the handshake is the
    same. A password already in that form is left as it is, as pyspnego would read it."""
    if not password or _NTLM_HASH_FORM.match(password) or _ntlm_hashes is None:
        return password
    lm_hash, nt_hash = _ntlm_hashes(password)
    return f"{lm_hash.hex()}:{nt_hash.hex()}"


class WinRMClient:
    """Runs device scripts on one device over WinRM. Make one client per device; `shell()` keeps one shell open."""

    def __init__(self, settings: WinRMSettings, protocol_factory: t.Callable[..., t.Any] | None = None) -> None:
        if not HAS_WINRM and protocol_factory is None:
            raise DeviceError("protocol", "The Python library pywinrm is not installed on the controller. Install it "
                                          "with: pip install pywinrm")
        self.settings = settings
        self._protocol_factory = protocol_factory or WinRSProtocol
        self._transport: str | None = None  # the transport that authenticated, once one has
        self._ticket_cache: str | None = None  # FILE: credential cache of a managed Kerberos ticket

    def _protocol(self, transport: str | None = None) -> t.Any:
        s = self.settings
        transport = transport or self._transport or s.transport
        # pywinrm reads the proxy from the environment for "legacy_requests", uses none for None.
        proxy = None if s.ignore_proxy else (s.proxy or "legacy_requests")
        protocol = self._protocol_factory(
            endpoint=s.endpoint, transport=transport, username=s.user,
            password=_ntlm_password(s.password) if transport == "ntlm" else s.password,
            server_cert_validation=s.server_cert_validation,
            ca_trust_path=s.ca_trust_path or "legacy_requests",
            cert_pem=s.cert_pem, cert_key_pem=s.cert_key_pem,
            kerberos_delegation=s.kerberos_delegation, kerberos_hostname_override=s.kerberos_hostname_override,
            message_encryption=s.message_encryption, send_cbt=s.send_cbt, proxy=proxy,
            operation_timeout_sec=s.operation_timeout, read_timeout_sec=s.read_timeout,
        )
        _adjust_session(protocol, s)
        return protocol

    @contextlib.contextmanager
    def _kerberos_ticket(self, transport: str) -> t.Iterator[None]:
        """With Kerberos and a password (kinit_mode managed), the authentication handshake runs with a ticket this
        client got itself: kinit once into a private credential cache (removed with the client), which KRB5CCNAME
        names while the handshake runs. Without a password the controller's own cache is used as it is."""
        s = self.settings
        if transport != "kerberos" or not s.password or s.kinit_mode != "managed":
            yield
            return
        with _KERBEROS_LOCK:  # KRB5CCNAME is process-wide; clients in other threads wait for the handshake
            if self._ticket_cache is None:
                directory = tempfile.mkdtemp(prefix="remote_support-krb5-")
                weakref.finalize(self, shutil.rmtree, directory, True)
                cache = f"FILE:{os.path.join(directory, 'ccache')}"
                kinit(s, cache)
                self._ticket_cache = cache
            previous = os.environ.get("KRB5CCNAME")
            os.environ["KRB5CCNAME"] = self._ticket_cache
            try:
                yield
            finally:
                if previous is None:
                    os.environ.pop("KRB5CCNAME", None)
                else:
                    os.environ["KRB5CCNAME"] = previous

    def _open_shell(self) -> tuple[t.Any, str]:
        """A protocol and an open shell, trying each transport in order until one authenticates."""
        candidates = (self._transport,) if self._transport else self.settings.transports
        failure: DeviceError | None = None
        for transport in candidates:
            try:
                with self._kerberos_ticket(transport):
                    protocol = self._protocol(transport)
                    shell_id = protocol.open_shell(codepage=65001, noprofile=True)
            except Exception as exc:
                error = classify(exc, self.settings, transport)
                if error.reason != "auth" or transport == candidates[-1]:
                    if failure is not None and error.reason == "auth":
                        error = DeviceError("auth", f"{error.message} Tried in order: {', '.join(candidates)}; "
                                                    f"the first failed with: {failure.message}", error.detail)
                    raise error from None
                failure = failure or error
                continue
            self._transport = transport
            return protocol, shell_id
        raise AssertionError("no transport to try")  # settings always hold one

    def run_script(self, script: DeviceScript, script_input: t.Mapping[str, t.Any] | None = None) -> dict[str, t.Any]:
        """Runs one device script in a shell of its own and returns its JSON result."""
        with self.shell() as shell:
            return shell.run(script, script_input or {})

    def _run_in_shell(self, protocol: t.Any, shell_id: str, script: DeviceScript,
                      script_input: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
        payload = script.stdin_payload(script_input)
        try:
            command_id = protocol.run_command(shell_id, "powershell.exe", script.command_arguments(),
                                              skip_cmd_shell=True)
            for offset in range(0, max(len(payload), 1), STDIN_CHUNK_BYTES):
                chunk = payload[offset:offset + STDIN_CHUNK_BYTES]
                protocol.send_command_input(shell_id, command_id, chunk,
                                            end=offset + STDIN_CHUNK_BYTES >= len(payload))
            stdout, stderr, exit_code = protocol.get_command_output(shell_id, command_id)
        except Exception as exc:
            raise classify(exc, self.settings, self._transport) from None
        return script.parse_result(stdout, stderr, exit_code)

    @contextlib.contextmanager
    def shell(self) -> t.Iterator[DeviceShell]:
        """One WinRM shell for a task's work: run several scripts (each one command) without reconnecting."""
        protocol, shell_id = self._open_shell()
        try:
            yield DeviceShell(self, protocol, shell_id)
        finally:
            try:
                protocol.close_shell(shell_id)
            except Exception:
                # The result (or the first error) matters more than a failed cleanup; the device drops idle shells
                # itself after its IdleTimeout.
                pass


def _adjust_session(protocol: t.Any, settings: WinRMSettings) -> None:
    """What pywinrm's Protocol has no argument for, made on its transport.

    - Connect timeout: pywinrm has one timeout, which its transport hands to requests for every request; requests
      also takes a (connect, read) pair, so a dead device fails after connection_timeout instead of the longer read
      timeout. It is set on the transport's public read_timeout_sec before anything is sent: over HTTP, building
      pywinrm's session already sends the first request (the encryption handshake).
    - NTLM, Basic and certificates go over http.client (winrm_http.DirectTransport) when no proxy is on the way;
      the rest keeps pywinrm's requests session, with:
    - The environment read once: pywinrm takes the proxy and CA settings from it when it builds the session; left
      as it is, requests would scan the whole environment again on every request. The session keeps what pywinrm
      took (Session.trust_env, public).
    - One SSL context per CA file, shared by every device that trusts that file (_DeviceAdapter).
    """
    transport = getattr(protocol, "transport", None)
    if transport is None:
        return
    transport.read_timeout_sec = (settings.connection_timeout, settings.read_timeout)
    if not hasattr(transport, "build_session"):
        return  # a stand-in for pywinrm (the unit tests' recorders)
    if transport.__class__ is winrm.transport.Transport and winrm_http.serves(transport):
        transport.__class__ = winrm_http.DirectTransport  # the same settings; only how its messages travel
        return
    session = transport.build_session()  # public; pywinrm builds it once and keeps it on the transport
    session.trust_env = False
    if isinstance(session.verify, str) and os.path.exists(session.verify) and not session.cert:
        # Only with a CA file and no client certificate: the client certificate is loaded into the context per
        # connection, which a shared context must not collect. A CA path that does not exist is left to requests,
        # whose error names it.
        session.mount("https://", _DeviceAdapter(_trusting(session.verify)))


def kinit(settings: WinRMSettings, cache: str) -> None:
    """Gets a ticket for settings.user into the credential cache `cache` with kinit, the password on stdin (never on
    the command line, never in the environment). Raises DeviceError("auth") naming what kinit said."""
    if "@" not in settings.user:
        # Without a realm kinit would ask the default realm's KDC of whatever krb5.conf the controller has.
        raise DeviceError("auth", f"Kerberos needs the user as user@REALM (the realm in capitals), not "
                                  f"'{settings.user}'. Set ansible_user to the user principal name, or choose the "
                                  "ntlm transport.")
    command = [settings.kinit_cmd, *shlex.split(settings.kinit_args or ""), settings.user]
    env = dict(os.environ, KRB5CCNAME=cache)
    try:
        completed = subprocess.run(command, input=(settings.password + "\n").encode("utf-8"), env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   timeout=settings.connection_timeout + 20, check=False)
    except FileNotFoundError:
        raise DeviceError("auth", f"Kerberos needs '{settings.kinit_cmd}' on the controller to get a ticket for "
                                  f"'{settings.user}' from the password. Install the Kerberos client (krb5-user, "
                                  "krb5-workstation) or set ansible_winrm_kinit_cmd.") from None
    except subprocess.TimeoutExpired:
        raise DeviceError("auth", f"kinit for '{settings.user}' got no answer from the KDC within "
                                  f"{settings.connection_timeout + 20} s. Check the [realms] section of the "
                                  "controller's krb5.conf and that the KDC is reachable.") from None
    if completed.returncode != 0:
        said = completed.stderr.decode("utf-8", "replace").strip().replace(settings.password, "********")
        raise DeviceError("auth", f"kinit could not get a ticket for '{settings.user}': "
                                  f"{kerberos_advice(said, settings)}. (kinit said: {said[:300]})", said)


class DeviceShell:
    """An open shell on one device; `run` executes a device script in it."""

    def __init__(self, client: WinRMClient, protocol: t.Any, shell_id: str) -> None:
        self._client = client
        self._protocol = protocol
        self._shell_id = shell_id

    def run(self, script: DeviceScript, script_input: t.Mapping[str, t.Any] | None = None) -> dict[str, t.Any]:
        """Runs one device script (one WinRM command) and returns its JSON result; raises DeviceError."""
        return self._client._run_in_shell(self._protocol, self._shell_id, script, script_input or {})

    def start_stream(self, script: DeviceScript, script_input: t.Mapping[str, t.Any],
                     envelope: int | None = None) -> StreamingCommand:
        """Starts `script` through stream_bootstrap.ps1 and sends its header; the caller then sends and receives
        (see StreamingCommand). `envelope`: the envelope size the device accepts (default: the safe one)."""
        try:
            command_id = self._protocol.run_command(self._shell_id, "powershell.exe", stream_command_arguments(),
                                                    skip_cmd_shell=True)
        except Exception as exc:
            raise classify(exc, self._client.settings) from None
        command = StreamingCommand(self._client.settings, self._protocol, self._shell_id, command_id,
                                   envelope or SAFE_ENVELOPE_BYTES)
        header = stream_header(script, script_input)
        for offset in range(0, len(header), command.chunk_bytes):
            command.send(header[offset:offset + command.chunk_bytes])
        return command
