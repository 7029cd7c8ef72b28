"""The Python client of the control surface (control.py): standard library only, so any test, integration target
or benchmark can use it. Every method is one endpoint of the lab's README."""

from __future__ import annotations

import base64
import json
import pathlib
import typing as t
import urllib.error
import urllib.parse
import urllib.request


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class ControlClient:
    """A small synchronous client for the control surface (standard library only, so any test can use it)."""

    def __init__(self, url: str, token: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    @classmethod
    def from_manifest(cls, path: pathlib.Path | str) -> "ControlClient":
        document = json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
        return cls(document["control"]["url"], document["control"]["token"])

    def request(self, method: str, path: str, body: t.Any = None, query: dict[str, str] | None = None,
                raw: bytes | None = None) -> t.Any:
        url = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        headers = {"Authorization": f"Bearer {self.token}"}
        data = None
        if raw is not None:
            data, headers["Content-Type"] = raw, "application/octet-stream"
        elif body is not None or method in ("PUT", "PATCH", "POST"):
            data, headers["Content-Type"] = json.dumps(body).encode("utf-8"), "application/json"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            text = error.read().decode("utf-8", errors="replace")
            try:
                text = json.loads(text).get("error", text)
            except (ValueError, AttributeError):
                pass
            raise ControlError(error.code, text) from None

    def _object(self, method: str, path: str, body: t.Any = None, query: dict[str, str] | None = None,
                raw: bytes | None = None) -> dict[str, t.Any]:
        """request() for an endpoint that answers a JSON object."""
        return t.cast("dict[str, t.Any]", self.request(method, path, body, query, raw))

    def _list(self, method: str, path: str, body: t.Any = None,
              query: dict[str, str] | None = None) -> list[dict[str, t.Any]]:
        """request() for an endpoint that answers a JSON list of objects."""
        return t.cast("list[dict[str, t.Any]]", self.request(method, path, body, query))

    @staticmethod
    def _name(name: str) -> str:
        return urllib.parse.quote(name, safe="")

    # devices
    def health(self) -> dict[str, t.Any]:
        return self._object("GET", "/health")

    def devices(self) -> list[dict[str, t.Any]]:
        return self._list("GET", "/devices")

    def device(self, name: str) -> dict[str, t.Any]:
        return self._object("GET", f"/devices/{self._name(name)}")

    # the person at the device
    def log_user_on(self, name: str, user: str, consent: str = "accept", answer_after_seconds: float = 1.0,
                    session_id: int = 1) -> dict[str, t.Any]:
        return self._object("PUT", f"/devices/{self._name(name)}/interactive-user",
                            {"name": user, "consent": consent, "answer_after_seconds": answer_after_seconds,
                             "session_id": session_id})

    def set_consent(self, name: str, consent: str, answer_after_seconds: float | None = None) -> dict[str, t.Any]:
        body: dict[str, t.Any] = {"consent": consent}
        if answer_after_seconds is not None:
            body["answer_after_seconds"] = answer_after_seconds
        return self._object("PATCH", f"/devices/{self._name(name)}/interactive-user", body)

    def log_user_off(self, name: str) -> None:
        self.request("DELETE", f"/devices/{self._name(name)}/interactive-user")

    # agent, service, clock
    def set_agent(self, name: str, running: bool | None = None, interval_seconds: int | None = None
                  ) -> dict[str, t.Any]:
        body = {k: v for k, v in (("running", running), ("interval_seconds", interval_seconds)) if v is not None}
        return self._object("PUT", f"/devices/{self._name(name)}/agent", body)

    def update_service(self, name: str, **settings: t.Any) -> dict[str, t.Any]:
        return self._object("PATCH", f"/devices/{self._name(name)}/service", settings)

    def advance_clock(self, name: str, seconds: float) -> dict[str, t.Any]:
        return self._object("POST", f"/devices/{self._name(name)}/clock/advance", {"seconds": seconds})

    def advance_all_clocks(self, seconds: float) -> list[dict[str, t.Any]]:
        return self._list("POST", "/clock/advance", {"seconds": seconds})

    # what happened on the device
    def events(self, name: str, log: str | None = None, since: str | None = None) -> list[dict[str, t.Any]]:
        query = {k: v for k, v in (("log", log), ("since", since)) if v is not None}
        return self._list("GET", f"/devices/{self._name(name)}/events", query=query or None)

    def write_events(self, name: str, source: str, event_id: int, message: str, count: int = 1,
                     entry_type: str = "Information", log: str = "Application") -> dict[str, t.Any]:
        return self._object("POST", f"/devices/{self._name(name)}/events",
                            {"log": log, "source": source, "event_id": event_id, "entry_type": entry_type,
                             "message": message, "count": count})

    def set_event_log(self, name: str, log: str = "Application", **settings: t.Any) -> dict[str, t.Any]:
        return self._object("PATCH", f"/devices/{self._name(name)}/event-log", {"log": log, **settings})

    def tasks(self, name: str) -> list[dict[str, t.Any]]:
        return self._list("GET", f"/devices/{self._name(name)}/tasks")

    def prompts(self, name: str) -> list[dict[str, t.Any]]:
        return self._list("GET", f"/devices/{self._name(name)}/prompts")

    # Remote Desktop
    def remote_desktop(self, name: str) -> dict[str, t.Any]:
        return self._object("GET", f"/devices/{self._name(name)}/remote-desktop")

    def set_remote_desktop(self, name: str, **settings: t.Any) -> dict[str, t.Any]:
        return self._object("PATCH", f"/devices/{self._name(name)}/remote-desktop", settings)

    def shadow(self, name: str, account: str, session_id: int, control: bool = False,
               no_consent_prompt: bool = False) -> dict[str, t.Any]:
        return self._object("POST", f"/devices/{self._name(name)}/remote-desktop/shadow",
                            {"account": account, "session_id": session_id, "control": control,
                             "no_consent_prompt": no_consent_prompt})

    def list_files(self, name: str, path: str) -> list[dict[str, t.Any]]:
        found = self._object("GET", f"/devices/{self._name(name)}/files", query={"path": path})
        if found["type"] != "directory":
            raise ControlError(400, f"{path} is a file")
        return found["entries"]

    def read_file(self, name: str, path: str) -> bytes:
        found = self._object("GET", f"/devices/{self._name(name)}/files", query={"path": path})
        if found["type"] != "file":
            raise ControlError(400, f"{path} is a directory")
        return base64.b64decode(found["content_base64"])

    def file_digest(self, name: str, path: str) -> dict[str, t.Any]:
        """A file's size and SHA-256, without its content."""
        return self._object("GET", f"/devices/{self._name(name)}/files", query={"path": path, "content": "false"})

    def storage(self, name: str) -> dict[str, t.Any]:
        return self._object("GET", f"/devices/{self._name(name)}/storage")

    def set_storage(self, name: str, **fields: t.Any) -> dict[str, t.Any]:
        return self._object("PATCH", f"/devices/{self._name(name)}/storage", fields)

    def write_file(self, name: str, path: str, data: bytes) -> dict[str, t.Any]:
        return self._object("PUT", f"/devices/{self._name(name)}/files", query={"path": path}, raw=data)

    def delete_file(self, name: str, path: str) -> None:
        self.request("DELETE", f"/devices/{self._name(name)}/files", query={"path": path})

    def plant_link(self, name: str, path: str, target: str, move_existing_to: str | None = None) -> dict[str, t.Any]:
        body = {"path": path, "target": target}
        if move_existing_to is not None:
            body["move_existing_to"] = move_existing_to
        return self._object("POST", f"/devices/{self._name(name)}/links", body)

    def registry(self, name: str, path: str) -> dict[str, t.Any]:
        return self._object("GET", f"/devices/{self._name(name)}/registry", query={"path": path})

    def set_registry_value(self, name: str, path: str, value_name: str, value: t.Any) -> dict[str, t.Any]:
        if isinstance(value, bytes):
            value = {"base64": base64.b64encode(value).decode("ascii")}
        return self._object("PUT", f"/devices/{self._name(name)}/registry",
                            {"path": path, "name": value_name, "value": value})

    def delete_registry(self, name: str, path: str, value_name: str | None = None) -> None:
        query = {"path": path} if value_name is None else {"path": path, "name": value_name}
        self.request("DELETE", f"/devices/{self._name(name)}/registry", query=query)

    # accounts
    def set_password(self, name: str, user: str, password: str) -> dict[str, t.Any]:
        return self._object("PUT", f"/devices/{self._name(name)}/accounts/{self._name(user)}",
                            {"password": password})

    def remove_account(self, name: str, user: str) -> dict[str, t.Any]:
        return self._object("DELETE", f"/devices/{self._name(name)}/accounts/{self._name(user)}")

    # faults
    def faults(self, name: str) -> dict[str, t.Any]:
        return self._object("GET", f"/devices/{self._name(name)}/faults")

    def set_faults(self, name: str, **faults: t.Any) -> dict[str, t.Any]:
        return self._object("PATCH", f"/devices/{self._name(name)}/faults", faults)

    def clear_faults(self, name: str) -> dict[str, t.Any]:
        return self._object("DELETE", f"/devices/{self._name(name)}/faults")
