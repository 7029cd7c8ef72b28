"""Deterministic fleets: which devices the lab starts, what they are, and what each one is meant to show.

A device's identity (name, vendor, model, serial number, operating system, logged-on user) depends only on the seed
and its position in the fleet, so `--devices 20` and `--devices 1000` with one seed share their first 20 machines and
`healthy` and `mixed` differ only in what goes wrong. What goes wrong is a *behaviour*: a fault, a stopped agent, a
user who says no. Each behaviour states what the collection's `device_info` must report for the device (`expected`:
status and reason), so tests and the demo can check the collection against it.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import pathlib
import random
import secrets
import string
import typing as t

from . import drives
from .clock import DeviceClock
from .device import Agent, Device, Hardware, InteractiveUser

SCENARIOS = ("healthy", "mixed")
LAB_USER = "labadmin"
LAB_DOMAIN = "contoso.com"  # Microsoft's own example domain; NetBIOS name CONTOSO
LAB_NETBIOS_DOMAIN = "CONTOSO"
DEFAULT_BASE_ADDRESS = "127.20.0.1"
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


# What the machines are -------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class OperatingSystem:
    caption: str  # Win32_OperatingSystem.Caption
    version: str  # Win32_OperatingSystem.Version
    product_type: int  # 1 workstation, 3 server
    registry_product_name: str  # HKLM\...\CurrentVersion ProductName (Windows 11 still says "Windows 10")
    display_version: str  # HKLM\...\CurrentVersion DisplayVersion


WORKSTATION_SYSTEMS = (
    OperatingSystem("Microsoft Windows 10 Pro", "10.0.19045", 1, "Windows 10 Pro", "22H2"),
    OperatingSystem("Microsoft Windows 10 Enterprise", "10.0.19045", 1, "Windows 10 Enterprise", "22H2"),
    OperatingSystem("Microsoft Windows 11 Pro", "10.0.22631", 1, "Windows 10 Pro", "23H2"),
    OperatingSystem("Microsoft Windows 11 Enterprise", "10.0.22631", 1, "Windows 10 Enterprise", "23H2"),
    OperatingSystem("Microsoft Windows 11 Enterprise", "10.0.26100", 1, "Windows 10 Enterprise", "24H2"),
)
SERVER_SYSTEMS = (
    OperatingSystem("Microsoft Windows Server 2019 Standard", "10.0.17763", 3, "Windows Server 2019 Standard", ""),
    OperatingSystem("Microsoft Windows Server 2019 Datacenter", "10.0.17763", 3, "Windows Server 2019 Datacenter",
                    ""),
    OperatingSystem("Microsoft Windows Server 2022 Standard", "10.0.20348", 3, "Windows Server 2022 Standard",
                    "21H2"),
    OperatingSystem("Microsoft Windows Server 2022 Datacenter", "10.0.20348", 3, "Windows Server 2022 Datacenter",
                    "21H2"),
)


@dataclasses.dataclass(frozen=True)
class Model:
    manufacturer: str  # Win32_ComputerSystem.Manufacturer
    model: str  # Win32_ComputerSystem.Model (Lenovo reports its machine type, as Windows shows it)
    chassis_types: tuple[int, ...]  # Win32_SystemEnclosure.ChassisTypes
    serial_style: str  # how this vendor's BIOS serial numbers look


MODELS: dict[str, tuple[Model, ...]] = {
    "desktop": (
        Model("Dell Inc.", "OptiPlex 7090", (3,), "dell"),
        Model("Dell Inc.", "OptiPlex 7010", (35,), "dell"),
        Model("HP", "HP EliteDesk 800 G6 Desktop Mini PC", (35,), "hp"),
        Model("HP", "HP ProDesk 400 G7 Microtower PC", (3,), "hp"),
        Model("LENOVO", "11DT003QUS", (35,), "lenovo"),  # ThinkCentre M70q Gen 2
        Model("LENOVO", "12E3000AUS", (3,), "lenovo"),  # ThinkCentre M70s Gen 3
    ),
    "laptop": (
        Model("Dell Inc.", "Latitude 5420", (10,), "dell"),
        Model("Dell Inc.", "Latitude 7440", (10,), "dell"),
        Model("HP", "HP EliteBook 840 G8 Notebook PC", (10,), "hp"),
        Model("LENOVO", "20W0003AUS", (10,), "lenovo"),  # ThinkPad T14 Gen 2
        Model("LENOVO", "20XW0026US", (10,), "lenovo"),  # ThinkPad X1 Carbon Gen 9
        Model("Microsoft Corporation", "Surface Laptop 4", (9,), "surface"),
    ),
    "server": (
        Model("Dell Inc.", "PowerEdge R740", (23,), "dell"),
        Model("Dell Inc.", "PowerEdge R650", (23,), "dell"),
        Model("HPE", "ProLiant DL380 Gen10", (23,), "hpe"),
        Model("VMware, Inc.", "VMware7,1", (1,), "vmware"),
        Model("Microsoft Corporation", "Virtual Machine", (3,), "hyperv"),
    ),
}

FIRST_NAMES = ("ana", "bruno", "carla", "diego", "elena", "felipe", "grace", "hugo", "ines", "joao", "karin", "luis",
               "marta", "nuno", "olga", "pedro", "rita", "sofia", "tiago", "vera")
LAST_NAMES = ("almeida", "barros", "costa", "dias", "esteves", "ferreira", "gomes", "lopes", "martins", "nunes",
              "oliveira", "pereira", "ramos", "santos", "teixeira", "vieira")

_UPPER_DIGITS = string.ascii_uppercase + string.digits


def serial_number(style: str, rng: random.Random) -> str:
    """A BIOS serial number (Win32_BIOS.SerialNumber) shaped like the vendor's own."""
    def pick(alphabet: str, count: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(count))

    if style == "dell":  # service tag: 7 characters
        return pick("BCDFGHJKLMNPQRSTVWXYZ0123456789", 7)
    if style == "hp":  # e.g. 5CG1234ABC, MXL0123XYZ, CZC...: 3-letter site code, 4 digits, 3 characters
        return rng.choice(("5CG", "MXL", "CZC", "8CG")) + pick(string.digits, 4) + pick(_UPPER_DIGITS, 3)
    if style == "hpe":  # ProLiant: CZJ + 7
        return rng.choice(("CZJ", "MXQ")) + pick(string.digits, 4) + pick(_UPPER_DIGITS, 3)
    if style == "lenovo":  # 8 characters, e.g. PF2XXXXX
        return rng.choice(("PF", "R9", "MJ", "S1")) + pick(_UPPER_DIGITS, 6)
    if style == "surface":  # 12 digits
        return pick(string.digits, 12)
    if style == "vmware":  # VMware-42 1a 5b ... from the VM's UUID
        octets = [f"{rng.randrange(256):02x}" for _ in range(16)]
        return "VMware-" + " ".join(octets[:8]) + "-" + " ".join(octets[8:])
    if style == "hyperv":  # 0000-0012-3456-7890-1234-5678-90
        digits = pick(string.digits, 26)
        return "-".join((digits[:4], digits[4:8], digits[8:12], digits[12:16], digits[16:20], digits[20:24],
                         digits[24:]))
    raise ValueError(f"unknown serial style {style}")


