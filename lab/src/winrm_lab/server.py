"""The lab's WinRM listeners: one HTTP and one HTTPS listener per device, on the device's loopback address.

Each listener answers POST /wsman as the WinRM service does (`Server: Microsoft-HTTPAPI/2.0`, SOAP over HTTP with
Basic or Negotiate authentication and NTLM message encryption, or over TLS with a certificate from the lab CA), and
honours the device's `Faults`: latency before every answer, listeners that refuse connections, a black hole that
reads a request and never answers, bare HTTP 500s, a connection dropped once a number of request bytes arrived, and
the kind of certificate presented.

One asyncio loop serves all devices: 1,000 devices are 2,000 listening sockets and no task per device while idle.
`LabServer.run_in_thread()` runs a server on its own loop in a background thread (for tests and the CLI).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import ipaddress
import logging
import resource
import socket
import struct
import tempfile
import threading
import typing as t

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server

from . import auth, pki, wsman
from .tasks import TaskScheduler
from .winrs import Caller, WinRSService

log = logging.getLogger(__name__)

SERVER_HEADER = "Microsoft-HTTPAPI/2.0"
SOAP_CONTENT_TYPE = "application/soap+xml;charset=UTF-8"
WSMAN_PATH = "/wsman"
# HTTP.sys closes a keep-alive connection idle for two minutes (its default IdleConnectionTimeout).
KEEPALIVE_SECONDS = 120
IDLE_SWEEP_SECONDS = 5.0
READ_CHUNK = 64 * 1024
# HTTP.sys' own page for a URL nobody registered (WinRM registers only /wsman).
NOT_FOUND_PAGE = (b'<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01//EN""http://www.w3.org/TR/html4/strict.dtd">\r\n'
                  b'<HTML><HEAD><TITLE>Not Found</TITLE>\r\n'
                  b'<META HTTP-EQUIV="Content-Type" Content="text/html; charset=us-ascii"></HEAD>\r\n'
                  b"<BODY><h2>Not Found</h2>\r\n<hr><p>HTTP Error 404. The requested resource is not found.</p>\r\n"
                  b"</BODY></HTML>\r\n")


class _Connection(RequestHandler):
    """aiohttp's per-connection protocol, carrying the connection's authentication (NTLM is per connection)."""

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self.security = auth.ConnectionSecurity()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.security.reset()
        super().connection_lost(exc)


class _ListenerProtocolFactory(Server):
    """aiohttp's low-level server, making `_Connection`s for one listener."""

    def __call__(self) -> RequestHandler:
        return _Connection(self, loop=self._loop, **self._kwargs)


@dataclasses.dataclass
class _Listener:
    scheme: str  # "http" | "https"
    factory: _ListenerProtocolFactory
    server: asyncio.AbstractServer


