"""HTTP authentication and NTLM message encryption, as the WinRM service does them.

- Basic: accepted only when the device has `service.allow_basic`; over plain HTTP only when it also has
  `service.allow_unencrypted` (otherwise Windows answers 401, the error every "enable Basic" guide fixes with
  `AllowUnencrypted=true`, e.g. diyan/pywinrm#154). Basic only works with local accounts on Windows.
- Negotiate: NTLM through pyspnego acting as the acceptor. Clients send raw NTLMSSP tokens under the `Negotiate`
  scheme (pywinrm through requests-ntlm) or SPNEGO-wrapped ones (pypsrp); pyspnego's Negotiate acceptor takes both.
  NTLM authenticates the TCP connection, not a request, so the context lives in `ConnectionSecurity`, which the
  server keeps per connection and drops when the connection closes.
- Kerberos (`winrm-lab --auth kerberos`, with the lab's own KDC, see kdc.py): a raw Kerberos token under `Negotiate`
  (what pywinrm sends) goes to pyspnego's Kerberos acceptor for the device's own service principal `HTTP/<name>`,
  whose key it reads from the keytab KRB5_KTNAME names. The ticket's client `user@REALM` is the domain account
  DOMAIN\\user. Its reply token authenticates the device back to the client (mutual authentication).
- Certificate: `Authorization: http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/https/mutual` over HTTPS with a
  client certificate from the lab CA whose UPN names a local account (pki.py), when the device allows it.
- CredSSP (`Authorization: CredSSP`, when the device allows it): pyspnego's CredSSP acceptor runs TLS inside the
  HTTP exchange, NTLM inside that (checked as above), and then receives the delegated user name and password, which
  must be the account's. The lab answers CredSSP over HTTPS; its message encryption over HTTP is not emulated.
- Message encryption (MS-WSMV 2.2.9.1.1): after NTLM over HTTP the SOAP body travels as
  `multipart/encrypted;protocol="application/HTTP-SPNEGO-session-encrypted"`, sealed with the connection's context.
  An unencrypted SOAP request over HTTP is refused with 401 unless AllowUnencrypted is set (jborean93 in
  hashicorp/packer#6205: "Unless the Windows host is configured to allow un-encrypted messages then it will
  constantly send a 401 error").

pyspnego's NTLM acceptor checks a response against the NT hash it reads from the file named by the environment
variable NTLM_USER_FILE. The lab writes one such file per distinct set of accounts (with NT hashes, not passwords)
and points the variable at the right one for the length of one synchronous `step()`, under a lock: a single file for
the whole fleet cannot hold the same user name with different passwords on different devices, which is exactly what
a "wrong password" device is. The authenticated user is then checked against that device's `accounts` again.

Nothing here logs a password or a token.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import hashlib
import logging
import os
import pathlib
import re
import struct
import tempfile
import threading
import typing as t

import spnego
from spnego.exceptions import SpnegoError

from . import pki

log = logging.getLogger(__name__)

SPNEGO_ENCRYPTED = "application/HTTP-SPNEGO-session-encrypted"
BOUNDARY = "Encrypted Boundary"
ENCRYPTED_CONTENT_TYPE = f'multipart/encrypted;protocol="{SPNEGO_ENCRYPTED}";boundary="{BOUNDARY}"'

# What the 401 challenge offers. Windows also lists Kerberos; the lab has no KDC, so it offers only what it can do.
NEGOTIATE_CHALLENGE = "Negotiate"
BASIC_CHALLENGE = 'Basic realm="WSMAN"'
# What a client sends (with its certificate in the TLS handshake) for WinRM certificate authentication.
CERTIFICATE_AUTHORIZATION = "http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/https/mutual"

_ENV_LOCK = threading.Lock()


@dataclasses.dataclass
class ConnectionSecurity:
    """Authentication state of one TCP connection."""

    context: t.Any = None  # spnego acceptor, in progress or complete
    user: str | None = None  # DOMAIN\user once NTLM completed
    device_name: str | None = None  # the device the connection authenticated to

    @property
    def can_seal(self) -> bool:
        return self.user is not None and self.context is not None

    def reset(self) -> None:
        self.context = None
        self.user = None
        self.device_name = None


@dataclasses.dataclass
class AuthResult:
    """Either an authenticated user, or the 401 to answer."""

    user: str | None  # DOMAIN\user as Windows reports the shell owner; None: not authenticated
    scheme: str | None = None  # "Basic" | "Negotiate"
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # WWW-Authenticate to send
    sealing: ConnectionSecurity | None = None  # the connection context that can wrap/unwrap messages

    @property
    def ok(self) -> bool:
        return self.user is not None


class EncryptionError(Exception):
    """An encrypted body that does not decrypt (bad framing, wrong length, failed signature)."""


def challenge_headers(device: t.Any) -> list[tuple[str, str]]:
    headers = [("WWW-Authenticate", NEGOTIATE_CHALLENGE)]
    if getattr(device.service, "allow_credssp", False):
        headers.append(("WWW-Authenticate", "CredSSP"))
    if device.service.allow_basic:
        headers.append(("WWW-Authenticate", BASIC_CHALLENGE))
    return headers


class Authenticator:
    """Authenticates requests for every device of one LabServer."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        # The NetBIOS domain of the lab's Kerberos realm when it runs one (kdc.py); None: Kerberos is not offered.
        self.kerberos_domain: str | None = None
        # Device name (lower case) -> the keytab with that device's own service key.
        self.kerberos_keytab: t.Callable[[str], os.PathLike[str]] | None = None
        self._own_directory = directory is None
        self.directory = pathlib.Path(directory or tempfile.mkdtemp(prefix="winrm-lab-ntlm-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self._files: dict[str, pathlib.Path] = {}

    def close(self) -> None:
        for path in self._files.values():
            path.unlink(missing_ok=True)
        self._files.clear()
        if self._own_directory:
            try:
                self.directory.rmdir()
            except OSError:
                pass

    # The request ------------------------------------------------------------------------------------------------
    def authenticate(self, device: t.Any, connection: ConnectionSecurity, authorization: str | None,
                     is_https: bool, peer_certificate: bytes | None = None) -> AuthResult:
        if authorization:
            if authorization.strip().lower() == CERTIFICATE_AUTHORIZATION.lower():
                return self._certificate(device, peer_certificate, is_https)
            scheme, _, token = authorization.strip().partition(" ")
            if scheme.lower() == "basic":
                return self._basic(device, token.strip(), is_https)
            if scheme.lower() == "negotiate":
                return self._negotiate(device, connection, token.strip())
            if scheme.lower() == "credssp" and is_https and getattr(device.service, "allow_credssp", False):
                return self._credssp(device, connection, token.strip())
            return self._refuse(device)
        if connection.user is not None and connection.device_name == device.name:
            if find_account(device, connection.user) is not None:  # the account may have been removed since
                return AuthResult(connection.user, "Negotiate", sealing=connection)
            connection.reset()
        return self._refuse(device)

    def _refuse(self, device: t.Any) -> AuthResult:
        return AuthResult(None, headers=challenge_headers(device))

    # Basic ------------------------------------------------------------------------------------------------------
    def _basic(self, device: t.Any, token: str, is_https: bool) -> AuthResult:
        if not device.service.allow_basic or (not is_https and not device.service.allow_unencrypted):
            return self._refuse(device)
        try:
            decoded = base64.b64decode(token, validate=True)
        except (binascii.Error, ValueError):
            return self._refuse(device)
        try:
            text = decoded.decode("utf-8")
        except UnicodeDecodeError:
            text = decoded.decode("latin-1")
        user, sep, password = text.partition(":")
        if not sep:
            return self._refuse(device)
        domain, name = _split_user(user)
        # Basic authenticates local accounts only (diyan/pywinrm#154: "Basic auth only works with local
        # credentials").
        if not _is_local_domain(device, domain) or "@" in name:
            return self._refuse(device)
        account = find_account(device, name, local_only=True)
        if account is None or device.accounts[account] != password:
            return self._refuse(device)
        return AuthResult(owner_name(device, account), "Basic")

    # Certificate -----------------------------------------------------------------------------------------------
    def _certificate(self, device: t.Any, peer_certificate: bytes | None, is_https: bool) -> AuthResult:
        """A client certificate from the lab CA (TLS verified the chain) whose UPN names a local account of the
        device: the certificate mapping Windows applies. No certificate, or an unmapped one, is a 401."""
        upn = pki.client_upn(peer_certificate) if is_https and device.service.allow_certificate else None
        name, _, domain = (upn or "").rpartition("@")
        account = find_account(device, name, local_only=True) if name and domain.lower() == "localhost" else None
        if account is None:
            log.debug("certificate authentication to %s refused: %s", device.name,
                      "no certificate" if peer_certificate is None else f"no mapping for {upn!r}")
            return self._refuse(device)
        return AuthResult(owner_name(device, account), "Certificate")

    # CredSSP ---------------------------------------------------------------------------------------------------
    def _credssp(self, device: t.Any, connection: ConnectionSecurity, token: str) -> AuthResult:
        try:
            in_token = base64.b64decode(token, validate=True)
        except (binascii.Error, ValueError):
            connection.reset()
            return self._refuse(device)
        # A TLS ClientHello (record type 22) starts a new CredSSP exchange.
        if in_token[:1] == b"\x16" or connection.context is None or connection.device_name != device.name:
            connection.reset()
            connection.context = spnego.server(protocol="credssp")
            connection.device_name = device.name
        try:
            out_token = self._step(device, connection.context, in_token)
        except (SpnegoError, ValueError, struct.error, KeyError, IndexError) as exc:
            log.debug("CredSSP authentication to %s failed: %s", device.name, type(exc).__name__)
            connection.reset()
            return self._refuse(device)
        headers = [("WWW-Authenticate", f"CredSSP {base64.b64encode(out_token).decode()}")] if out_token else []
        if not connection.context.complete:
            return AuthResult(None, headers=headers or challenge_headers(device))
        # The delegated credential must be the account's own: Windows logs the user on with it.
        credential = connection.context.get_extra_info("client_credential")
        domain, name = getattr(credential, "domain_name", ""), getattr(credential, "username", None) or ""
        account = find_account(device, f"{domain}\\{name}" if domain else name)
        if account is None or device.accounts[account] != getattr(credential, "password", None):
            connection.reset()
            return self._refuse(device)
        connection.user = owner_name(device, account)
        return AuthResult(connection.user, "CredSSP", headers=headers)

    # Negotiate (NTLM) -------------------------------------------------------------------------------------------
    def _negotiate(self, device: t.Any, connection: ConnectionSecurity, token: str) -> AuthResult:
        try:
            in_token = base64.b64decode(token, validate=True)
        except (binascii.Error, ValueError):
            connection.reset()
            return self._refuse(device)
        kerberos = self.kerberos_domain is not None and _is_kerberos_token(in_token)
        if kerberos:
            # Kerberos completes in one step: a new context for every AP-REQ, with this device's keytab only.
            connection.reset()
            connection.device_name = device.name
        elif _starts_handshake(in_token) or connection.context is None or connection.device_name != device.name:
            connection.reset()
            connection.context = spnego.server(protocol="negotiate")
            connection.device_name = device.name
        try:
            out_token = self._kerberos_step(device, connection, in_token) if kerberos else \
                self._step(device, connection.context, in_token)
        except (SpnegoError, ValueError, struct.error, KeyError, IndexError) as exc:
            # A wrong password ends here. The reason goes to the debug log; the token and password never do.
            log.debug("NTLM authentication to %s failed: %s", device.name, type(exc).__name__)
            connection.reset()
            return self._refuse(device)
        headers = [("WWW-Authenticate", f"Negotiate {base64.b64encode(out_token).decode()}")] if out_token else []
        if not connection.context.complete:
            return AuthResult(None, headers=headers or challenge_headers(device))
        principal = connection.context.client_principal or ""
        if kerberos:
            # user@REALM is the realm's DOMAIN\user; a principal of another realm maps to no account.
            user, _, realm = principal.rpartition("@")
            principal = f"{self.kerberos_domain}\\{user}" if realm.split(".")[0] == self.kerberos_domain else ""
        account = find_account(device, principal)
        if account is None:
            connection.reset()
            return self._refuse(device)
        connection.user = owner_name(device, account)
        return AuthResult(connection.user, "Negotiate", headers=headers, sealing=connection)

    def _step(self, device: t.Any, context: t.Any, in_token: bytes) -> bytes | None:
        path = self._credential_file(device)
        with _ENV_LOCK:
            previous = os.environ.get("NTLM_USER_FILE")
            os.environ["NTLM_USER_FILE"] = str(path)
            try:
                return context.step(in_token)
            finally:
                if previous is None:
                    os.environ.pop("NTLM_USER_FILE", None)
                else:
                    os.environ["NTLM_USER_FILE"] = previous

    def _kerberos_step(self, device: t.Any, connection: ConnectionSecurity, in_token: bytes) -> bytes | None:
        assert self.kerberos_keytab is not None
        keytab = f"FILE:{self.kerberos_keytab(device.name.lower())}"
        with _ENV_LOCK:  # GSSAPI reads the acceptor's keytab from KRB5_KTNAME
            previous = os.environ.get("KRB5_KTNAME")
            os.environ["KRB5_KTNAME"] = keytab
            try:
                connection.context = spnego.server(hostname=device.name.lower(), service="HTTP", protocol="kerberos")
                try:
                    return connection.context.step(in_token)
                except AttributeError:
                    # pyspnego reads the context's flags after a failed accept (a ticket for another service, or
                    # one this device's key cannot decrypt), which gssapi refuses with AttributeError.
                    raise ValueError("Kerberos ticket not accepted") from None
            finally:
                if previous is None:
                    os.environ.pop("KRB5_KTNAME", None)
                else:
                    os.environ["KRB5_KTNAME"] = previous

    def _credential_file(self, device: t.Any) -> pathlib.Path:
        """The NTLM_USER_FILE holding this device's accounts (shared by devices with the same accounts)."""
        lines = sorted(_credential_lines(device))
        digest = hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()[:24]
        path = self._files.get(digest)
        if path is None:
            path = self.directory / f"ntlm-{digest}.txt"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write("\n".join(lines) + "\n")
            self._files[digest] = path
        return path


# Accounts --------------------------------------------------------------------------------------------------------

def _split_user(user: str) -> tuple[str, str]:
    if "\\" in user:
        domain, _, name = user.partition("\\")
        return domain, name
    return "", user


def _is_local_domain(device: t.Any, domain: str) -> bool:
    return domain in ("", ".") or domain.lower() == device.name.lower()


def find_account(device: t.Any, user: str, *, local_only: bool = False) -> str | None:
    """The key of `device.accounts` that `user` (user, .\\user, HOST\\user, DOMAIN\\user or UPN) names, if any."""
    domain, name = _split_user(user)
    for account in device.accounts:
        account_domain, account_name = _split_user(account)
        if account_name.lower() != name.lower():
            continue
        account_is_local = _is_local_domain(device, account_domain) and "@" not in account_name
        if account_is_local and _is_local_domain(device, domain):
            return account
        if not local_only and not account_is_local and account_domain.lower() == domain.lower():
            return account
    return None


def owner_name(device: t.Any, account: str) -> str:
    """The user as Windows names a shell's owner: HOST\\user for a local account, DOMAIN\\user otherwise."""
    domain, name = _split_user(account)
    if "@" in name and not domain:
        return name
    if _is_local_domain(device, domain):
        return f"{device.name}\\{name}"
    return f"{domain}\\{name}"


def _credential_lines(device: t.Any) -> t.Iterator[str]:
    """smbpasswd-style lines (USER:UID:LM:NT:flags:LCT) for every name under which each account can log on."""
    for account, password in device.accounts.items():
        domain, name = _split_user(account)
        if "@" in name and not domain:
            logons = [name]
        elif _is_local_domain(device, domain):
            logons = [name, f".\\{name}", f"{device.name}\\{name}"]
        else:
            logons = [f"{domain}\\{name}"]
        lm_hash, nt_hash = _hashes(password)
        for logon in logons:
            if ":" in logon or "\n" in logon:
                continue  # cannot be written in the file format; such a user could never log on to Windows either
            yield f"{logon}:0:{lm_hash}:{nt_hash}:[U]:LCT-00000000"


@functools.lru_cache(maxsize=256)
def _hashes(password: str) -> tuple[str, str]:
    # pyspnego's own NTOWFv1/LMOWFv1 (hashlib's MD4 is often unavailable under OpenSSL 3). Cached: every handshake
    # asks for its device's accounts, and the LM hash is a pure-Python DES (a fleet's devices share few passwords).
    from spnego._ntlm_raw.crypto import lmowfv1, ntowfv1

    try:
        lm = lmowfv1(password)
    except Exception:  # LM cannot represent every password; NTLMv2 never uses it
        lm = b"\x00" * 16
    return base64.b16encode(lm).decode(), base64.b16encode(ntowfv1(password)).decode()


# The Kerberos v5 mechanism's OID (1.2.840.113554.1.2.2), DER encoded, as it opens a raw GSS-API Kerberos token.
_KRB5_OID = bytes.fromhex("06092a864886f712010202")


def _is_kerberos_token(token: bytes) -> bool:
    """A raw Kerberos GSS-API token ([APPLICATION 0] with the krb5 mechanism), not SPNEGO or NTLM."""
    if token[:1] != b"\x60" or len(token) < 2:
        return False
    length_octets = token[1] - 0x80 if token[1] & 0x80 else 0
    return token[2 + length_octets:2 + length_octets + len(_KRB5_OID)] == _KRB5_OID


def _starts_handshake(token: bytes) -> bool:
    """A first token: NTLM NEGOTIATE_MESSAGE, or a SPNEGO NegTokenInit ([APPLICATION 0])."""
    if token.startswith(b"NTLMSSP\x00") and len(token) >= 12:
        return struct.unpack("<I", token[8:12])[0] == 1
    return token[:1] == b"\x60"


# Message encryption ----------------------------------------------------------------------------------------------

def is_encrypted(content_type: str) -> bool:
    return content_type.lower().startswith(("multipart/encrypted", "multipart/x-multi-encrypted"))


def _boundary(content_type: str) -> str:
    match = re.search(r'boundary="?([^";]+)"?', content_type, re.I)
    return match.group(1) if match else BOUNDARY


def _multipart_parts(body: bytes, boundary: bytes) -> list[bytes]:
    """The non-empty parts between `--boundary` delimiter lines (the last one `--boundary--`). Found with bytes.find
    rather than a regular expression: the sealed parts are as large as the envelope, and scanning them in Python's
    regex engine cost more than decrypting them."""
    parts = []
    delimiter = b"--" + boundary
    start = body.find(delimiter)
    while start >= 0:
        line_end = body.find(b"\r\n", start + len(delimiter))
        if line_end < 0:
            break
        following = body.find(delimiter, line_end + 2)
        part = body[line_end + 2:following if following >= 0 else len(body)]
        if part:
            parts.append(part)
        start = following
    return parts


def unwrap_message(connection: ConnectionSecurity, body: bytes, content_type: str) -> bytes:
    """Decrypts an MS-WSMV encrypted body: pairs of (header part, octet-stream part) between boundaries."""
    if not connection.can_seal:
        raise EncryptionError("no security context on this connection")
    if SPNEGO_ENCRYPTED.lower() not in content_type.lower():
        raise EncryptionError("unsupported encryption protocol")
    parts = _multipart_parts(body, _boundary(content_type).encode())
    if len(parts) < 2 or len(parts) % 2:
        raise EncryptionError("malformed multipart/encrypted body")
    message = b""
    for header, payload in zip(parts[0::2], parts[1::2]):
        match = re.search(rb"Length=(\d+)", header)
        if not match:
            raise EncryptionError("missing OriginalContent length")
        expected = int(match.group(1))
        prefix = b"\tContent-Type: application/octet-stream\r\n"
        if not payload.startswith(prefix):
            raise EncryptionError("missing octet-stream part")
        sealed = payload[len(prefix):]
        if len(sealed) < 4:
            raise EncryptionError("truncated sealed message")
        signature_length = struct.unpack("<I", sealed[:4])[0]
        signature = sealed[4:4 + signature_length]
        data = sealed[4 + signature_length:]
        try:
            plain = connection.context.unwrap_winrm(signature, data)
        except SpnegoError as exc:
            raise EncryptionError(f"unwrap failed: {type(exc).__name__}") from None
        if len(plain) != expected:
            raise EncryptionError("decrypted length does not match OriginalContent")
        message += plain
    return message


def wrap_message(connection: ConnectionSecurity, message: bytes) -> tuple[bytes, str]:
    """Encrypts a response the way Windows frames it. Returns (body, Content-Type)."""
    result = connection.context.wrap_winrm(message)
    original_length = len(message) + result.padding_length
    sealed = struct.pack("<I", len(result.header)) + result.header + result.data
    body = (f"--{BOUNDARY}\r\n"
            f"\tContent-Type: {SPNEGO_ENCRYPTED}\r\n"
            f"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length={original_length}\r\n"
            f"--{BOUNDARY}\r\n"
            "\tContent-Type: application/octet-stream\r\n").encode() + sealed + f"--{BOUNDARY}--\r\n".encode()
    return body, ENCRYPTED_CONTENT_TYPE
