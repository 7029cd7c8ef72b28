# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's one WinRM client: connection settings, running a device script, and naming every failure.

Plain Python, no Ansible runtime: the action plugins resolve settings from inventory variables and task options
(`resolve_settings`), then call `WinRMClient`. Each client talks to one device; make one per device and thread.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import json
import os
import shlex
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import typing as t
import weakref
import xml.parsers.expat

try:
    import requests.exceptions
    import winrm.exceptions
    import winrm.protocol
    import xmltodict

    HAS_WINRM = True
    WINRM_IMPORT_ERROR = None
except ImportError as import_error:  # reported by the action plugin with the install hint
    HAS_WINRM = False
    WINRM_IMPORT_ERROR = import_error

from ansible_collections.remote_support.windows.plugins.module_utils.device_script import SCRIPTS_DIR, DeviceScript
from ansible_collections.remote_support.windows.plugins.module_utils.errors import DeviceError, SettingsError

TRANSPORTS = ("ntlm", "basic", "kerberos", "credssp", "certificate")

# WSManFault codes for the per-user shell quota (MaxShellsPerUser), as Windows sends them.
QUOTA_FAULT_CODES = frozenset((
    2150859173,  # 0x803381A5 ERROR_WSMAN_QUOTA_MAX_SHELLS
    2150859174,  # 0x803381A6 ERROR_WSMAN_QUOTA_MAX_SHELLS_PPQ (per user)
    2150859046,  # 0x80338126 ERROR_WSMAN_QUOTA_MAX_OPERATIONS
))

# The task options every module takes for its connection, in the argument-spec format. Each one left unset is taken
# from the play's connection (user and password only), then from the host's inventory variables (WINRM_HOST_VARIABLES
# or, for a host whose ansible_connection is psrp, PSRP_HOST_VARIABLES), then from the default below.
WINRM_ARGUMENT_SPEC: dict[str, dict[str, t.Any]] = {
    "host": {"type": "str"},
    "port": {"type": "int"},
    "user": {"type": "str"},
    "password": {"type": "str", "no_log": True},
    "scheme": {"type": "str", "choices": ["https", "http"]},
    "path": {"type": "str"},
    "transport": {"type": "list", "elements": "str", "choices": list(TRANSPORTS)},
    "server_cert_validation": {"type": "str", "choices": ["validate", "ignore"]},
    "ca_trust_path": {"type": "path"},
    "message_encryption": {"type": "str", "choices": ["auto", "always", "never"]},
    "send_cbt": {"type": "bool"},
    "proxy": {"type": "str"},
    "ignore_proxy": {"type": "bool"},
    "cert_pem": {"type": "path"},
    "cert_key_pem": {"type": "path", "no_log": False},
    "kerberos_hostname_override": {"type": "str"},
    "kerberos_delegation": {"type": "bool"},
    "kinit_mode": {"type": "str", "choices": ["managed", "manual"]},
    "kinit_cmd": {"type": "str"},
    "kinit_args": {"type": "str"},
    "connection_timeout": {"type": "int"},
    "operation_timeout": {"type": "int"},
    "read_timeout": {"type": "int"},
}

# Inventory variables for each setting, first found wins: the names the ansible.builtin.winrm connection reads, so an
# existing Windows inventory works unchanged. docs/connection-settings.md has them in one table.
WINRM_HOST_VARIABLES: dict[str, tuple[str, ...]] = {
    "host": ("ansible_host", "ansible_winrm_host"),
    "port": ("ansible_port", "ansible_winrm_port"),
    "user": ("ansible_user", "ansible_winrm_user"),
    "password": ("ansible_password", "ansible_winrm_password", "ansible_winrm_pass"),
    "scheme": ("ansible_winrm_scheme",),
    "path": ("ansible_winrm_path",),
    "transport": ("ansible_winrm_transport",),
    "server_cert_validation": ("ansible_winrm_server_cert_validation",),
    "ca_trust_path": ("ansible_winrm_ca_trust_path",),
    "message_encryption": ("ansible_winrm_message_encryption",),
    "send_cbt": ("ansible_winrm_send_cbt",),
    "proxy": ("ansible_winrm_proxy",),
    "ignore_proxy": (),
    "cert_pem": ("ansible_winrm_cert_pem",),
    "cert_key_pem": ("ansible_winrm_cert_key_pem",),
    "kerberos_hostname_override": ("ansible_winrm_kerberos_hostname_override",),
    "kerberos_delegation": ("ansible_winrm_kerberos_delegation",),
    "kinit_mode": ("ansible_winrm_kinit_mode",),
    "kinit_cmd": ("ansible_winrm_kinit_cmd",),
    "kinit_args": ("ansible_winrm_kinit_args",),
    "connection_timeout": ("ansible_winrm_connection_timeout",),
    "operation_timeout": ("ansible_winrm_operation_timeout_sec",),
    "read_timeout": ("ansible_winrm_read_timeout_sec",),
}