def computer_name(device_type: str, rng: random.Random) -> str:
    """The name Windows setup gives a machine: DESKTOP-XXXXXXX, LAPTOP-XXXXXXXX, WIN-XXXXXXXXXXX (15 characters)."""
    prefix, length = {"desktop": ("DESKTOP-", 7), "laptop": ("LAPTOP-", 8), "server": ("WIN-", 11)}[device_type]
    return prefix + "".join(rng.choice(_UPPER_DIGITS) for _ in range(length))


@dataclasses.dataclass
class Identity:
    name: str
    device_type: str
    hardware: Hardware
    os: OperatingSystem
    user_name: str  # CONTOSO\first.last
    consent_delay_seconds: float
    clock_skew_seconds: float
    https: bool  # which endpoint the inventory uses (both listen)


def identity(seed: int | str, index: int) -> Identity:
    """The machine at position `index` of the fleet for `seed`, independent of the fleet's size and scenario."""
    rng = random.Random(f"winrm-lab/{seed}/{index}")
    device_type = rng.choices(("desktop", "laptop", "server"), weights=(50, 35, 15))[0]
    model = rng.choice(MODELS[device_type])
    system = rng.choice(SERVER_SYSTEMS if device_type == "server" else WORKSTATION_SYSTEMS)
    hardware = Hardware(
        manufacturer=model.manufacturer, model=model.model, serial_number=serial_number(model.serial_style, rng),
        chassis_types=list(model.chassis_types), os_caption=system.caption, os_version=system.version,
        os_product_type=system.product_type, domain=LAB_DOMAIN,
    )
    user = f"{LAB_NETBIOS_DOMAIN}\\{rng.choice(FIRST_NAMES)}.{rng.choice(LAST_NAMES)}"
    return Identity(
        name=computer_name(device_type, rng), device_type=device_type, hardware=hardware, os=system, user_name=user,
        consent_delay_seconds=float(rng.randint(1, 4)),
        # Real clocks drift a little from the controller's; the collection must judge activity by the device's own.
        clock_skew_seconds=float(rng.randint(-2, 2)),
        https=rng.random() < 0.75,
    )