class LabServer:
    """Serves a list of Devices. `await start()`, `await stop()`; faults take effect on the next request, except
    `refuse_connections`, which needs `await refresh_listeners(device)` to close or reopen the listeners."""

    def __init__(self, devices: t.Iterable[t.Any], ca: pki.CertificateAuthority | None = None, *,
                 work_dir: str | None = None) -> None:
        self.devices = list(devices)
        self._by_address = {device.address: device for device in self.devices}
        self._temp_dir: tempfile.TemporaryDirectory[str] | None = None
        if ca is None or work_dir is None:
            self._temp_dir = tempfile.TemporaryDirectory(prefix="winrm-lab-")
        base = work_dir or (self._temp_dir.name if self._temp_dir else "")
        self.ca = ca or pki.CertificateAuthority.create(f"{base}/pki")
        self.authenticator = auth.Authenticator(f"{base}/ntlm" if work_dir else None)
        self.winrs = WinRSService()
        self.scheduler = TaskScheduler(self.devices)  # every device's Task Scheduler, on this server's loop
        self._listeners: dict[str, list[_Listener]] = {}  # device name -> its bound listeners
        self._dropped_bytes: dict[str, int] = {}  # device name -> request bytes seen since drop_after_bytes was set
        self._answered_bytes: dict[str, int] = {}  # device name -> response bytes since drop_after_response_bytes
        self._sweeper: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # Lifecycle --------------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Binds every listener (except where the device refuses connections). Returns once all are bound."""
        raise_open_file_limit()
        self._loop = asyncio.get_running_loop()
        try:
            for device in self.devices:
                if not device.faults.refuse_connections:
                    await self._bind(device)
        except BaseException:
            await self.stop()
            raise
        self._sweeper = self._loop.create_task(self._sweep_idle_shells())
        await self.scheduler.start()

    async def stop(self) -> None:
        await self.scheduler.stop()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        await asyncio.gather(*(self._unbind(name) for name in list(self._listeners)))
        self.winrs.close_all()
        self.authenticator.close()
        if self._temp_dir is not None:
            self._temp_dir.cleanup()
            self._temp_dir = None

    async def refresh_listeners(self, device: t.Any) -> None:
        """Closes or opens a device's listeners after its `faults.refuse_connections` changed."""
        if device.faults.refuse_connections:
            await self._unbind(device.name)
        elif device.name not in self._listeners:
            await self._bind(device)

    def device_for(self, address: str) -> t.Any | None:
        return self._by_address.get(address)

    def run_in_thread(self) -> "LabServerThread":
        """Starts this server on a new event loop in a daemon thread; returns once every listener is bound."""
        return LabServerThread(self)

    # Listeners --------------------------------------------------------------------------------------------------
    async def _bind(self, device: t.Any) -> None:
        listeners = []
        try:
            for scheme, port in (("http", device.http_port), ("https", device.https_port)):
                factory = _ListenerProtocolFactory(
                    functools.partial(self._handle, device, scheme), handler_cancellation=True,
                    access_log=None, keepalive_timeout=KEEPALIVE_SECONDS)
                ssl_context = self._tls_context(device) if scheme == "https" else None
                server = await asyncio.get_running_loop().create_server(
                    factory, host=device.address, port=port, ssl=ssl_context, reuse_address=True, backlog=128)
                listeners.append(_Listener(scheme, factory, server))
        except OSError as exc:
            for listener in listeners:
                listener.server.close()
            raise OSError(exc.errno, f"cannot listen for {device.name} on {device.address}: {exc.strerror}") from exc
        self._listeners[device.name] = listeners

    async def _unbind(self, device_name: str) -> None:
        listeners = self._listeners.pop(device_name, [])
        for listener in listeners:
            listener.server.close()
            listener.factory.pre_shutdown()  # closes open connections: a stopped service drops its clients
        await asyncio.gather(*(listener.factory.shutdown(1.0) for listener in listeners), return_exceptions=True)
        for listener in listeners:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(listener.server.wait_closed(), 1.0)

    def _tls_context(self, device: t.Any) -> t.Any:
        extra = [] if _is_ip(device.inventory_host) else [device.inventory_host]

        def choose() -> t.Any:
            return self.ca.server_certificate(device.name, device.address, device.faults.certificate,
                                              extra_dns_names=extra).context

        return pki.switching_context(choose, self.ca.ca_path)

    async def _sweep_idle_shells(self) -> None:
        while True:
            await asyncio.sleep(IDLE_SWEEP_SECONDS)
            try:
                self.winrs.expire_idle(devices=self.devices)
            except Exception:  # the sweeper must outlive a bug in one shell
                log.exception("idle shell sweep failed")

    # One request ------------------------------------------------------------------------------------------------
    async def _handle(self, device: t.Any, scheme: str, request: web.BaseRequest) -> web.StreamResponse:
        # The request log (--log-level info): which device was asked what, so a test can show none was contacted.
        log.info("%s: %s %s %s", device.name, scheme, request.method, request.path)
        body = await self._read_body(device, request)
        faults = device.faults
        if faults.blackhole:
            await _never()  # until the client gives up and the connection closes (the handler is cancelled)
        if faults.latency_seconds > 0:
            await asyncio.sleep(faults.latency_seconds)
        if faults.http_500:
            return _response(500)
        if request.path.rstrip("/").lower() != WSMAN_PATH:
            return _response(404, NOT_FOUND_PAGE, "text/html; charset=us-ascii")
        if request.method != "POST":
            return _response(405, headers=[("Allow", "POST")])

        connection = t.cast(_Connection, request.protocol)
        is_https = scheme == "https"
        peer = None
        if is_https and request.transport is not None:
            ssl_object = request.transport.get_extra_info("ssl_object")
            peer = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        result = self.authenticator.authenticate(device, connection.security, request.headers.get("Authorization"),
                                                 is_https, peer)
        if not result.ok:
            return _response(401, headers=result.headers)

        content_type = request.headers.get("Content-Type", "")
        encrypted = auth.is_encrypted(content_type)
        if encrypted:
            if result.sealing is None:
                return _response(400)
            try:
                body = auth.unwrap_message(result.sealing, body, content_type)
            except auth.EncryptionError as exc:
                log.debug("%s: undecryptable request: %s", device.name, exc)
                return _response(400)
        elif body and not is_https and not device.service.allow_unencrypted:
            # SOAP in clear text over HTTP is refused unless AllowUnencrypted (see auth.py).
            return _response(401, headers=auth.challenge_headers(device))
        if not body:
            return _response(200, headers=result.headers)  # the empty POST clients send to set up NTLM

        status, payload = await self._wsman(device, scheme, request, result.user or "", body)
        if encrypted and result.sealing is not None and payload:
            payload, payload_type = auth.wrap_message(result.sealing, payload)
        else:
            payload_type = SOAP_CONTENT_TYPE
        await self._drop_response_if_due(device, request, status, payload)
        return _response(status, payload, payload_type if payload else None, headers=result.headers)

    async def _drop_response_if_due(self, device: t.Any, request: web.BaseRequest, status: int, payload: bytes) -> None:
        """Counts response bytes against drop_after_response_bytes; the response that crosses it is sent only in
        part (headers and the bytes below the threshold), then the connection is aborted, once."""
        threshold = device.faults.drop_after_response_bytes
        if threshold is None:
            self._answered_bytes.pop(device.name, None)
            return
        before = self._answered_bytes.get(device.name, 0)
        if before + len(payload) <= threshold:
            self._answered_bytes[device.name] = before + len(payload)
            return
        device.faults.drop_after_response_bytes = None  # the fault fires once
        self._answered_bytes.pop(device.name, None)
        partial = web.StreamResponse(status=status)
        partial.headers["Server"] = SERVER_HEADER
        partial.content_length = len(payload)
        with contextlib.suppress(Exception):
            await partial.prepare(request)
            await partial.write(payload[:max(0, threshold - before)])
        _reset(request)
        await _never()

    async def _wsman(self, device: t.Any, scheme: str, request: web.BaseRequest, user: str,
                     body: bytes) -> tuple[int, bytes]:
        if len(body) > device.service.max_envelope_size_kb * 1024:
            return wsman.RequestTooLarge.http_status, b""
        relates_to = None
        try:
            parsed = wsman.parse_request(body)
            relates_to = parsed.message_id
            # The address the client really used (pywinrm writes a placeholder host into a:To).
            endpoint = f"{scheme}://{request.host}{request.path}"
            caller = Caller(user=user, client_ip=request.remote or "", endpoint=endpoint)
            return 200, await self.winrs.handle(device, caller, parsed)
        except wsman.WSManFault as fault:
            return fault.http_status, fault.render(relates_to, device.name)

    async def _read_body(self, device: t.Any, request: web.BaseRequest) -> bytes:
        """Reads the request body, dropping the connection if the device's drop_after_bytes threshold is crossed."""
        chunks = []
        while True:
            chunk = await request.content.read(READ_CHUNK)
            if not chunk:
                break
            chunks.append(chunk)
            threshold = device.faults.drop_after_bytes
            if threshold is None:
                self._dropped_bytes.pop(device.name, None)
                continue
            seen = self._dropped_bytes.get(device.name, 0) + len(chunk)
            self._dropped_bytes[device.name] = seen
            if seen > threshold:
                device.faults.drop_after_bytes = None  # the fault fires once
                self._dropped_bytes.pop(device.name, None)
                _reset(request)
                await _never()
        if device.faults.drop_after_bytes is None:
            self._dropped_bytes.pop(device.name, None)
        return b"".join(chunks)