# The same settings for a host whose ansible_connection is psrp: the names the ansible.builtin.psrp connection reads,
# with the same meaning (PSRP_VALUES translates the two whose values are spelt differently).
PSRP_HOST_VARIABLES: dict[str, tuple[str, ...]] = {
    "host": ("ansible_host", "ansible_psrp_host"),
    "port": ("ansible_port", "ansible_psrp_port"),
    "user": ("ansible_user", "ansible_psrp_user"),
    "password": ("ansible_password", "ansible_psrp_password", "ansible_psrp_pass", "ansible_winrm_password",
                 "ansible_winrm_pass"),
    "scheme": ("ansible_psrp_protocol",),
    "path": ("ansible_psrp_path",),
    "transport": ("ansible_psrp_auth",),
    "server_cert_validation": ("ansible_psrp_cert_validation",),
    "ca_trust_path": ("ansible_psrp_ca_cert", "ansible_psrp_cert_trust_path"),
    "message_encryption": ("ansible_psrp_message_encryption",),
    "send_cbt": ("ansible_psrp_negotiate_send_cbt",),
    "proxy": ("ansible_psrp_proxy",),
    "ignore_proxy": ("ansible_psrp_ignore_proxy",),
    "cert_pem": ("ansible_psrp_certificate_pem",),
    "cert_key_pem": ("ansible_psrp_certificate_key_pem",),
    "kerberos_hostname_override": ("ansible_psrp_negotiate_hostname_override",),
    "kerberos_delegation": ("ansible_psrp_negotiate_delegate",),
    "kinit_mode": (),
    "kinit_cmd": (),
    "kinit_args": (),
    "connection_timeout": ("ansible_psrp_connection_timeout",),
    "operation_timeout": ("ansible_psrp_operation_timeout",),
    "read_timeout": ("ansible_psrp_read_timeout",),
}

# psrp's `auth: negotiate` (its default) is SPNEGO: Kerberos when the controller has a ticket, else NTLM. pywinrm has
# no SPNEGO transport, so it becomes that list, tried in order.
PSRP_AUTH = {"negotiate": ["kerberos", "ntlm"]}

DEFAULT_OPERATION_TIMEOUT = 20  # pywinrm's default; a Receive returns at least this often
DEFAULT_READ_TIMEOUT = 30  # must exceed the operation timeout
DEFAULT_CONNECTION_TIMEOUT = 10  # seconds to establish TCP (and TLS) before calling the device unreachable

# Characters of stdin per Send. pywinrm asks for 153,600-byte envelopes; base64 grows data by 4/3 and the envelope
# itself needs a little room, so 96 KiB of data per Send stays well inside what every Windows version accepts.
STDIN_CHUNK_BYTES = 96 * 1024


@dataclasses.dataclass(frozen=True)
class WinRMSettings:
    """Everything needed to reach one device. `password` never appears in repr()."""

    host: str
    port: int
    user: str
    password: str = dataclasses.field(repr=False)
    scheme: str = "https"
    transport: str = "ntlm"
    server_cert_validation: str = "validate"
    ca_trust_path: str | None = None
    message_encryption: str = "auto"
    connection_timeout: int = DEFAULT_CONNECTION_TIMEOUT
    operation_timeout: int = DEFAULT_OPERATION_TIMEOUT
    read_timeout: int = DEFAULT_READ_TIMEOUT
    path: str = "wsman"
    # Tried in order after `transport` when it fails to authenticate (an inventory's transport list).
    fallback_transports: tuple[str, ...] = ()
    send_cbt: bool = True
    proxy: str | None = None  # a proxy URL; None: the environment's (HTTP(S)_PROXY, NO_PROXY)
    ignore_proxy: bool = False
    cert_pem: str | None = None
    cert_key_pem: str | None = None
    kerberos_hostname_override: str | None = None
    kerberos_delegation: bool = False
    kinit_mode: str = "managed"  # with a password, get a Kerberos ticket for this task; manual: use the cache
    kinit_cmd: str = "kinit"
    kinit_args: str | None = None

    @property
    def endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}/{self.path.lstrip('/')}"

    @property
    def transports(self) -> tuple[str, ...]:
        return (self.transport,) + self.fallback_transports


def _transport_list(value: t.Any) -> list[str]:
    # ansible_winrm_transport may be a list or a comma-separated text (the winrm connection tries each in order).
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(",")
    return [str(item).strip().lower() for item in value if str(item).strip()]


def _as_bool(name: str, value: t.Any) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on", "y", "t"):
        return True
    if text in ("0", "false", "no", "off", "n", "f"):
        return False
    raise SettingsError(f"{name} must be true or false, not {value!r}")