# What goes wrong ---------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Behaviour:
    name: str
    description: str
    status: str  # what device_info must report: active | idle | unreachable
    reason: str | None  # connection reason: None | dns | refused | timeout | tls | auth | protocol | quota | script
    apply: t.Callable[[Device, "DeviceSetup"], None] = lambda device, setup: None
    scheme: str | None = None  # forces the inventory's endpoint; None: the device's own (mostly HTTPS)


@dataclasses.dataclass
class DeviceSetup:
    """What the inventory says about a device, which a behaviour may change (wrong password, unknown name)."""

    scheme: str
    username: str
    password: str
    inventory_host: str


def _stop_agent(ago: datetime.timedelta) -> t.Callable[[Device, DeviceSetup], None]:
    def apply(device: Device, setup: DeviceSetup) -> None:
        device.agent.running = False
        # The heartbeat checks in on whole minutes.
        last = device.clock.now() - ago
        device.agent.stopped_last_checkin = last.replace(second=0, microsecond=0)
    return apply


def _never_checked_in(device: Device, setup: DeviceSetup) -> None:
    device.agent.running = False
    device.agent.stopped_last_checkin = None


def _refuse(device: Device, setup: DeviceSetup) -> None:
    device.faults.refuse_connections = True


def _unknown_host(device: Device, setup: DeviceSetup) -> None:
    # RFC 2606 reserves .invalid: it never resolves, the way a stale DNS record or a typo in the inventory fails.
    setup.inventory_host = f"{device.name.lower()}.invalid"
    device.inventory_host = setup.inventory_host


def _wrong_password(device: Device, setup: DeviceSetup) -> None:
    setup.password = _password()  # the inventory holds an old password; the device accepts only the current one


def _certificate(kind: str) -> t.Callable[[Device, DeviceSetup], None]:
    def apply(device: Device, setup: DeviceSetup) -> None:
        device.faults.certificate = kind
    return apply


def _blackhole(device: Device, setup: DeviceSetup) -> None:
    device.faults.blackhole = True


def _http_500(device: Device, setup: DeviceSetup) -> None:
    device.faults.http_500 = True


def _quota_exhausted(device: Device, setup: DeviceSetup) -> None:
    # An administrator turned MaxShellsPerUser down to nothing: every new shell for the account hits the quota.
    device.service.max_shells_per_user = 0


def _wmi_broken(device: Device, setup: DeviceSetup) -> None:
    # What Get-CimInstance reports when a WMI provider cannot load (a damaged repository); Windows ends the text
    # with a space.
    device.wmi_error = "Provider load failure "


def _slow(device: Device, setup: DeviceSetup) -> None:
    # Per response, so a facts probe (some seven HTTP exchanges) takes several seconds, yet every single exchange,
    # even a Receive held for the whole operation timeout, stays inside the inventory's read timeout.
    device.faults.latency_seconds = SLOW_LATENCY_SECONDS


def _drops(device: Device, setup: DeviceSetup) -> None:
    # Far more than a facts probe sends, far less than a file transfer: the connection is lost mid-transfer.
    device.faults.drop_after_bytes = DROP_AFTER_BYTES


def _clock_behind(device: Device, setup: DeviceSetup) -> None:
    # A controller that judged the check-in by its own clock would call this device idle; by the device's clock,
    # the one that counts, it checked in within the last minute.
    device.clock = DeviceClock(-CLOCK_BEHIND_SECONDS)


def _consent(answer: str, after: float | None = None) -> t.Callable[[Device, DeviceSetup], None]:
    def apply(device: Device, setup: DeviceSetup) -> None:
        assert device.interactive_user is not None
        device.interactive_user.consent = answer
        if after is not None:
            device.interactive_user.answer_after_seconds = after
    return apply


def _no_user(device: Device, setup: DeviceSetup) -> None:
    device.interactive_user = None


