# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection settings for one device: the task options, the inventory variables they are read from, and the
checks that refuse unsafe or impossible combinations before anything is sent.

The first layer of the WinRM client (winrm_settings -> winrm_failures -> winrm_http -> winrm_envelopes ->
winrm_client -> winrm_streaming): plain Python, no network, no Ansible runtime. The action plugins call `resolve_settings`;
`WinRMClient` takes its result.
"""

from __future__ import annotations

import dataclasses
import typing as t

from ansible_collections.remote_support.windows.plugins.module_utils.errors import SettingsError

TRANSPORTS = ("ntlm", "basic", "kerberos", "credssp", "certificate")

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
    # A value given is checked as given (0 is refused below, not replaced by a default).
    connection_timeout = _given_int("connection_timeout", chosen, variable_map, DEFAULT_CONNECTION_TIMEOUT)
    operation_timeout = _given_int("operation_timeout", chosen, variable_map, DEFAULT_OPERATION_TIMEOUT)
    read_timeout = _given_int("read_timeout", chosen, variable_map, max(DEFAULT_READ_TIMEOUT, operation_timeout + 10))
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
        raise SettingsError(f"{_setting_name('port', variable_map)} is {port}, outside 1-65535")
    for name, value in (("connection_timeout", connection_timeout), ("operation_timeout", operation_timeout),
                        ("read_timeout", read_timeout)):
        if value <= 0:
            raise SettingsError(f"{_setting_name(name, variable_map)} is {value}; it must be a positive number of "
                                "seconds")
    if read_timeout <= operation_timeout:
        raise SettingsError(f"{_setting_name('read_timeout', variable_map)} ({read_timeout} s) must exceed "
                            f"{_setting_name('operation_timeout', variable_map)} ({operation_timeout} s): the device "
                            "may hold a Receive open for the whole operation timeout")
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


def _setting_name(name: str, variable_map: t.Mapping[str, tuple[str, ...]]) -> str:
    """A setting as the operator may have written it: the task option and its first inventory variable."""
    return f"{name} ({variable_map[name][0]})"


def _given_int(name: str, chosen: t.Mapping[str, t.Any], variable_map: t.Mapping[str, tuple[str, ...]],
               default: int) -> int:
    value = _as_int(_setting_name(name, variable_map), chosen[name])
    return default if value is None else value


def _as_int(name: str, value: t.Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{name} must be a whole number, not {value!r}") from None