def host_variable_map(host_vars: t.Mapping[str, t.Any]) -> dict[str, tuple[str, ...]]:
    """The inventory variables to read for this host: psrp's names when its connection is psrp, else winrm's."""
    connection = str(host_vars.get("ansible_connection") or "")
    return PSRP_HOST_VARIABLES if connection.rpartition(".")[2] == "psrp" else WINRM_HOST_VARIABLES


def resolve_settings(options: t.Mapping[str, t.Any], host_vars: t.Mapping[str, t.Any],
                     inventory_hostname: str, play: t.Mapping[str, t.Any] | None = None) -> WinRMSettings:
    """Connection settings for one device: task option, else the play's connection, else inventory variable, else
    the safe default.

    `options` holds the task's values for WINRM_ARGUMENT_SPEC (None = not set); `play` the user and password Ansible
    resolved for the play's connection to this host (ansible_user / ansible_password, else -u / --ask-pass or the
    play's remote_user: how AWX hands over a machine credential); `host_vars` the host's variables, already templated.
    """
    play = play or {}
    variable_map = host_variable_map(host_vars)
    psrp = variable_map is PSRP_HOST_VARIABLES
    chosen: dict[str, t.Any] = {}
    for name, variables in variable_map.items():
        value = options.get(name)
        if value is None and play.get(name) not in (None, ""):
            value = play[name]
        if value is None:
            value = next((host_vars[v] for v in variables if host_vars.get(v) not in (None, "")), None)
        chosen[name] = value

    host = chosen["host"] or inventory_hostname
    user = chosen["user"]
    port = _as_int("port", chosen["port"])
    scheme = (chosen["scheme"] or ("http" if port == 5985 else "https")).lower()
    if port is None:
        port = 5985 if scheme == "http" else 5986
    transport_value = chosen["transport"]
    if psrp and isinstance(transport_value, str):
        transport_value = PSRP_AUTH.get(transport_value.lower(), transport_value)
    transports = _transport_list(transport_value) or (list(PSRP_AUTH["negotiate"]) if psrp else ["ntlm"])
    validation = (chosen["server_cert_validation"] or "validate").lower()
    encryption = (chosen["message_encryption"] or "auto").lower()
    connection_timeout = _as_int("connection_timeout", chosen["connection_timeout"]) or DEFAULT_CONNECTION_TIMEOUT
    operation_timeout = _as_int("operation_timeout", chosen["operation_timeout"]) or DEFAULT_OPERATION_TIMEOUT
    read_timeout = _as_int("read_timeout", chosen["read_timeout"]) or max(DEFAULT_READ_TIMEOUT,
                                                                          operation_timeout + 10)
    kinit_mode = (chosen["kinit_mode"] or "managed").lower()

    for name, value, allowed in (("scheme", scheme, ("http", "https")),
                                 ("server_cert_validation", validation, ("validate", "ignore")),
                                 ("message_encryption", encryption, ("auto", "always", "never")),
                                 ("kinit_mode", kinit_mode, ("managed", "manual"))):
        if value not in allowed:
            raise SettingsError(f"{name} is {value!r}; it must be one of {', '.join(allowed)}")
    for value in transports:
        if value not in TRANSPORTS:
            raise SettingsError(f"transport is {value!r}; it must be one of {', '.join(TRANSPORTS)}")
    if not 0 < port < 65536:
        raise SettingsError(f"port {port} is outside 1-65535")
    for name, value in (("connection_timeout", connection_timeout), ("operation_timeout", operation_timeout),
                        ("read_timeout", read_timeout)):
        if value <= 0:
            raise SettingsError(f"{name} must be a positive number of seconds, not {value}")
    if read_timeout <= operation_timeout:
        raise SettingsError(f"read_timeout ({read_timeout} s) must exceed operation_timeout ({operation_timeout} s): "
                            "the device may hold a Receive open for the whole operation timeout")
    if scheme == "http":
        # Plain HTTP is used only with message encryption: anything else sends credentials or commands readable on
        # the wire.
        if "basic" in transports:
            raise SettingsError("Basic authentication over plain HTTP would send the password in clear text; use "
                                "scheme https, or transport ntlm or kerberos (which encrypt each message)")
        if encryption == "never":
            raise SettingsError("message_encryption never over plain HTTP would send every command and its output in "
                                "clear text; use scheme https, or message_encryption auto (which encrypts each "
                                "message over HTTP)")
        if "certificate" in transports:
            raise SettingsError("certificate authentication needs HTTPS (the client certificate is presented in the "
                                "TLS handshake); use scheme https")
    cert_pem, cert_key_pem = chosen["cert_pem"] or None, chosen["cert_key_pem"] or None
    if "certificate" in transports and not (cert_pem and cert_key_pem):
        raise SettingsError("certificate authentication needs the client certificate and its key: set "
                            "ansible_winrm_cert_pem and ansible_winrm_cert_key_pem (or the task's cert_pem and "
                            "cert_key_pem)")
    if not user and not transports == ["certificate"]:
        raise SettingsError(f"no user name for {inventory_hostname}: set ansible_user in the inventory, run the "
                            "play with -u, or set the task's user option")
    path = str(chosen["path"] or "wsman")
    return WinRMSettings(
        host=str(host), port=port, user=str(user or ""),
        password="" if chosen["password"] is None else str(chosen["password"]),
        scheme=scheme, transport=transports[0], fallback_transports=tuple(transports[1:]),
        server_cert_validation=validation, ca_trust_path=chosen["ca_trust_path"] or None, message_encryption=encryption,
        connection_timeout=connection_timeout, operation_timeout=operation_timeout, read_timeout=read_timeout,
        path=path, send_cbt=_as_bool("send_cbt", chosen["send_cbt"]) is not False,
        proxy=str(chosen["proxy"]) if chosen["proxy"] else None,
        ignore_proxy=bool(_as_bool("ignore_proxy", chosen["ignore_proxy"])),
        cert_pem=cert_pem, cert_key_pem=cert_key_pem,
        kerberos_hostname_override=chosen["kerberos_hostname_override"] or None,
        kerberos_delegation=bool(_as_bool("kerberos_delegation", chosen["kerberos_delegation"])),
        kinit_mode=kinit_mode, kinit_cmd=str(chosen["kinit_cmd"] or "kinit"),
        kinit_args=str(chosen["kinit_args"]) if chosen["kinit_args"] else None,
    )


