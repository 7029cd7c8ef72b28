"""Remote Desktop on a simulated device: what Windows keeps outside the registry, and what mstsc /shadow meets.

The settings Windows keeps in the registry stay there, in `Device.registry`, where the device scripts read them:

    HKLM:\\SYSTEM\\CurrentControlSet\\Control\\Terminal Server            fDenyTSConnections (0: connections allowed)
    ...\\Terminal Server\\WinStations\\RDP-Tcp                          PortNumber
    HKLM:\\SOFTWARE\\Policies\\Microsoft\\Windows NT\\Terminal Services   fDenyTSConnections and Shadow (Group Policy)

Everything else is here: the firewall rule a shadow connection needs, the sessions of users connected over Remote
Desktop (a server's; the console user is `Device.interactive_user`), the RDP-Tcp listener's permissions (what
Win32_TSAccount lists) and the shadow connections open now. `shadow()` is what happens when a specialist runs
`mstsc /shadow:N` against the device, so tests can check what a grant really allows.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import typing as t

TERMINAL_SERVER_KEY = r"HKLM:\SYSTEM\CurrentControlSet\Control\Terminal Server"
LISTENER_KEY = TERMINAL_SERVER_KEY + r"\WinStations\RDP-Tcp"
TERMINAL_SERVICES_POLICY_KEY = r"HKLM:\SOFTWARE\Policies\Microsoft\Windows NT\Terminal Services"
DEFAULT_PORT = 3389

# Win32_TSAccount.PermissionsAllowed / PermissionsDenied bits.
WINSTATION_QUERY = 0x1
WINSTATION_SET = 0x2
WINSTATION_LOGOFF = 0x4
WINSTATION_VIRTUAL = 0xF008
WINSTATION_SHADOW = 0x10
WINSTATION_LOGON = 0x20
WINSTATION_MSG = 0x80
WINSTATION_CONNECT = 0x100
WINSTATION_DISCONNECT = 0x200
# The AddAccount presets.
GUEST_ACCESS = WINSTATION_LOGON
USER_ACCESS = WINSTATION_QUERY | WINSTATION_LOGON | WINSTATION_MSG | WINSTATION_CONNECT
ALL_ACCESS = 0xF03BF

# "Set rules for remote control of Remote Desktop Services user sessions" (value Shadow).
SHADOW_NONE, SHADOW_CONTROL_WITH_PERMISSION, SHADOW_CONTROL, SHADOW_VIEW_WITH_PERMISSION, SHADOW_VIEW = range(5)
# Not configured: the listener's own default, full control with the user's permission.
DEFAULT_SHADOW = SHADOW_CONTROL_WITH_PERMISSION

ADMINISTRATORS_SID = "S-1-5-32-544"
# How long Windows' "Remote Control Request" waits for the user before the request fails.
CONSENT_PROMPT_SECONDS = 30


@dataclasses.dataclass
class LogonSession:
    """A user's session besides the console's: someone connected over Remote Desktop (a server allows several)."""

    user: str  # DOMAIN\user
    session_id: int
    station: str = "RDP-Tcp#0"
    state: str = "Active"  # Active | Disconnected


@dataclasses.dataclass
class ListenerEntry:
    """One account's entry in the RDP-Tcp listener's permissions (Win32_TSAccount)."""

    account: str
    sid: str
    allowed: int
    denied: int = 0


@dataclasses.dataclass
class ShadowConnection:
    """An open mstsc /shadow connection (on Windows, RdpSa.exe runs in the shadowed session for it)."""

    account: str
    session_id: int
    control: bool
    prompted: bool
    connected_at: datetime.datetime  # device time


def default_listener() -> list[ListenerEntry]:
    """The RDP-Tcp listener's permissions as Windows installs them."""
    return [
        ListenerEntry("NT AUTHORITY\\SYSTEM", "S-1-5-18", ALL_ACCESS),
        ListenerEntry("BUILTIN\\Administrators", ADMINISTRATORS_SID, ALL_ACCESS),
        ListenerEntry("BUILTIN\\Remote Desktop Users", "S-1-5-32-555", USER_ACCESS),
    ]


@dataclasses.dataclass
class RemoteDesktop:
    shadow_firewall_rule_enabled: bool = True  # RemoteDesktop-Shadow-In-TCP, "Remote Desktop - Shadow (TCP-In)"
    sessions: list[LogonSession] = dataclasses.field(default_factory=list)
    listener: list[ListenerEntry] = dataclasses.field(default_factory=default_listener)
    connections: list[ShadowConnection] = dataclasses.field(default_factory=list)