def _response(status: int, body: bytes = b"", content_type: str | None = None,
              headers: t.Iterable[tuple[str, str]] = ()) -> web.Response:
    response = web.Response(status=status, body=body)
    response.headers["Server"] = SERVER_HEADER
    if content_type:
        response.headers["Content-Type"] = content_type
    elif "Content-Type" in response.headers:
        del response.headers["Content-Type"]
    for name, value in headers:
        response.headers.add(name, value)
    return response


async def _never() -> t.NoReturn:
    await asyncio.get_running_loop().create_future()
    raise AssertionError("unreachable")


def _reset(request: web.BaseRequest) -> None:
    """Drops the TCP connection abruptly (RST, no response), as a lost network path looks to the client."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def raise_open_file_limit() -> int:
    """Raises the soft RLIMIT_NOFILE to the hard limit: 1,000 devices need 2,000 listening sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return hard
    return soft


class LabServerThread:
    """A LabServer running on its own event loop in a daemon thread."""

    def __init__(self, server: LabServer, start_timeout: float = 120.0) -> None:
        self.server = server
        self.loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="winrm-lab-server", daemon=True)
        self._thread.start()
        if not self._started.wait(start_timeout):
            raise TimeoutError("the lab server did not start in time")
        if self._error is not None:
            self._thread.join()
            raise self._error

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.start())
        except BaseException as exc:
            self._error = exc
            self._started.set()
            self.loop.close()
            return
        self._started.set()
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    def call(self, coroutine: t.Coroutine[t.Any, t.Any, t.Any], timeout: float | None = 60.0) -> t.Any:
        """Runs a coroutine on the server's loop and waits for its result."""
        future: concurrent.futures.Future[t.Any] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    def refresh_listeners(self, device: t.Any) -> None:
        self.call(self.server.refresh_listeners(device))

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            self.call(self.server.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(30)

    def __enter__(self) -> "LabServerThread":
        return self

    def __exit__(self, *exc_info: t.Any) -> None:
        self.stop()