def _as_int(name: str, value: t.Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{name} must be a whole number, not {value!r}") from None


def _exception_chain(exc: BaseException) -> t.Iterator[BaseException]:
    """The exception and everything it wraps: causes, contexts, urllib3's `reason`, exceptions passed as args."""
    seen: set[int] = set()
    stack: list[t.Any] = [exc]
    while stack:
        current = stack.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend((current.__cause__, current.__context__, getattr(current, "reason", None)))
        stack.extend(current.args)


_KERBEROS_LOCK = threading.Lock()

# What MIT Kerberos (through GSSAPI and pyspnego) says, and what the operator should check for each.
_KERBEROS_FAILURES = (
    (("client not found", "client_not_found", "client '"),
     "the KDC does not know the user '{user}'. Check the user name and its realm (user@REALM, realm in capitals)"),
    (("not found in kerberos database", "unknown principal", "principal unknown"),
     "the KDC does not know the service principal HTTP/{target}. Check that the device's computer account has that "
     "SPN (setspn -L), or set ansible_winrm_kerberos_hostname_override to the name it is registered under"),
    (("preauthentication failed", "password incorrect", "pre-authentication", "decrypt integrity check failed"),
     "the KDC refused the password of '{user}'. Check ansible_password (or the machine credential) for this user"),
    (("no kerberos credentials", "no credentials cache", "credentials cache file", "no credentials were supplied",
      "ticket expired", "no credentials"),
     "there is no valid Kerberos ticket for '{user}'. Give ansible_password (the collection then gets a ticket "
     "itself), or run kinit {user} on the controller before the play (klist shows the cache)"),
    (("cannot find kdc", "cannot contact any kdc", "cannot resolve network address", "default realm"),
     "no KDC could be reached for the user's realm. Check the realm in '{user}' and the [realms] and [domain_realm] "
     "sections of the controller's krb5.conf (KRB5_CONFIG)"),
    (("clock skew",),
     "the controller's clock and the KDC's differ by more than five minutes. Check NTP on both"),
)


_KERBEROS_EXCEPTIONS = frozenset(("KerberosExchangeError", "MutualAuthenticationError", "SpnegoError", "GSSError",
                                  "BadMechanismError", "NoCredentialError", "InvalidCredentialError",
                                  "OperationNotAvailableError"))


def _kerberos_advice(text: str, settings: WinRMSettings) -> str:
    """What to check, for what MIT Kerberos said."""
    text = text.lower()
    target = settings.kerberos_hostname_override or settings.host
    for needles, advice in _KERBEROS_FAILURES:
        if any(needle in text for needle in needles):
            break
    else:
        advice = ("Kerberos authentication failed. Check the user's realm (user@REALM), the controller's krb5.conf, "
                  "the service principal HTTP/{target} and that the controller and the KDC agree on the time")
    return advice.format(user=settings.user, target=target)


def _kerberos_failure(chain: list[BaseException], settings: WinRMSettings, where: str, detail: str
                      ) -> DeviceError | None:
    """A failure of the Kerberos handshake (GSSAPI, pykerberos, pyspnego) as `auth`, or None for anything else."""
    if not {type(e).__name__ for e in chain} & _KERBEROS_EXCEPTIONS and \
            not any(type(e).__module__.startswith(("spnego", "gssapi", "krb5", "kerberos")) for e in chain):
        return None
    advice = _kerberos_advice(" ".join(str(e) for e in chain), settings)
    return DeviceError("auth", f"Kerberos authentication to {where} failed: {advice}.", detail)


def classify(exc: BaseException, settings: WinRMSettings, transport: str | None = None) -> DeviceError:
    """Names a failure from pywinrm/requests with one of REASONS and a message that says what to check."""
    if isinstance(exc, DeviceError):
        return exc
    transport = transport or settings.transport
    where = f"{settings.host}:{settings.port}"
    chain = list(_exception_chain(exc))
    detail = _safe_detail(exc, settings)

    if HAS_WINRM and isinstance(exc, winrm.exceptions.InvalidCredentialsError):
        if transport == "certificate":
            return DeviceError("auth", f"The device at {where} rejected the client certificate "
                                       f"{settings.cert_pem}. Check that ansible_winrm_cert_pem and "
                                       "ansible_winrm_cert_key_pem belong together, that the certificate was issued by "
                                       "a CA the device trusts and is mapped to a local account on the device "
                                       "(winrm/config/service/certmapping).", detail)
        if transport == "kerberos":
            return DeviceError("auth", f"The device at {where} did not accept the Kerberos ticket of "
                                       f"'{settings.user}'. Check that the ticket is for the device's service "
                                       "principal (ansible_winrm_kerberos_hostname_override) and that the account "
                                       "may log on remotely.", detail)
        return DeviceError("auth", f"The device at {where} rejected the credentials of user '{settings.user}' "
                                   f"({transport}). Check ansible_user and ansible_password for this host (or the "
                                   "play's -u / --ask-pass, the machine credential), that the account may log on "
                                   f"remotely, and that the device accepts the '{transport}' transport.", detail)
    kerberos = _kerberos_failure(chain, settings, where, detail) if transport == "kerberos" else None
    if kerberos is not None:
        return kerberos
    refused_credssp = {"NTStatusException", "AuthenticationException", "SpnegoError"}
    if transport == "credssp" and {type(e).__name__ for e in chain} & refused_credssp:
        # The device answers a refused CredSSP logon inside the exchange (a TSRequest error code), not with a 401.
        return DeviceError("auth", f"The device at {where} refused the CredSSP logon of '{settings.user}'. Check "
                                   "ansible_user and ansible_password, that the account may log on remotely and that "
                                   "CredSSP is enabled on the device (Enable-WSManCredSSP -Role Server).", detail)
    if HAS_WINRM and isinstance(exc, winrm.exceptions.WinRMError) and "is not installed" in str(exc):
        return DeviceError("auth", f"The controller cannot authenticate with '{transport}': a Python library is "
                                   f"missing ({exc}). Install pywinrm[kerberos] for kerberos or pywinrm[credssp] for "
                                   "credssp, or choose another ansible_winrm_transport.", detail)
    if HAS_WINRM and isinstance(exc, winrm.exceptions.WSManFaultError):
        codes = {exc.wsman_fault_code, exc.wmierror_code}
        if codes & QUOTA_FAULT_CODES or (exc.fault_subcode or "").endswith("QuotaLimit"):
            return DeviceError("quota", f"The device at {where} refused to open another shell for '{settings.user}': "
                                        "the user's shell quota (MaxShellsPerUser) is used up. Close stale WinRM "
                                        "sessions for that user or wait for them to idle out, or raise "
                                        "winrm/config/winrs MaxShellsPerUser on the device.", detail)
        return DeviceError("protocol", f"The WinRM service at {where} answered with a fault: {exc.reason.strip()} "
                                       f"(WSManFault {exc.wsman_fault_code}). Check the WinRM configuration on the "
                                       "device.", detail)
    if any(isinstance(e, (ssl.SSLError, ssl.CertificateError)) for e in chain) or \
            (HAS_WINRM and isinstance(exc, requests.exceptions.SSLError)):
        return DeviceError("tls", f"The certificate presented by {where} could not be verified ({_tls_detail(chain)}). "
                                  "Check that ansible_winrm_ca_trust_path names the CA that issued the device's "
                                  f"certificate and that the certificate is valid for '{settings.host}'. Keep "
                                  "certificate validation on.", detail)
    if any(isinstance(e, socket.gaierror) for e in chain) or "NameResolutionError" in {type(e).__name__ for e in chain}:
        return DeviceError("dns", f"The host name '{settings.host}' could not be resolved. Check ansible_host for this "
                                  "device and that the controller's DNS knows the name.", detail)
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return DeviceError("refused", f"{where} refused the connection. Check that the device is on, that the WinRM "
                                      f"service listens on {settings.scheme.upper()} port {settings.port} "
                                      "(winrm enumerate winrm/config/listener) and that no firewall rejects it.",
                           detail)
    if (HAS_WINRM and isinstance(exc, (requests.exceptions.Timeout, winrm.exceptions.WinRMOperationTimeoutError))) \
            or any(isinstance(e, (socket.timeout, TimeoutError)) for e in chain):
        return DeviceError("timeout", f"{where} did not answer within {settings.connection_timeout} s to connect or "
                                      f"{settings.read_timeout} s to reply. Check that the device is on the network "
                                      "and not behind a firewall that drops WinRM; for slow links raise "
                                      "ansible_winrm_read_timeout_sec.", detail)
    if HAS_WINRM and isinstance(exc, winrm.exceptions.WinRMTransportError):
        return DeviceError("protocol", f"The WinRM service at {where} answered HTTP {exc.code}. Check that the "
                                       "WinRM service on the device is healthy (winrm quickconfig) and that the "
                                       "scheme and port are right.", detail)
    if HAS_WINRM and isinstance(exc, requests.exceptions.ConnectionError):
        return DeviceError("protocol", f"The connection to {where} was lost in the middle of an exchange (Connection "
                                       "to workstation lost). Check the network path to the device and try again.",
                           detail)
    return DeviceError("protocol", f"Talking to {where} failed: {type(exc).__name__}. Check the WinRM service on the "
                                   "device.", detail)


def _tls_detail(chain: list[BaseException]) -> str:
    for e in chain:
        if isinstance(e, ssl.SSLCertVerificationError):
            return e.verify_message or str(e)
    for e in chain:
        if isinstance(e, ssl.SSLError):
            return e.reason or str(e)
    return "TLS handshake failed"


def _safe_detail(exc: BaseException, settings: WinRMSettings) -> str:
    # Exception texts from requests/pywinrm carry URLs and server text, never the password; remove it anyway in
    # case a library ever echoes credentials.
    text = f"{type(exc).__name__}: {exc}"
    if settings.password:
        text = text.replace(settings.password, "********")
    return text[:2000]


def _without_environment_rereads(build_session: t.Callable[[], t.Any]) -> t.Callable[[], t.Any]:
    """pywinrm takes the proxy and CA settings from the environment once, when it builds its requests session; left
    as it is, requests reads the whole environment again on every request (about 2 ms of CPU each in an Ansible
    worker), which was a quarter of a fleet probe's controller CPU. The session keeps what pywinrm took."""

    def build() -> t.Any:
        session = build_session()
        if session is not None:
            session.trust_env = False
        return session

    return build


class WinRMClient:
    """Runs device scripts on one device over WinRM. Make one client per device; `shell()` keeps one shell open."""

    def __init__(self, settings: WinRMSettings, protocol_factory: t.Callable[..., t.Any] | None = None) -> None:
        if not HAS_WINRM and protocol_factory is None:
            raise DeviceError("protocol", "The Python library pywinrm is not installed on the controller. Install it "
                                          "with: pip install pywinrm")
        self.settings = settings
        self._protocol_factory = protocol_factory or winrm.protocol.Protocol
        self._transport: str | None = None  # the transport that authenticated, once one has
        self._ticket_cache: str | None = None  # FILE: credential cache of a managed Kerberos ticket

    def _protocol(self, transport: str | None = None) -> t.Any:
        s = self.settings
        transport = transport or self._transport or s.transport
        # pywinrm reads the proxy from the environment for "legacy_requests", uses none for None.
        proxy = None if s.ignore_proxy else (s.proxy or "legacy_requests")
        protocol = self._protocol_factory(
            endpoint=s.endpoint, transport=transport, username=s.user, password=s.password,
            server_cert_validation=s.server_cert_validation,
            ca_trust_path=s.ca_trust_path or "legacy_requests",
            cert_pem=s.cert_pem, cert_key_pem=s.cert_key_pem,
            kerberos_delegation=s.kerberos_delegation, kerberos_hostname_override=s.kerberos_hostname_override,
            message_encryption=s.message_encryption, send_cbt=s.send_cbt, proxy=proxy,
            operation_timeout_sec=s.operation_timeout, read_timeout_sec=s.read_timeout,
        )
        # pywinrm has one timeout for connecting and reading; requests takes a (connect, read) pair, so a dead
        # device fails after connection_timeout instead of the longer read timeout.
        pywinrm_transport = getattr(protocol, "transport", None)
        if pywinrm_transport is not None and hasattr(pywinrm_transport, "read_timeout_sec"):
            pywinrm_transport.read_timeout_sec = (s.connection_timeout, s.read_timeout)
        if pywinrm_transport is not None and hasattr(pywinrm_transport, "build_session"):
            pywinrm_transport.build_session = _without_environment_rereads(pywinrm_transport.build_session)
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
                                  f"{_kerberos_advice(said, settings)}. (kinit said: {said[:300]})", said)


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
        command = StreamingCommand(self._client, self._protocol, self._shell_id, command_id,
                                   envelope or SAFE_ENVELOPE_BYTES)
        header = stream_header(script, script_input)
        for offset in range(0, len(header), command.chunk_bytes):
            command.send(header[offset:offset + command.chunk_bytes])
        return command