def seed_registry(registry: t.Any) -> None:
    """What a managed fleet's devices have: Remote Desktop enabled, the listener on its usual port."""
    if registry.get(TERMINAL_SERVER_KEY, "fDenyTSConnections") is None:
        registry.set(TERMINAL_SERVER_KEY, "fDenyTSConnections", 0)
    if registry.get(LISTENER_KEY, "PortNumber") is None:
        registry.set(LISTENER_KEY, "PortNumber", DEFAULT_PORT)


# Reading the device as Windows does ---------------------------------------------------------------------------------
def _number(value: t.Any) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def rdp_enabled(device: t.Any) -> tuple[bool, str]:
    """fDenyTSConnections: the policy wins over the local setting; with neither, Windows denies connections."""
    for key, source in ((TERMINAL_SERVICES_POLICY_KEY, "policy"), (TERMINAL_SERVER_KEY, "local")):
        value = device.registry.get(key, "fDenyTSConnections")
        if value is not None:
            return _number(value) == 0, source
    return False, "default"


def rdp_port(device: t.Any) -> int:
    port = _number(device.registry.get(LISTENER_KEY, "PortNumber", DEFAULT_PORT))
    return port if port is not None and 0 < port < 65536 else DEFAULT_PORT


def shadow_policy(device: t.Any) -> int | None:
    value = device.registry.get(TERMINAL_SERVICES_POLICY_KEY, "Shadow")
    return None if value is None else _number(value)


def active_sessions(device: t.Any) -> list[dict[str, t.Any]]:
    """The active sessions with a user (WTSEnumerateSessions), the console's first."""
    found = []
    user = device.interactive_user
    if user is not None:
        found.append({"user": user.name, "session_id": user.session_id, "station": "Console", "console": True})
    for session in device.remote_desktop.sessions:
        if session.state == "Active":
            found.append({"user": session.user, "session_id": session.session_id, "station": session.station,
                          "console": False})
    return found


def netbios_domain(device: t.Any) -> str | None:
    domain = device.hardware.domain or ""
    if not domain or domain.upper() == "WORKGROUP":
        return None
    return domain.split(".")[0].upper()


# Accounts as LookupAccountName answers for them: the SID and what kind of principal it is (SID_NAME_USE). The lab
# keeps no directory: in the device's domain every name is a user, except the domain's built-in groups and the
# groups below; on the device itself its local accounts are users. Windows' well-known principals and BUILTIN
# aliases are on every device.
SID_TYPE_USER, SID_TYPE_GROUP, SID_TYPE_ALIAS, SID_TYPE_WELL_KNOWN_GROUP, SID_TYPE_COMPUTER = (
    "user", "group", "alias", "well_known_group", "computer")
WELL_KNOWN_PRINCIPALS = {
    "everyone": ("Everyone", "S-1-1-0", SID_TYPE_WELL_KNOWN_GROUP),
    "nt authority\\system": ("NT AUTHORITY\\SYSTEM", "S-1-5-18", SID_TYPE_WELL_KNOWN_GROUP),
    "nt authority\\local service": ("NT AUTHORITY\\LOCAL SERVICE", "S-1-5-19", SID_TYPE_WELL_KNOWN_GROUP),
    "nt authority\\network service": ("NT AUTHORITY\\NETWORK SERVICE", "S-1-5-20", SID_TYPE_WELL_KNOWN_GROUP),
    "nt authority\\authenticated users": ("NT AUTHORITY\\Authenticated Users", "S-1-5-11",
                                          SID_TYPE_WELL_KNOWN_GROUP),
    "nt authority\\interactive": ("NT AUTHORITY\\INTERACTIVE", "S-1-5-4", SID_TYPE_WELL_KNOWN_GROUP),
    "builtin\\administrators": ("BUILTIN\\Administrators", ADMINISTRATORS_SID, SID_TYPE_ALIAS),
    "builtin\\users": ("BUILTIN\\Users", "S-1-5-32-545", SID_TYPE_ALIAS),
    "builtin\\guests": ("BUILTIN\\Guests", "S-1-5-32-546", SID_TYPE_ALIAS),
    "builtin\\remote desktop users": ("BUILTIN\\Remote Desktop Users", "S-1-5-32-555", SID_TYPE_ALIAS),
}
# A domain's built-in accounts (relative ids below 1000) and groups.
DOMAIN_BUILT_IN = {
    "administrator": (500, SID_TYPE_USER), "guest": (501, SID_TYPE_USER), "krbtgt": (502, SID_TYPE_USER),
    "domain admins": (512, SID_TYPE_GROUP), "domain users": (513, SID_TYPE_GROUP),
    "domain guests": (514, SID_TYPE_GROUP), "domain computers": (515, SID_TYPE_GROUP),
    "schema admins": (518, SID_TYPE_GROUP), "enterprise admins": (519, SID_TYPE_GROUP),
}
# The lab domain's own groups (a service desk's usual ones): names that are groups, not people.
DOMAIN_GROUPS = frozenset({"helpdesk", "it support", "support specialists", "remote support operators"})
# A computer's built-in local accounts.
LOCAL_BUILT_IN = {"administrator": 500, "guest": 501, "defaultaccount": 503, "wdagutilityaccount": 504}


