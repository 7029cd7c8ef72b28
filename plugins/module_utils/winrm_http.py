# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""WinRM messages over one HTTP connection per device, for NTLM, Basic and certificate authentication: Python's
http.client for HTTP, pyspnego for NTLM (with channel binding over HTTPS and message sealing over HTTP).

Why not requests, as pywinrm does: a device's probe is seven HTTP requests, and requests with urllib3 spend about
1 ms of controller CPU on each above what http.client spends on the same exchange (0.2 ms), and requests_ntlm first
sends every connection's first message without credentials only to be told to authenticate. Across a fleet that was
half of the controller's CPU per device. This transport sends the NTLM negotiation with the first message instead
(as Windows' own client does), and otherwise exchanges exactly what pywinrm's transport would: the same headers, the
same authentication tokens, the same MS-WSMV encrypted framing, and the same exceptions (InvalidCredentialsError for
a 401, WinRMTransportError with the device's answer for any other failure status), so that pywinrm's Protocol and
winrm_failures.classify treat both alike.

pywinrm's own transport (requests) still serves what this one does not: Kerberos and CredSSP, a proxy on the way to
the device, and settings pywinrm refuses (message encryption "always" with Basic or a certificate, a certificate over
HTTP), so that its checks and errors stay the ones users know. `serves` decides.

The third layer of the WinRM client, below winrm_envelopes (which builds the messages and hands them to
pywinrm's Protocol).
"""

from __future__ import annotations

import base64
import functools
import http.client
import http.cookies
import os
import select
import socket
import ssl
import struct
import typing as t
from urllib.parse import urlsplit

try:
    import requests.utils
    import spnego
    import spnego.channel_bindings
    import spnego.exceptions
    import winrm.transport
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes
    from winrm.exceptions import InvalidCredentialsError, WinRMTransportError

    _TransportBase: t.Any = winrm.transport.Transport
except ImportError:  # winrm_client reports the missing library with the install hint
    _TransportBase = object

CERTIFICATE_AUTHORIZATION = "http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/https/mutual"
# MS-WSMV 2.2.9.1.1: an NTLM-sealed message over HTTP.
_SEALED_PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
_SEALED_CONTENT_TYPE = f'multipart/encrypted;protocol="{_SEALED_PROTOCOL}";boundary="Encrypted Boundary"'
_BOUNDARY = b"--Encrypted Boundary"


def serves(transport: t.Any) -> bool:
    """Whether DirectTransport can carry this pywinrm transport's messages exactly as pywinrm would."""
    method = transport.auth_method
    https = transport.endpoint.lower().startswith("https://")
    if method not in ("ntlm", "basic", "certificate") or (method == "certificate" and not https):
        return False
    if transport.message_encryption == "always" and method != "ntlm":
        return False  # pywinrm refuses it with its own error
    return not _proxied(transport)


def _proxied(transport: t.Any) -> bool:
    """Whether requests would send this device's messages through a proxy: the transport's own, or (pywinrm's
    "legacy_requests") one the environment names for the endpoint and its no_proxy does not exempt."""
    if transport.proxy is None:
        return False
    if transport.proxy != "legacy_requests":
        return True
    if not _environment_names_a_proxy():
        return False  # the common case, decided without requests' two scans of the environment per device
    url = urlsplit(transport.endpoint)
    chosen_by = {url.scheme, "all", f"{url.scheme}://{url.hostname}", f"all://{url.hostname}"}  # requests' select_proxy
    return bool(chosen_by & set(requests.utils.get_environ_proxies(transport.endpoint)))


def _environment_names_a_proxy() -> bool:
    """Whether any *_proxy variable but no_proxy is set (in any case, as urllib reads them), read as bytes on POSIX
    so that no name is decoded."""
    if os.supports_bytes_environ:
        return any(name.lower().endswith(b"_proxy") and name.lower() != b"no_proxy" and value
                   for name, value in os.environb.items())
    return any(name.lower().endswith("_proxy") and name.lower() != "no_proxy" and value
               for name, value in os.environ.items())


def _verify(transport: t.Any) -> str | bool:
    """What pywinrm's session verifies the device's certificate with: False (validation ignored), the CA file or
    folder, or (pywinrm's "legacy_requests") the CA bundle requests would take from the environment or certifi."""
    if transport.server_cert_validation != "validate":
        return False
    if transport.ca_trust_path in (None, "legacy_requests"):
        return (os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
                or requests.utils.DEFAULT_CA_BUNDLE_PATH)
    return str(transport.ca_trust_path)


@functools.lru_cache(maxsize=64)
def _tls_context(verify: str | bool, cert_pem: str | None, cert_key_pem: str | None) -> ssl.SSLContext:
    """One TLS context per trust and client certificate, shared by every device that uses them. Hostnames are
    checked against the certificate's names only (as urllib3 does: no fallback to its common name)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # the certificate and its hostname checked
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # as urllib3 2
    context.hostname_checks_common_name = False
    if verify is False:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif os.path.isdir(str(verify)):
        context.load_verify_locations(capath=str(verify))
    else:
        context.load_verify_locations(cafile=str(verify))
    if cert_pem:
        context.load_cert_chain(cert_pem, cert_key_pem)
    return context


def certificate_hash(certificate_der: bytes) -> bytes | None:
    """The certificate's hash for tls-server-end-point channel binding (RFC 5929 4.1): with the hash of its signature,
    SHA-256 for MD5 and SHA-1; None when its signature algorithm is unknown (no binding is sent, as requests_ntlm)."""
    certificate = x509.load_der_x509_certificate(certificate_der)
    try:
        algorithm = certificate.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return None
    if algorithm is None or algorithm.name in ("md5", "sha1"):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(certificate_der)
    return digest.finalize()


class UnsealedReply(WinRMTransportError if _TransportBase is not object else Exception):  # type: ignore[misc]
    """A reply on a sealed connection (message encryption over HTTP) that is not sealed, or not whole: something on
    the way changed it. It is not read."""


class _DeviceConnection(http.client.HTTPConnection):
    """The connection to one device: TCP and the TLS handshake within the connect timeout, then the read timeout
    for every reply."""

    def __init__(self, host: str, port: int, path: str, tls: ssl.SSLContext | None, connect_timeout: float,
                 read_timeout: float) -> None:
        super().__init__(host, port, timeout=connect_timeout)
        self.path = path  # the WinRM service's URL path, every message's
        self._tls = tls
        self._read_timeout = read_timeout

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_hostname=self.host)
            sock.settimeout(self._read_timeout)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class DirectTransport(_TransportBase):
    """pywinrm's transport for one device, its messages sent with http.client (see the module's docstring). Made from
    a pywinrm Transport whose settings `serves` accepts, by setting its class; pywinrm's Protocol uses it as its
    own."""

    _connection: _DeviceConnection | None = None
    _sealing: t.Any = None  # the NTLM context that authenticated the current connection
    _cookies: dict[str, str] | None = None

    def build_session(self) -> t.Any:
        raise NotImplementedError("DirectTransport keeps no requests session")

    def close_session(self) -> None:
        connection, self._connection, self._sealing = self._connection, None, None
        if connection is not None:
            connection.close()

    def send_message(self, message: str | bytes) -> bytes:
        data = message.encode("utf-8") if isinstance(message, str) else message
        try:
            status, headers, content = self._exchange(data)
            if status == 401:
                raise InvalidCredentialsError("the specified credentials were rejected by the server")
            text = self._unsealed(status, headers, content)
        except BaseException:
            self.close_session()  # what a refused or half-done exchange left on the connection is not used again
            raise
        if status >= 300:
            raise WinRMTransportError("http", status, text.decode("utf-8", "replace"))
        return text

    # The exchange ---------------------------------------------------------------------------------------------
    def _exchange(self, data: bytes) -> tuple[int, http.client.HTTPMessage, bytes]:
        connection = self._connected()
        if self.auth_method != "ntlm":
            return self._post(connection, data, self._static_authorization())
        if self._sealing is None:
            reply = self._authenticate(connection, b"" if self._seals else data)
            if reply[0] != 200 or not self._seals:
                return reply
        if self._seals:
            return self._post(connection, self._sealed(data), None, _SEALED_CONTENT_TYPE)
        return self._post(connection, data, None)

    @property
    def _seals(self) -> bool:
        """NTLM seals every message over HTTP (as pywinrm's "auto") or when asked ("always")."""
        return self.message_encryption == "always" or (
            self.message_encryption == "auto" and not self.endpoint.lower().startswith("https://"))

    def _connected(self) -> _DeviceConnection:
        """The open connection, or a new one when there is none or the device closed it while it idled (NTLM then
        authenticates the new connection again)."""
        connection = self._connection
        if connection is not None and connection.sock is not None and not _closed_by_peer(connection.sock):
            return connection
        self.close_session()
        url = urlsplit(self.endpoint)
        https = url.scheme.lower() == "https"
        tls = _tls_context(_verify(self), self.cert_pem, self.cert_key_pem) if https else None
        connect_timeout, read_timeout = _timeouts(self.read_timeout_sec)
        connection = _DeviceConnection(url.hostname or "", url.port or (5986 if https else 5985),
                                       url.path or "/wsman", tls, connect_timeout, read_timeout)
        connection.connect()
        self._connection = connection
        return connection

    def _authenticate(self, connection: _DeviceConnection, data: bytes) -> tuple[int, http.client.HTTPMessage, bytes]:
        """NTLM on this connection: the negotiation with an empty request (the device answers its challenge), then
        the authentication with `data`. Returns the reply to the second request."""
        bindings = None
        if self.send_cbt and isinstance(connection.sock, ssl.SSLSocket):
            peer = connection.sock.getpeercert(binary_form=True)
            digest = certificate_hash(peer) if peer else None
            if digest:
                bindings = spnego.channel_bindings.GssChannelBindings(
                    application_data=b"tls-server-end-point:" + digest)
        context = spnego.client(self.username, self.password, hostname=connection.host, service="http",
                                channel_bindings=bindings, protocol="ntlm",
                                options=spnego.NegotiateOptions.use_ntlm)
        status, headers, content = self._post(connection, b"", _negotiate(context.step()))
        challenge = _challenge(headers) if status == 401 else None
        if challenge is None and status < 300:
            # The device did not ask to authenticate (no Windows does): the message goes as requests would send it,
            # unless it must be sealed, which needs an authenticated connection.
            if self._seals:
                raise UnsealedReply("http", status, "the device did not authenticate the connection")
            return self._post(connection, data, None)
        if challenge is None:
            return status, headers, content  # a 401 without a challenge is a refusal; any other error is the reply
        reply = self._post(connection, data, _negotiate(context.step(challenge)))
        if reply[0] != 401:
            self._sealing = context
        return reply

    def _static_authorization(self) -> str:
        if self.auth_method == "certificate":
            return CERTIFICATE_AUTHORIZATION
        pair = f"{self.username or ''}:{self.password or ''}".encode("latin-1", "replace")
        return "Basic " + base64.b64encode(pair).decode("ascii")

    def _post(self, connection: _DeviceConnection, body: bytes, authorization: str | None,
              content_type: str | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
        headers = dict(self.default_headers)
        headers["Connection"] = "Keep-Alive"  # NTLM authenticates the connection, not the request
        if content_type:
            headers["Content-Type"] = content_type
        if authorization:
            headers["Authorization"] = authorization
        if self._cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self._cookies.items())
        connection.request("POST", connection.path, body=body, headers=headers)
        response = connection.getresponse()
        content = response.read()
        self._keep_cookies(response.msg)
        return response.status, response.msg, content

    def _keep_cookies(self, headers: http.client.HTTPMessage) -> None:
        """A load balancer in front of devices may pin a client with a cookie; it goes back with every request."""
        for value in headers.get_all("Set-Cookie") or ():
            jar = http.cookies.SimpleCookie()
            try:
                jar.load(value)
            except http.cookies.CookieError:
                continue
            self._cookies = dict(self._cookies or {}, **{name: morsel.value for name, morsel in jar.items()})

    # NTLM sealing (MS-WSMV 2.2.9.1.1), the framing pywinrm's Encryption writes and reads --------------------------
    def _sealed(self, data: bytes) -> bytes:
        wrapped = self._sealing.wrap_winrm(data)
        return (_BOUNDARY + b"\r\n\tContent-Type: " + _SEALED_PROTOCOL.encode() + b"\r\n"
                b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=" + str(len(data)).encode() +
                b"\r\n" + _BOUNDARY + b"\r\n\tContent-Type: application/octet-stream\r\n" +
                struct.pack("<i", len(wrapped.header)) + wrapped.header + wrapped.data + _BOUNDARY + b"--\r\n")

    def _unsealed(self, status: int, headers: http.client.HTTPMessage, content: bytes) -> bytes:
        if self._sealing is None or not self._seals:
            return content
        if f'protocol="{_SEALED_PROTOCOL}"' not in (headers.get("Content-Type") or ""):
            # Windows seals every answer on a sealed connection. An error status may come from the HTTP layer in
            # clear text (it only names the failure); an answer in clear text was put there on the way.
            if content and status < 300:
                raise UnsealedReply("http", status, "the device answered in clear text on a sealed connection")
            return content
        try:
            return self._unwrapped(content)
        except (IndexError, ValueError, struct.error, spnego.exceptions.SpnegoError) as error:
            raise UnsealedReply("http", status, f"the device's sealed answer does not unseal "
                                                f"({type(error).__name__})") from error

    def _unwrapped(self, content: bytes) -> bytes:
        parts = [part for part in content.split(_BOUNDARY + b"\r\n") if part]
        if not parts or len(parts) % 2:
            raise ValueError("the sealed answer is not whole: each part is a header and its payload")
        message = b""
        for header, payload in zip(parts[0::2], parts[1::2]):
            expected = int(header.strip().split(b"Length=")[1])
            if payload.endswith(_BOUNDARY + b"--\r\n"):
                payload = payload[:-len(_BOUNDARY + b"--\r\n")]
            payload = payload.replace(b"\tContent-Type: application/octet-stream\r\n", b"", 1)
            length = struct.unpack("<i", payload[:4])[0]
            plain = self._sealing.unwrap_winrm(payload[4:4 + length], payload[4 + length:])
            if len(plain) != expected:
                raise ValueError("the sealed answer has another length than it says")
            message += plain
        return message


def _negotiate(token: bytes | None) -> str:
    return "Negotiate " + base64.b64encode(token or b"").decode("ascii")


def _challenge(headers: http.client.HTTPMessage) -> bytes | None:
    """The NTLM challenge of a 401's WWW-Authenticate headers, or None when the device sent none."""
    for value in headers.get_all("WWW-Authenticate") or ():
        for offer in value.split(","):
            scheme, _space, token = offer.strip().partition(" ")
            if scheme.lower() in ("negotiate", "ntlm") and token.strip():
                return base64.b64decode(token.strip())
    return None


def _timeouts(read_timeout_sec: t.Any) -> tuple[float, float]:
    if isinstance(read_timeout_sec, tuple):
        return float(read_timeout_sec[0]), float(read_timeout_sec[1])
    return float(read_timeout_sec), float(read_timeout_sec)


def _closed_by_peer(sock: socket.socket) -> bool:
    """An idle connection with something to read has been closed (or broken) by the device: it sends nothing
    unasked."""
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True