# ---------------------------------------------------------------------------------------------------------------------
# Streaming: one long-running device script fed through stdin and read through stdout, a Send or a Receive at a time
# (the file transfers). Additive to the client above: the same settings, shell, failure names and no Ansible.

# The envelope every Windows accepts: WinRM's MaxEnvelopeSizekb before Windows 8 / Server 2012 (150), and what pywinrm
# asks for. Newer Windows default to 500 KiB; a device may allow more.
SAFE_ENVELOPE_BYTES = 153600
# Larger envelopes save little once a round trip carries hundreds of KiB, and each one is held a few times over in
# controller memory while it is encoded and encrypted.
MAX_STREAM_ENVELOPE_BYTES = 4 * 1024 * 1024
# What a Send's SOAP envelope needs besides the base64 data: headers, ids and the stream element (about 2 KiB).
SEND_ENVELOPE_OVERHEAD = 8192

SHELL_CMD_RESOURCE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"
SEND_ACTION = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Send"
RECEIVE_ACTION = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Receive"
_SHELL_NS = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
_DATA_PLACEHOLDER = "@@stream-data@@"


def envelope_bytes(max_envelope_size_kb: int | None) -> int:
    """The envelope size to use with a device whose MaxEnvelopeSizekb is given (None: unknown, the safe size)."""
    if not max_envelope_size_kb:
        return SAFE_ENVELOPE_BYTES
    return max(32 * 1024, min(int(max_envelope_size_kb) * 1024, MAX_STREAM_ENVELOPE_BYTES))