@dataclasses.dataclass(frozen=True)
class AccountLookup:
    """What LookupAccountName gives back: the canonical DOMAIN\\name, the SID and SID_NAME_USE."""

    name: str
    sid: str
    kind: str

    @property
    def relative_id(self) -> int:
        return int(self.sid.rsplit("-", 1)[1])


def _domain_sid(scope: str) -> str:
    digest = hashlib.sha256(scope.lower().encode("utf-8")).digest()
    parts = [int.from_bytes(digest[i:i + 4], "little") for i in (0, 4, 8)]
    return f"S-1-5-21-{parts[0]}-{parts[1]}-{parts[2]}"


def _relative_id(scope: str, name: str) -> int:
    # 1100 and up: where a domain's or a computer's own accounts start.
    return 1100 + hashlib.sha256(f"{scope}\\{name}".lower().encode("utf-8")).digest()[12]


def lookup_account(device: t.Any, account: str) -> AccountLookup | None:
    """LookupAccountName on the device: DOMAIN\\name, COMPUTER\\name (or .\\name) or a user principal name
    (name@dns.domain of the device's domain). None: 'No mapping between account names and security IDs was done.'"""
    if "\\" not in account and "@" in account:
        name, _, suffix = account.rpartition("@")
        if not name or suffix.lower() != (device.hardware.domain or "").lower() or netbios_domain(device) is None:
            return None
        account = f"{netbios_domain(device)}\\{name}"
    known = WELL_KNOWN_PRINCIPALS.get(account.lower())
    if known is not None:
        return AccountLookup(*known)
    domain, _, name = account.partition("\\")
    if not name or not domain:
        return None
    if domain.upper() in (device.name.upper(), "."):
        local = next((a for a in device.accounts if a.lower() == name.lower()), None)
        builtin = next((n for n in LOCAL_BUILT_IN if n == name.lower()), None)
        if builtin is not None:
            return AccountLookup(f"{device.name}\\{name}", f"{_domain_sid(device.name)}-{LOCAL_BUILT_IN[builtin]}",
                                 SID_TYPE_USER)
        if local is None:
            return None
        sid = f"{_domain_sid(device.name)}-{_relative_id(device.name, local)}"
        return AccountLookup(f"{device.name}\\{local}", sid, SID_TYPE_USER)
    netbios = netbios_domain(device)
    if netbios is None or domain.upper() != netbios:
        return None
    canonical = f"{netbios}\\{name}"
    built_in = DOMAIN_BUILT_IN.get(name.lower())
    if built_in is not None:
        return AccountLookup(canonical, f"{_domain_sid(netbios)}-{built_in[0]}", built_in[1])
    if name.lower() in DOMAIN_GROUPS:
        kind = SID_TYPE_GROUP
    elif name.endswith("$"):
        kind = SID_TYPE_COMPUTER
    else:
        kind = SID_TYPE_USER
    return AccountLookup(canonical, f"{_domain_sid(netbios)}-{_relative_id(netbios, name)}", kind)


def account_sid(device: t.Any, account: str) -> str | None:
    """NTAccount.Translate: the SID of any principal the device can name (a user or a group alike)."""
    found = lookup_account(device, account)
    return None if found is None else found.sid


def listener_entry(device: t.Any, sid: str) -> ListenerEntry | None:
    return next((entry for entry in device.remote_desktop.listener if entry.sid == sid), None)


def is_administrator(device: t.Any, account: str) -> bool:
    """The lab's local accounts (the WinRM accounts) are the device's administrators; domain users are not."""
    domain, _, name = account.partition("\\")
    return domain.upper() in (device.name.upper(), ".") and any(a.lower() == name.lower() for a in device.accounts)