SLOW_LATENCY_SECONDS = 1.5
DROP_AFTER_BYTES = 512 * 1024
CLOCK_BEHIND_SECONDS = 2 * 3600

ACTIVE = Behaviour("active", "agent checking in, reachable over HTTPS, the logged-on user accepts consent prompts",
                   "active", None)
HTTP_NTLM = Behaviour("http_ntlm_encryption", "reached over HTTP (5985) with NTLM message encryption", "active", None,
                      scheme="http")

# The mixed scenario, most important first: its first 20 devices show every status and every reason.
MIXED: tuple[Behaviour, ...] = (
    ACTIVE,
    Behaviour("agent_idle", "the agent stopped checking in three days ago", "idle", None,
              _stop_agent(datetime.timedelta(days=3))),
    Behaviour("agent_never_checked_in", "the agent has never checked in", "idle", None, _never_checked_in),
    Behaviour("port_closed", "nothing listens on the WinRM ports: connection refused", "unreachable", "refused",
              _refuse),
    Behaviour("unknown_host", "the inventory names a host that does not resolve (<name>.invalid)", "unreachable",
              "dns", _unknown_host),
    Behaviour("wrong_credentials", "the inventory holds a password the device does not accept: HTTP 401",
              "unreachable", "auth", _wrong_password),
    Behaviour("certificate_mismatch", "the HTTPS certificate names another host", "unreachable", "tls",
              _certificate("mismatch"), scheme="https"),
    Behaviour("blackhole", "connections are accepted and never answered", "unreachable", "timeout", _blackhole),
    Behaviour("http_500", "the WinRM service answers every request with HTTP 500", "unreachable", "protocol",
              _http_500),
    Behaviour("shell_quota_exhausted", "MaxShellsPerUser is used up: opening a shell fails with the quota fault",
              "unreachable", "quota", _quota_exhausted),
    Behaviour("wmi_broken", "WMI is damaged: the facts script fails with Get-CimInstance's error", "unreachable",
              "script", _wmi_broken),
    Behaviour("slow_responses", f"every HTTP response is delayed {SLOW_LATENCY_SECONDS} s", "active", None, _slow),
    Behaviour("drops_mid_transfer", f"the connection is dropped once after {DROP_AFTER_BYTES} bytes of requests",
              "active", None, _drops),
    Behaviour("user_denies", "the logged-on user denies consent prompts", "active", None, _consent("deny", 2.0)),
    Behaviour("user_never_answers", "the logged-on user never answers consent prompts", "active", None,
              _consent("ignore")),
    Behaviour("no_user_logged_on", "nobody is logged on at the console", "active", None, _no_user),
    HTTP_NTLM,
    Behaviour("certificate_untrusted", "the HTTPS certificate was not issued by the lab CA", "unreachable", "tls",
              _certificate("untrusted"), scheme="https"),
    Behaviour("user_accepts_slowly", "the logged-on user accepts consent prompts after 30 s", "active", None,
              _consent("accept", 30.0)),
    Behaviour("clock_behind", f"the device's clock is {CLOCK_BEHIND_SECONDS // 3600} hours behind the controller's; "
                              "its agent is checking in by that clock", "active", None, _clock_behind),
)

BEHAVIOURS: dict[str, Behaviour] = {behaviour.name: behaviour for behaviour in MIXED}


def scenario_behaviour(scenario: str, index: int) -> Behaviour:
    if scenario == "healthy":
        return ACTIVE
    if scenario == "mixed":
        # Past the list, it starts again: a larger fleet has proportionally more of each.
        return MIXED[index % len(MIXED)]
    raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")


# The fleet -------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Connection:
    """How the inventory reaches a device."""

    host: str
    scheme: str
    port: int
    username: str
    password: str

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}/wsman"


@dataclasses.dataclass
class Fleet:
    scenario: str
    seed: int | str
    devices: list[Device]
    # The account every device accepts (user -> password). Each device holds its own copy in Device.accounts,
    # which the lab's Basic and NTLM authentication check, so one device's password can change alone.
    accounts: dict[str, str]
    connections: dict[str, Connection]  # device name -> how the inventory reaches it
    work_dir: pathlib.Path

    def device(self, name: str) -> Device:
        for device in self.devices:
            if device.name.lower() == name.lower():
                return device
        raise KeyError(name)


def _password() -> str:
    # Not derived from the seed: a fleet is reproducible, its secrets are not. Meets Windows' complexity rules.
    return "Lab1-" + secrets.token_urlsafe(15)


