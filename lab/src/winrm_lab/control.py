"""The control surface: read and change a simulated device's state without going through WinRM.

A small JSON HTTP API on 127.0.0.1 (an ephemeral port, a bearer token), served by the lab's own asyncio loop next to
the WinRM listeners. Tests and the demo use it to set the scene (log a user off, stop the agent, move the clock,
break the network) and to look behind the scenes (event log, files, registry). Every endpoint is listed in the
lab's README. This module holds the routes; what each one reads or changes is in control_state.py, and
`ControlClient` (control_client.py, importable from here) is the Python client for it.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import secrets
import typing as t

from aiohttp import web

from . import remote_desktop
from .control_client import ControlClient, ControlError
from .control_state import (BadRequest, advance_clock, apply_agent, apply_event_log, apply_faults,
                            apply_remote_desktop, apply_service, apply_storage, apply_user, clear_faults,
                            delete_path, delete_registry, device_state, device_summary, events, faults_state, log_user_off,
                            plant_link, prompts, read_path, read_registry, remove_account, scheduled_tasks,
                            set_password, shadow_request, storage_state, write_events, write_file, write_registry)
from .device import Device

__all__ = ["ControlClient", "ControlError", "ControlSurface", "RefreshListeners"]

RefreshListeners = t.Callable[[Device], t.Awaitable[t.Any]]


# The HTTP server ---------------------------------------------------------------------------------------------------
class ControlSurface:
    """The control API for a set of devices, served on 127.0.0.1 by the running asyncio loop."""

    def __init__(self, devices: t.Iterable[Device], refresh_listeners: RefreshListeners | None = None,
                 token: str | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.devices = {device.name.lower(): device for device in devices}
        self.token = token or secrets.token_urlsafe(24)
        self._refresh_listeners = refresh_listeners
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None
        self.url = ""

    def _device(self, request: web.Request) -> Device:
        device = self.devices.get(request.match_info["name"].lower())
        if device is None:
            raise web.HTTPNotFound(text=json.dumps({"error": f"no device named {request.match_info['name']}"}),
                                   content_type="application/json")
        return device

    @web.middleware
    async def _guard(self, request: web.Request, handler: t.Callable[..., t.Awaitable[web.StreamResponse]]
                     ) -> web.StreamResponse:
        supplied = request.headers.get("Authorization", "")
        if not hmac.compare_digest(supplied.encode(), f"Bearer {self.token}".encode()):
            return web.json_response({"error": "missing or wrong bearer token"}, status=401,
                                     headers={"WWW-Authenticate": "Bearer"})
        try:
            return await handler(request)
        except BadRequest as error:
            return web.json_response({"error": str(error)}, status=400)
        except json.JSONDecodeError as error:
            return web.json_response({"error": f"the request body is not JSON: {error}"}, status=400)

    async def _refresh(self, device: Device) -> None:
        if self._refresh_listeners is not None:
            await self._refresh_listeners(device)

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=64 * 1024**2)
        routes = [
            web.get("/health", self.health),
            web.get("/devices", self.list_devices),
            web.post("/clock/advance", self.advance_all_clocks),
            web.get("/devices/{name}", self.get_device),
            web.put("/devices/{name}/interactive-user", self.put_user),
            web.patch("/devices/{name}/interactive-user", self.patch_user),
            web.delete("/devices/{name}/interactive-user", self.delete_user),
            web.put("/devices/{name}/agent", self.put_agent),
            web.patch("/devices/{name}/service", self.patch_service),
            web.post("/devices/{name}/clock/advance", self.advance_device_clock),
            web.get("/devices/{name}/events", self.get_events),
            web.post("/devices/{name}/events", self.post_events),
            web.patch("/devices/{name}/event-log", self.patch_event_log),
            web.get("/devices/{name}/tasks", self.get_tasks),
            web.get("/devices/{name}/prompts", self.get_prompts),
            web.get("/devices/{name}/remote-desktop", self.get_remote_desktop),
            web.patch("/devices/{name}/remote-desktop", self.patch_remote_desktop),
            web.post("/devices/{name}/remote-desktop/shadow", self.post_shadow),
            web.get("/devices/{name}/files", self.get_files),
            web.get("/devices/{name}/storage", self.get_storage),
            web.patch("/devices/{name}/storage", self.patch_storage),
            web.put("/devices/{name}/files", self.put_file),
            web.delete("/devices/{name}/files", self.delete_file),
            web.post("/devices/{name}/links", self.post_link),
            web.get("/devices/{name}/registry", self.get_registry),
            web.put("/devices/{name}/registry", self.put_registry),
            web.delete("/devices/{name}/registry", self.delete_registry),
            web.put("/devices/{name}/accounts/{user}", self.put_account),
            web.delete("/devices/{name}/accounts/{user}", self.delete_account),
            web.get("/devices/{name}/faults", self.get_faults),
            web.patch("/devices/{name}/faults", self.patch_faults),
            web.delete("/devices/{name}/faults", self.delete_faults),
        ]
        app.add_routes(routes)
        return app

    async def start(self) -> str:
        self._runner = web.AppRunner(self._app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        port = self._runner.addresses[0][1]  # the ephemeral port the system chose
        self.url = f"http://{self._host}:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # handlers ------------------------------------------------------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "devices": len(self.devices)})

    async def list_devices(self, request: web.Request) -> web.Response:
        return web.json_response([device_summary(d) for d in self.devices.values()])

    async def get_device(self, request: web.Request) -> web.Response:
        return web.json_response(device_state(self._device(request)))

    async def put_user(self, request: web.Request) -> web.Response:
        device = self._device(request)
        body = await request.json()
        if body is None:
            log_user_off(device)
        else:
            apply_user(device, body, replace=True)
        return web.json_response(device_state(device)["interactive_user"])

    async def patch_user(self, request: web.Request) -> web.Response:
        device = self._device(request)
        apply_user(device, await request.json(), replace=False)
        return web.json_response(device_state(device)["interactive_user"])

    async def delete_user(self, request: web.Request) -> web.Response:
        log_user_off(self._device(request))
        return web.json_response(None)

    async def put_agent(self, request: web.Request) -> web.Response:
        device = self._device(request)
        apply_agent(device, await request.json())
        return web.json_response(device_state(device)["agent"])

    async def patch_service(self, request: web.Request) -> web.Response:
        device = self._device(request)
        apply_service(device, await request.json())
        return web.json_response(dataclasses.asdict(device.service))

    async def advance_device_clock(self, request: web.Request) -> web.Response:
        return web.json_response(advance_clock(self._device(request), await request.json()))

    async def advance_all_clocks(self, request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response([advance_clock(device, body) for device in self.devices.values()])

    async def get_events(self, request: web.Request) -> web.Response:
        device = self._device(request)
        return web.json_response(events(device, request.query.get("log"), request.query.get("since")))

    async def post_events(self, request: web.Request) -> web.Response:
        device = self._device(request)
        return web.json_response(write_events(device, await request.json()))

    async def patch_event_log(self, request: web.Request) -> web.Response:
        device = self._device(request)
        return web.json_response(apply_event_log(device, await request.json()))

    async def get_tasks(self, request: web.Request) -> web.Response:
        return web.json_response(scheduled_tasks(self._device(request)))

    async def get_prompts(self, request: web.Request) -> web.Response:
        return web.json_response(prompts(self._device(request)))

    async def get_remote_desktop(self, request: web.Request) -> web.Response:
        return web.json_response(remote_desktop.state(self._device(request)))

    async def patch_remote_desktop(self, request: web.Request) -> web.Response:
        device = self._device(request)
        apply_remote_desktop(device, await request.json())
        return web.json_response(remote_desktop.state(device))

    async def post_shadow(self, request: web.Request) -> web.Response:
        return web.json_response(shadow_request(self._device(request), await request.json()))

    async def get_storage(self, request: web.Request) -> web.Response:
        return web.json_response(storage_state(self._device(request)))

    async def patch_storage(self, request: web.Request) -> web.Response:
        device = self._device(request)
        apply_storage(device, await request.json())
        return web.json_response(storage_state(device))

    async def get_files(self, request: web.Request) -> web.Response:
        path = request.query.get("path")
        content = request.query.get("content", "true").lower() not in ("false", "0", "no")
        return _found_or_404(path, read_path(self._device(request), path, content))

    async def put_file(self, request: web.Request) -> web.Response:
        device = self._device(request)
        return web.json_response(write_file(device, request.query.get("path"), await request.read()))

    async def delete_file(self, request: web.Request) -> web.Response:
        path = request.query.get("path")
        return _found_or_404(path, {"deleted": path} if delete_path(self._device(request), path) else None)

    async def post_link(self, request: web.Request) -> web.Response:
        return web.json_response(plant_link(self._device(request), await request.json()))

    async def get_registry(self, request: web.Request) -> web.Response:
        path = request.query.get("path")
        return _found_or_404(path, read_registry(self._device(request), path))

    async def put_registry(self, request: web.Request) -> web.Response:
        device = self._device(request)
        body = await request.json()
        write_registry(device, body)
        return web.json_response(read_registry(device, body["path"]))

    async def delete_registry(self, request: web.Request) -> web.Response:
        path, name = request.query.get("path"), request.query.get("name")
        delete_registry(self._device(request), path, name)
        return web.json_response({"deleted": {"path": path, "name": name}})

    async def put_account(self, request: web.Request) -> web.Response:
        device = self._device(request)
        set_password(device, request.match_info["user"], await request.json())
        return web.json_response({"accounts": sorted(device.accounts)})

    async def delete_account(self, request: web.Request) -> web.Response:
        device = self._device(request)
        user = request.match_info["user"]
        if not remove_account(device, user):
            return web.json_response({"error": f"no account {user} on {device.name}"}, status=404)
        return web.json_response({"accounts": sorted(device.accounts)})

    async def get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(faults_state(self._device(request)))

    async def patch_faults(self, request: web.Request) -> web.Response:
        device = self._device(request)
        if apply_faults(device, await request.json()):
            await self._refresh(device)
        return web.json_response(faults_state(device))

    async def delete_faults(self, request: web.Request) -> web.Response:
        device = self._device(request)
        if clear_faults(device):
            await self._refresh(device)
        return web.json_response(faults_state(device))


def _found_or_404(path: str | None, found: t.Any) -> web.Response:
    """The answer for a path of the device (file or registry key), in PowerShell's words when it does not exist."""
    if found is None:
        return web.json_response({"error": f"Cannot find path '{path}' because it does not exist."}, status=404)
    return web.json_response(found)