# mstsc /shadow against the device -----------------------------------------------------------------------------------
def shadow(device: t.Any, account: str, session_id: int, control: bool, no_consent_prompt: bool) -> dict[str, t.Any]:
    """A specialist logged on as `account` runs `mstsc /v:device /shadow:session_id [/control] [/noConsentPrompt]`.
    Windows checks, in this order: the listener is reachable, the session is there, the account may shadow, the
    policy allows what is asked, and (unless the policy lets the connection skip it) the user's answer."""
    from .device import PromptShown

    def refused(reason: str, message: str, prompted: bool = False) -> dict[str, t.Any]:
        return {"connected": False, "reason": reason, "message": message, "prompted": prompted, "control": control}

    with device.lock:
        enabled, _source = rdp_enabled(device)
        if not enabled or not device.remote_desktop.shadow_firewall_rule_enabled:
            return refused("unreachable", "Remote Desktop can't connect to the remote computer.")
        target = next((s for s in active_sessions(device) if s["session_id"] == session_id), None)
        if target is None:
            return refused("no_session", f"Shadow Error: The session {session_id} is not active on the device.")
        sid = account_sid(device, account)
        entry = None if sid is None else listener_entry(device, sid)
        allowed = entry is not None and entry.allowed & WINSTATION_SHADOW and not entry.denied & WINSTATION_SHADOW
        if not allowed and not is_administrator(device, account):
            return refused("access_denied", "Shadow Error: Access is denied.")
        policy = shadow_policy(device)
        policy = DEFAULT_SHADOW if policy is None else policy
        if policy not in (1, 2, 3, 4):
            return refused("policy", "Shadow Error: Remote control of this session is not allowed by policy.")
        if control and policy in (SHADOW_VIEW_WITH_PERMISSION, SHADOW_VIEW):
            return refused("policy", "Shadow Error: The policy allows viewing this session only.")
        needs_permission = policy in (SHADOW_CONTROL_WITH_PERMISSION, SHADOW_VIEW_WITH_PERMISSION)
        if needs_permission and no_consent_prompt:
            return refused("consent_required", "Shadow Error: The Group Policy setting is configured to require the "
                                               "user's consent. Verify the configuration of the policy setting.")
        prompted = not no_consent_prompt
        if prompted:
            # The console user answers as their consent behaviour says; a Remote Desktop user accepts.
            user = device.interactive_user
            answer = user.consent if user is not None and user.name == target["user"] else "accept"
            now = device.clock.now()
            verb = "control" if control else "view"
            result = {"accept": "yes", "deny": "no", "ignore": "timed_out"}[answer]
            waited = CONSENT_PROMPT_SECONDS if answer == "ignore" else 0
            device.prompts.append(PromptShown(
                user=target["user"], title="Remote Control Request",
                text=f"{account} is requesting to {verb} your session remotely. Do you accept the request?",
                timeout_seconds=CONSENT_PROMPT_SECONDS, shown_at=now,
                closed_at=now + datetime.timedelta(seconds=waited), result=result))
            if answer == "deny":
                return refused("denied", "Shadow Error: The operator or administrator has refused the request.", True)
            if answer == "ignore":
                return refused("timed_out", "Shadow Error: The user did not answer the request in time.", True)
        device.remote_desktop.connections.append(ShadowConnection(account, session_id, control, prompted,
                                                                  device.clock.now()))
        return {"connected": True, "reason": None, "message": "", "prompted": prompted, "control": control}


def end_connections(device: t.Any, session_id: int) -> int:
    """Ends RdpSa.exe in `session_id`: every shadow connection to that session closes."""
    with device.lock:
        ending = [c for c in device.remote_desktop.connections if c.session_id == session_id]
        device.remote_desktop.connections = [c for c in device.remote_desktop.connections
                                             if c.session_id != session_id]
        return len(ending)


def state(device: t.Any) -> dict[str, t.Any]:
    """Remote Desktop as the control surface shows it."""
    with device.lock:
        enabled, source = rdp_enabled(device)
        return {
            "enabled": enabled,
            "enabled_source": source,
            "port": rdp_port(device),
            "shadow_policy": shadow_policy(device),
            "shadow_firewall_rule_enabled": device.remote_desktop.shadow_firewall_rule_enabled,
            "sessions": active_sessions(device),
            "remote_sessions": [dataclasses.asdict(s) for s in device.remote_desktop.sessions],
            "listener": [dataclasses.asdict(e) for e in device.remote_desktop.listener],
            "connections": [{**dataclasses.asdict(c), "connected_at": c.connected_at.astimezone(
                datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")} for c in device.remote_desktop.connections],
        }