def device_addresses(base_address: str, count: int) -> list[str]:
    """`count` loopback addresses from `base_address` up, skipping host parts .0 and .255."""
    try:
        address = ipaddress.ip_address(base_address)
    except ValueError:
        raise ValueError(f"--base-address {base_address!r} is not an IPv4 address") from None
    if address not in LOOPBACK:
        raise ValueError(f"--base-address {base_address} is not a loopback address (127.0.0.0/8): the lab listens on "
                         "loopback only")
    addresses: list[str] = []
    while len(addresses) < count:
        if address not in LOOPBACK:
            raise ValueError(f"{count} devices do not fit in 127.0.0.0/8 from {base_address}")
        if int(address) & 0xFF not in (0, 255):
            addresses.append(str(address))
        address += 1
    return addresses


def build_fleet(count: int, scenario: str = "healthy", seed: int | str = 0,
                base_address: str = DEFAULT_BASE_ADDRESS, http_port: int = 5985, https_port: int = 5986,
                work_dir: pathlib.Path | str = ".lab") -> Fleet:
    """`count` devices for `scenario`, the same for the same seed, each on its own loopback address."""
    if count < 1:
        raise ValueError("a fleet needs at least one device")
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    work_dir = pathlib.Path(work_dir)
    accounts = {LAB_USER: _password()}
    devices: list[Device] = []
    connections: dict[str, Connection] = {}
    names: set[str] = set()
    for index, address in enumerate(device_addresses(base_address, count)):
        ident = identity(seed, index)
        retry = 0
        while ident.name in names:  # 36^7 names make this rare, but names must be unique
            retry += 1
            ident.name = computer_name(ident.device_type, random.Random(f"winrm-lab/{seed}/{index}/{retry}"))
        names.add(ident.name)
        device = _device(ident, address, http_port, https_port, accounts, work_dir)
        behaviour = scenario_behaviour(scenario, index)
        scheme = behaviour.scheme or ("https" if ident.https else "http")
        setup = DeviceSetup(scheme=scheme, username=LAB_USER, password=accounts[LAB_USER], inventory_host=address)
        behaviour.apply(device, setup)
        device.sync_agent_registry()  # the behaviour may have stopped the agent or replaced the clock
        device.behaviours = [behaviour.name]
        if scheme == "http" and behaviour is not HTTP_NTLM:
            device.behaviours.append(HTTP_NTLM.name)
        device.expected = {"status": behaviour.status, "reason": behaviour.reason}
        connections[device.name] = Connection(setup.inventory_host, scheme,
                                              http_port if scheme == "http" else https_port,
                                              setup.username, setup.password)
        devices.append(device)
    return Fleet(scenario, seed, devices, accounts, connections, work_dir)


def _device(ident: Identity, address: str, http_port: int, https_port: int, accounts: dict[str, str],
            work_dir: pathlib.Path) -> Device:
    device = Device(
        name=ident.name, address=address, http_port=http_port, https_port=https_port, hardware=ident.hardware,
        accounts=dict(accounts),
        interactive_user=InteractiveUser(ident.user_name, session_id=1, consent="accept",
                                         answer_after_seconds=ident.consent_delay_seconds),
        agent=Agent(running=True, interval_seconds=60),
        clock=DeviceClock(ident.clock_skew_seconds),
        file_root=work_dir / "devices" / ident.name,
    )
    registry_key = r"HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion"
    device.registry.set(registry_key, "ProductName", ident.os.registry_product_name)
    device.registry.set(registry_key, "CurrentBuildNumber", ident.os.version.rsplit(".", 1)[-1])
    if ident.os.display_version:
        device.registry.set(registry_key, "DisplayVersion", ident.os.display_version)
    device.registry.set(r"HKLM:\SYSTEM\CurrentControlSet\Control\ComputerName\ComputerName", "ComputerName",
                        ident.name)
    device.sync_agent_registry()
    device.write_event("Microsoft-Windows-WinRM", 10148, "Information",
                       "The WinRM service is listening for WS-Management requests.", log="System")
    return device


def prepare_file_systems(fleet: Fleet) -> None:
    """Creates each device's drive C: with the folders and junctions every Windows has and the logged-on user's
    profile."""
    for device in fleet.devices:
        assert device.file_root is not None
        profiles = [] if device.interactive_user is None else [device.interactive_user.name.split("\\")[-1]]
        drives.prepare_drive_c(device.file_root, profiles)
