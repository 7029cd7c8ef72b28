# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Naming every failure of a WinRM exchange: `classify` turns what pywinrm, requests, ssl or Kerberos raised into a
DeviceError with one of errors.REASONS and a message that says what happened and where to fix it.

The second layer of the WinRM client; it needs the settings (to name the host, user and files) and nothing else.
"""

from __future__ import annotations

import http.client
import os
import re
import socket
import ssl
import typing as t

try:
    import requests.exceptions
    import urllib3.exceptions
    import winrm.exceptions

    HAS_WINRM = True
except ImportError:  # winrm_client reports the missing library with the install hint
    HAS_WINRM = False

from ansible_collections.remote_support.windows.plugins.module_utils.errors import CONNECTION_LOST, DeviceError
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_settings import WinRMSettings

# WSManFault codes for the per-user shell quota (MaxShellsPerUser), as Windows sends them.
QUOTA_FAULT_CODES = frozenset((
    2150859173,  # 0x803381A5 ERROR_WSMAN_QUOTA_MAX_SHELLS
    2150859174,  # 0x803381A6 ERROR_WSMAN_QUOTA_MAX_SHELLS_PPQ (per user)
    2150859046,  # 0x80338126 ERROR_WSMAN_QUOTA_MAX_OPERATIONS
))


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


def kerberos_advice(text: str, settings: WinRMSettings) -> str:
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
    advice = kerberos_advice(" ".join(str(e) for e in chain), settings)
    return DeviceError("auth", f"Kerberos authentication to {where} failed: {advice}.", detail)


def classify(exc: BaseException, settings: WinRMSettings, transport: str | None = None) -> DeviceError:
    """Names a failure from pywinrm/requests with one of REASONS and a message that says what to check."""
    if isinstance(exc, DeviceError):
        return exc
    transport = transport or settings.transport
    where = f"{settings.host}:{settings.port}"
    chain = list(_exception_chain(exc))
    detail = _safe_detail(exc, settings)
    # A file on the controller that cannot work fails every connection, whatever the library made of it (requests
    # says OSError for a missing CA bundle): name the file first, so nobody looks for the fault on the device.
    local = controller_file_problem(settings, transport)
    if local is not None:
        return DeviceError(local[0], local[1], detail)

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
    cut = _connection_cut(chain)
    if cut is not None:
        # Checked before TLS: an HTTPS connection cut mid-exchange surfaces as ssl.SSLEOFError, which is no
        # certificate problem.
        return DeviceError("protocol", f"The connection to {where} was cut in the middle of an exchange ({cut}): "
                                       f"{CONNECTION_LOST}. Check the network path to the device (VPN, proxy, "
                                       "Wi-Fi, a firewall that ends long connections).", detail)
    if any(isinstance(e, (ssl.SSLCertVerificationError, ssl.CertificateError)) for e in chain):
        return DeviceError("tls", f"The certificate presented by {where} could not be verified ({_tls_detail(chain)}). "
                                  "Check that ansible_winrm_ca_trust_path names the CA that issued the device's "
                                  f"certificate and that the certificate is valid for '{settings.host}'. Keep "
                                  "certificate validation on.", detail)
    if any(isinstance(e, ssl.SSLError) for e in chain) or \
            (HAS_WINRM and isinstance(exc, requests.exceptions.SSLError)):
        return DeviceError("tls", f"The TLS handshake with {where} failed ({_tls_detail(chain)}). Check that this "
                                  f"port speaks HTTPS (ansible_winrm_scheme is {settings.scheme}, ansible_port is "
                                  f"{settings.port}) and that the device's HTTPS listener has a valid certificate "
                                  "(winrm enumerate winrm/config/listener).", detail)
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
    if type(exc).__name__ == "UnsealedReply":  # winrm_http: message encryption over HTTP
        return DeviceError("protocol", f"The device at {where} answered in clear text, or with a sealed reply cut or "
                                       "changed, on a connection where every message is sealed: something on the "
                                       "network path altered it. The reply was not used. Check the network path "
                                       "(a proxy or appliance that rewrites HTTP), or connect over HTTPS.", detail)
    if HAS_WINRM and isinstance(exc, winrm.exceptions.WinRMTransportError):
        return DeviceError("protocol", f"The WinRM service at {where} answered HTTP {exc.code}. Check that the "
                                       "WinRM service on the device is healthy (winrm quickconfig) and that the "
                                       "scheme and port are right.", detail)
    if HAS_WINRM and isinstance(exc, requests.exceptions.ConnectionError):
        return DeviceError("protocol", f"The connection to {where} was lost in the middle of an exchange: "
                                       f"{CONNECTION_LOST}. Check the network path to the device and run the task "
                                       "again.", detail)
    return DeviceError("protocol", f"Talking to {where} failed: {type(exc).__name__}. Check the WinRM service on the "
                                   "device.", detail)


def _connection_cut(chain: list[BaseException]) -> str | None:
    """How the connection was cut, when it was: the peer closed or reset it, or a reply ended before its length."""
    cut_types: tuple[type[BaseException], ...] = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError,
                                                  ConnectionAbortedError, BrokenPipeError, http.client.IncompleteRead,
                                                  http.client.RemoteDisconnected)
    if HAS_WINRM:
        cut_types += (requests.exceptions.ChunkedEncodingError, urllib3.exceptions.ProtocolError)
    for error in chain:
        if isinstance(error, cut_types):
            return type(error).__name__
    return None


# The files the controller reads to connect: (setting, inventory variable, what the file must hold, reason).
_CONTROLLER_FILES = (
    ("ca_trust_path", "ansible_winrm_ca_trust_path", "the CA certificate(s) that issued the device's certificate",
     "tls"),
    ("cert_pem", "ansible_winrm_cert_pem", "the client certificate", "auth"),
    ("cert_key_pem", "ansible_winrm_cert_key_pem", "the client certificate's private key", "auth"),
)


def controller_file_problem(settings: WinRMSettings, transport: str | None = None) -> tuple[str, str] | None:
    """(reason, message) for a file the connection needs that the controller cannot use, or None."""
    transports = {transport or settings.transport, *settings.fallback_transports}
    for name, variable, holds, reason in _CONTROLLER_FILES:
        path = getattr(settings, name)
        if not path:
            continue
        if name == "ca_trust_path" and (settings.scheme != "https" or settings.server_cert_validation != "validate"):
            continue
        if name != "ca_trust_path" and "certificate" not in transports:
            continue
        problem = _unusable_file(path, allow_folder=name == "ca_trust_path")
        if problem:
            return reason, (f"The controller cannot use {path} ({name}, inventory variable {variable}): {problem}. "
                            f"It must hold {holds} in PEM form; fix the file or the setting on the controller. "
                            "Nothing on the device needs to change.")
    return None


def _unusable_file(path: str, allow_folder: bool) -> str | None:
    """Why the controller cannot read the file at `path`, or None when it can."""
    if not os.path.exists(path):
        return "there is no such file on the controller"
    if os.path.isdir(path):
        if allow_folder and os.access(path, os.R_OK | os.X_OK):
            return None  # a folder of hashed CA certificates (c_rehash), as requests accepts
        return "it is a folder, not a file" if not allow_folder else "the folder cannot be read by this user"
    try:
        with open(path, "rb") as handle:
            head = handle.read(1024 * 1024)
    except OSError as error:
        return f"it cannot be read by this user ({error.strerror})"
    if b"-----BEGIN" not in head:
        return "it holds no PEM block (-----BEGIN ...)"
    return None


def _tls_detail(chain: list[BaseException]) -> str:
    for e in chain:
        if isinstance(e, ssl.SSLCertVerificationError):
            return e.verify_message or str(e)
    for e in chain:
        if isinstance(e, ssl.SSLError):
            return e.reason or str(e)
    return "TLS handshake failed"


_NTLM_HASH_PAIR = re.compile(r"\b[a-fA-F0-9]{32}:[a-fA-F0-9]{32}\b")


def _safe_detail(exc: BaseException, settings: WinRMSettings) -> str:
    # Exception texts from requests/pywinrm carry URLs and server text, never the password; remove it anyway in
    # case a library ever echoes credentials. The NTLM hash pair the client hands pyspnego instead of the password
    # (winrm_client) is as good as the password, so it goes too.
    text = f"{type(exc).__name__}: {exc}"
    if settings.password:
        text = text.replace(settings.password, "********")
    return _NTLM_HASH_PAIR.sub("********", text)[:2000]