def send_chunk_bytes(envelope: int) -> int:
    """Bytes of data one Send carries within `envelope`: base64 grows data by 4/3, plus the envelope's own text."""
    return (envelope - SEND_ENVELOPE_OVERHEAD) // 4 * 3


@functools.lru_cache(maxsize=None)
def _encoded_stream_bootstrap() -> str:
    with open(os.path.join(SCRIPTS_DIR, "stream_bootstrap.ps1"), encoding="utf-8") as handle:
        return base64.b64encode(handle.read().encode("utf-16-le")).decode("ascii")


def stream_command_arguments() -> list[str]:
    """powershell.exe arguments that run stream_bootstrap.ps1, which reads the script and its input from stdin."""
    return ["-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-EncodedCommand",
            _encoded_stream_bootstrap()]


def stream_header(script: DeviceScript, script_input: t.Mapping[str, t.Any]) -> bytes:
    """What stream_bootstrap.ps1 reads first: the length of the JSON in ASCII digits, a line feed, then the JSON."""
    body = json.dumps({"script": script.text, "input": dict(script_input)}, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")
    return str(len(body)).encode("ascii") + b"\n" + body


def parse_receive_response(response: bytes) -> tuple[bytes, bytes, str, str]:
    """A ReceiveResponse's decoded stdout and stderr, its CommandState's State ("" if none) and ExitCode text.

    Read with expat's events rather than into an ElementTree: a response carries up to MaxEnvelopeSize of base64,
    which the tree builder collects in pieces and copies, and that cost as much as decoding it. With buffered text
    each element's base64 arrives in one piece."""
    elements: dict[str, list[list[str]]] = {"stdout": [], "stderr": []}  # the text of each rsp:Stream, per stream
    exit_code: list[str] = []
    state = ""
    collecting: list[str] | None = None

    def start(name: str, attributes: dict[str, str]) -> None:
        nonlocal collecting, state
        namespace, _sep, local = name.rpartition(" ")
        if namespace != _SHELL_NS:
            return
        if local == "Stream":
            collecting = []
            elements["stdout" if attributes.get("Name") == "stdout" else "stderr"].append(collecting)
        elif local == "CommandState":
            state = attributes.get("State", "")
        elif local == "ExitCode":
            collecting = exit_code

    def end(name: str) -> None:
        nonlocal collecting
        collecting = None

    def text(data: str) -> None:
        if collecting is not None:
            collecting.append(data)

    parser = xml.parsers.expat.ParserCreate(namespace_separator=" ")
    parser.buffer_text = True
    parser.buffer_size = max(len(response), 8192)
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    parser.Parse(response, True)
    # Each rsp:Stream is base64 on its own (padding and all), so each one is decoded by itself.
    stdout, stderr = (b"".join(base64.b64decode("".join(parts)) for parts in elements[name])
                      for name in ("stdout", "stderr"))
    return stdout, stderr, state, "".join(exit_code).strip()


@dataclasses.dataclass
class StreamOutput:
    """What one Receive brought: output so far (possibly none) and whether the command has ended."""

    stdout: bytes
    stderr: bytes
    done: bool
    exit_code: int | None


class StreamingCommand:
    """A device script running in an open shell, fed and read one WinRM round trip at a time.

    `send` is one Send (at most `chunk_bytes` of data); `receive` is one Receive, which the device holds until it has
    output or its OperationTimeout passes (then the output is empty). Every failure is a DeviceError.
    """

    def __init__(self, client: WinRMClient, protocol: t.Any, shell_id: str, command_id: str, envelope: int) -> None:
        self._client = client
        self._protocol = protocol
        self._shell_id = shell_id
        self.command_id = command_id
        self.envelope = envelope
        self.chunk_bytes = send_chunk_bytes(envelope)
        self.done = False
        self.exit_code: int | None = None
        # pywinrm resolved the proxy for this endpoint from the environment when it built its session (the shell is
        # open, so it has); requests would otherwise scan os.environ again on every one of the hundreds of round
        # trips a transfer makes. The endpoint does not change, so neither does the proxy.
        session = getattr(getattr(protocol, "transport", None), "session", None)
        if session is not None:
            session.trust_env = False

    def _envelope(self, action: str, body: dict[str, t.Any]) -> str:
        header = self._protocol.build_wsman_header(action=action, resource_uri=SHELL_CMD_RESOURCE,
                                                   shell_id=self._shell_id)
        # pywinrm always asks for 150 KiB responses; a device that allows more sends fewer, larger ones.
        header["env:Header"]["w:MaxEnvelopeSize"]["#text"] = str(self.envelope)
        header["env:Body"] = body
        return xmltodict.unparse({"env:Envelope": header})

    def send(self, data: bytes, end: bool = False) -> None:
        """One Send of `data` to the command's stdin; `end` closes stdin."""
        self.send_message(self.send_envelope(data, end))

    def send_envelope(self, data: bytes, end: bool = False) -> bytes:
        """The Send request for `data`, ready for send_message. Safe to call from another thread, so the next
        chunk can be read, hashed and encoded while the device takes the current one."""
        if len(data) > self.chunk_bytes:
            raise ValueError(f"{len(data)} bytes do not fit one Send of at most {self.chunk_bytes}")
        body = {"rsp:Send": {"rsp:Stream": {"@Name": "stdin", "@CommandId": self.command_id,
                                            "@End": "true" if end else "false", "#text": _DATA_PLACEHOLDER}}}
        # The envelope is rendered around a placeholder and the base64 spliced in as bytes: rendering (and escaping)
        # hundreds of KiB of base64 through xmltodict would cost more than the rest of the Send.
        before, after = self._envelope(SEND_ACTION, body).split(_DATA_PLACEHOLDER)
        return b"".join((before.encode("utf-8"), base64.b64encode(data), after.encode("utf-8")))

    def send_message(self, message: bytes) -> None:
        """Sends a request send_envelope made (in the order they were made: each carries the next bytes)."""
        try:
            self._protocol.send_message(message)
        except Exception as exc:
            raise classify(exc, self._client.settings) from None

    def receive(self) -> StreamOutput:
        """One Receive: whatever stdout and stderr the command wrote since the last one, and whether it ended."""
        body = {"rsp:Receive": {"rsp:DesiredStream": {"@CommandId": self.command_id, "#text": "stdout stderr"}}}
        try:
            response = self._protocol.send_message(self._envelope(RECEIVE_ACTION, body))
        except Exception as exc:
            if HAS_WINRM and isinstance(exc, winrm.exceptions.WinRMOperationTimeoutError):
                return StreamOutput(b"", b"", False, None)  # nothing within the OperationTimeout; ask again
            raise classify(exc, self._client.settings) from None
        try:
            stdout, stderr, state, exit_code = parse_receive_response(response)
        except (xml.parsers.expat.ExpatError, ValueError) as exc:  # not XML, or not base64 (binascii.Error)
            raise classify(exc, self._client.settings) from None
        if state.endswith("/Done"):
            self.done = True
            self.exit_code = int(exit_code) if exit_code else 0
        return StreamOutput(stdout, stderr, self.done, self.exit_code)

    def terminate(self) -> None:
        """Ends the command (Signal terminate) if it still runs; a failure here is not worth reporting."""
        if self.done:
            return
        try:
            self._protocol.cleanup_command(self._shell_id, self.command_id)
        except Exception:
            pass
        self.done = True
