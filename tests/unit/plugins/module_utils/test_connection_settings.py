# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where connection settings come from (task, play, inventory; winrm and psrp names), what plain HTTP refuses, the
transport list tried in order, Kerberos tickets got with kinit, and how Kerberos failures are named."""

from __future__ import annotations

import os
import pathlib
import re
import stat

import pytest
import yaml

from ansible_collections.remote_support.windows.plugins.module_utils import device_script
from ansible_collections.remote_support.windows.plugins.module_utils.errors import DeviceError, SettingsError
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_client import WinRMClient
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_failures import classify
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_settings import (
    PSRP_HOST_VARIABLES,
    WINRM_ARGUMENT_SPEC,
    WINRM_HOST_VARIABLES,
    resolve_settings,
)

COLLECTION = pathlib.Path(__file__).resolve().parents[4]
SECRET = "Kerb-S3cret!"


# --- one precedence for user and password ----------------------------------------------------------------------

def test_play_connection_supplies_user_and_password_when_the_inventory_has_none():
    s = resolve_settings({}, {"ansible_host": "10.0.0.5"}, "desk-1", {"user": "awx-user", "password": SECRET})
    assert (s.user, s.password) == ("awx-user", SECRET)


def test_task_option_beats_the_play_which_beats_the_winrm_aliases():
    host_vars = {"ansible_winrm_user": "alias-user", "ansible_winrm_password": "alias-pw"}
    play = {"user": "play-user", "password": "play-pw"}
    assert resolve_settings({}, host_vars, "h", play).user == "play-user"
    assert resolve_settings({}, host_vars, "h", play).password == "play-pw"
    assert resolve_settings({"user": "task-user", "password": "task-pw"}, host_vars, "h", play).password == "task-pw"
    assert resolve_settings({}, host_vars, "h", {"user": None, "password": ""}).user == "alias-user"
    assert resolve_settings({}, host_vars, "h", {"user": None, "password": ""}).password == "alias-pw"


def test_no_user_anywhere_names_every_place_to_set_one():
    with pytest.raises(SettingsError, match="-u"):
        resolve_settings({}, {}, "h", {"user": None, "password": None})


# --- psrp inventories ------------------------------------------------------------------------------------------

def test_psrp_variables_are_read_with_the_same_meaning():
    host_vars = {
        "ansible_connection": "psrp", "ansible_host": "10.0.0.9", "ansible_user": "u", "ansible_password": "p",
        "ansible_psrp_protocol": "https", "ansible_psrp_port": 15986, "ansible_psrp_path": "wsman-x",
        "ansible_psrp_auth": "ntlm", "ansible_psrp_cert_validation": "validate", "ansible_psrp_ca_cert": "/ca.pem",
        "ansible_psrp_proxy": "http://proxy:3128", "ansible_psrp_ignore_proxy": "no",
        "ansible_psrp_connection_timeout": 7, "ansible_psrp_operation_timeout": 11, "ansible_psrp_read_timeout": 21,
        "ansible_psrp_negotiate_hostname_override": "desk.corp", "ansible_psrp_negotiate_delegate": True,
        "ansible_psrp_negotiate_send_cbt": False, "ansible_psrp_message_encryption": "always",
        # winrm names do not apply to a psrp host
        "ansible_winrm_scheme": "http", "ansible_winrm_transport": "basic",
    }
    s = resolve_settings({}, host_vars, "desk")
    assert s.endpoint == "https://10.0.0.9:15986/wsman-x"
    assert s.transports == ("ntlm",)
    assert (s.ca_trust_path, s.proxy, s.ignore_proxy) == ("/ca.pem", "http://proxy:3128", False)
    assert (s.connection_timeout, s.operation_timeout, s.read_timeout) == (7, 11, 21)
    assert (s.kerberos_hostname_override, s.kerberos_delegation, s.send_cbt) == ("desk.corp", True, False)
    assert s.message_encryption == "always"


def test_psrp_negotiate_is_kerberos_then_ntlm_and_ignore_validation_is_honoured():
    s = resolve_settings({}, {"ansible_connection": "ansible.builtin.psrp", "ansible_user": "u",
                              "ansible_psrp_cert_validation": "ignore"}, "h")
    assert s.transports == ("kerberos", "ntlm")
    assert s.server_cert_validation == "ignore"


def test_winrm_extras_are_read():
    s = resolve_settings({}, {"ansible_user": "u", "ansible_winrm_path": "/custom", "ansible_winrm_proxy": "http://p:1",
                              "ansible_winrm_send_cbt": "false", "ansible_winrm_transport": "kerberos, ntlm",
                              "ansible_winrm_kerberos_delegation": "yes", "ansible_winrm_kinit_mode": "manual",
                              "ansible_winrm_kinit_cmd": "/opt/kinit", "ansible_winrm_kinit_args": "-f"}, "h")
    assert s.endpoint == "https://h:5986/custom"
    assert (s.proxy, s.send_cbt, s.transports, s.kerberos_delegation) == ("http://p:1", False, ("kerberos", "ntlm"),
                                                                          True)
    assert (s.kinit_mode, s.kinit_cmd, s.kinit_args) == ("manual", "/opt/kinit", "-f")


def test_the_documented_table_maps_every_setting_to_its_variables():
    assert set(WINRM_ARGUMENT_SPEC) == set(WINRM_HOST_VARIABLES) == set(PSRP_HOST_VARIABLES)
    table = (COLLECTION / "docs" / "connection-settings.md").read_text(encoding="utf-8")
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = (re.findall(r"`([a-z_0-9]+)`", cells[1]), re.findall(r"`([a-z_0-9]+)`", cells[2]))
    assert set(rows) == set(WINRM_ARGUMENT_SPEC)
    for name in WINRM_ARGUMENT_SPEC:
        assert tuple(rows[name][0]) == WINRM_HOST_VARIABLES[name], name
        assert tuple(rows[name][1]) == PSRP_HOST_VARIABLES[name], name
    fragment = (COLLECTION / "plugins" / "doc_fragments" / "winrm.py").read_text(encoding="utf-8")
    documented = yaml.safe_load(fragment.split('DOCUMENTATION = r"""', 1)[1].split('"""', 1)[0])["options"]
    assert set(documented) == set(WINRM_ARGUMENT_SPEC)
    for name, spec in WINRM_ARGUMENT_SPEC.items():
        assert documented[name]["type"] == spec["type"], name


def test_every_module_is_in_the_action_group():
    runtime = yaml.safe_load((COLLECTION / "meta" / "runtime.yml").read_text(encoding="utf-8"))
    # fleet takes the connection options inside its `options`, for the per-device action it runs: a group default
    # would reach it as an option it does not have.
    modules = sorted(p.stem for p in (COLLECTION / "plugins" / "modules").glob("*.py")
                     if p.stem not in ("__init__", "fleet"))
    assert sorted(runtime["action_groups"]["remote_support"]) == modules


# --- plain HTTP only with message encryption -------------------------------------------------------------------

@pytest.mark.parametrize("options, message", [
    ({"transport": ["basic"]}, "password in clear text"),
    ({"transport": ["ntlm", "basic"]}, "password in clear text"),
    ({"message_encryption": "never"}, "every command and its output in clear text"),
    ({"transport": ["certificate"], "cert_pem": "/c", "cert_key_pem": "/k"}, "needs HTTPS"),
])
def test_plain_http_without_encryption_is_refused_before_anything_is_sent(options, message):
    with pytest.raises(SettingsError, match=message) as info:
        resolve_settings({"scheme": "http", **options}, {"ansible_user": "u"}, "h")
    assert "use scheme https" in str(info.value)


def test_never_over_https_and_encryption_over_http_are_fine():
    assert resolve_settings({"message_encryption": "never"}, {"ansible_user": "u"}, "h").scheme == "https"
    assert resolve_settings({"scheme": "http"}, {"ansible_user": "u"}, "h").message_encryption == "auto"


def test_certificate_needs_both_files_but_no_user():
    with pytest.raises(SettingsError, match="cert_key_pem"):
        resolve_settings({"transport": ["certificate"], "cert_pem": "/c"}, {}, "h")
    s = resolve_settings({"transport": ["certificate"], "cert_pem": "/c", "cert_key_pem": "/k"}, {}, "h")
    assert (s.user, s.cert_pem, s.cert_key_pem) == ("", "/c", "/k")


# --- the transport list ----------------------------------------------------------------------------------------

class Rejecting(Exception):
    pass


def fake_factory(outcomes, made):
    """A protocol factory whose open_shell fails with outcomes[transport] (an exception) or succeeds."""
    import winrm.exceptions

    class Protocol:
        def __init__(self, **kwargs):
            self.kwargs = kwargs
            self.transport = None
            made.append(self)

        def open_shell(self, **_kw):
            outcome = outcomes[self.kwargs["transport"]]
            if outcome == "reject":
                raise winrm.exceptions.InvalidCredentialsError("the specified credentials were rejected by the server")
            if outcome == "refused":
                raise ConnectionRefusedError(111, "refused")
            return "shell"

        def close_shell(self, _shell):
            pass

    return Protocol


def test_transports_are_tried_in_order_until_one_authenticates_and_that_one_is_kept():
    made = []
    settings = resolve_settings({"transport": ["credssp", "ntlm"]}, {"ansible_user": "u", "ansible_password": "p"}, "h")
    client = WinRMClient(settings, protocol_factory=fake_factory({"credssp": "reject", "ntlm": "ok"}, made))
    with client.shell():
        pass
    with client.shell():
        pass
    assert [p.kwargs["transport"] for p in made] == ["credssp", "ntlm", "ntlm"]


def test_a_failure_other_than_authentication_stops_the_list():
    made = []
    settings = resolve_settings({"transport": ["ntlm", "credssp"]}, {"ansible_user": "u"}, "h")
    client = WinRMClient(settings, protocol_factory=fake_factory({"ntlm": "refused", "credssp": "ok"}, made))
    with pytest.raises(DeviceError) as info:
        client.run_script(device_script.load("get_device_facts"))
    assert info.value.reason == "refused" and len(made) == 1


def test_when_every_transport_fails_the_error_names_them_all():
    made = []
    settings = resolve_settings({"transport": ["credssp", "ntlm"]}, {"ansible_user": "u"}, "h")
    client = WinRMClient(settings, protocol_factory=fake_factory({"credssp": "reject", "ntlm": "reject"}, made))
    with pytest.raises(DeviceError) as info:
        client.run_script(device_script.load("get_device_facts"))
    assert info.value.reason == "auth" and "Tried in order: credssp, ntlm" in info.value.message


def test_new_settings_reach_pywinrm():
    made = []
    settings = resolve_settings({"proxy": "http://proxy:3128", "send_cbt": False, "kerberos_delegation": True,
                                 "kerberos_hostname_override": "desk.corp", "path": "wsman2"},
                                {"ansible_user": "u"}, "h")
    client = WinRMClient(settings, protocol_factory=fake_factory({"ntlm": "ok"}, made))
    with client.shell():
        pass
    kwargs = made[0].kwargs
    assert kwargs["endpoint"] == "https://h:5986/wsman2"
    assert (kwargs["proxy"], kwargs["send_cbt"], kwargs["kerberos_delegation"]) == ("http://proxy:3128", False, True)
    assert kwargs["kerberos_hostname_override"] == "desk.corp"
    ignoring = resolve_settings({"ignore_proxy": True}, {"ansible_user": "u"}, "h")
    made.clear()
    with WinRMClient(ignoring, protocol_factory=fake_factory({"ntlm": "ok"}, made)).shell():
        pass
    assert made[0].kwargs["proxy"] is None


# --- Kerberos: a managed ticket from the password, failures named ----------------------------------------------

def fake_kinit(tmp_path, behaviour):
    """A kinit stand-in recording what it was given: arguments, the cache it was told to use, stdin."""
    script = tmp_path / "kinit"
    log = tmp_path / "kinit.log"
    script.write_text(f"""#!/bin/sh
printf '%s\\n' "$*" > {log}
printf '%s\\n' "$KRB5CCNAME" >> {log}
read -r password
{behaviour}
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script, log


def kerberos_settings(kinit_cmd, **options):
    return resolve_settings({"transport": ["kerberos"], "kinit_cmd": str(kinit_cmd), **options},
                            {"ansible_user": "support@LAB.TEST", "ansible_password": SECRET}, "desk")


def test_managed_kinit_gets_a_ticket_from_the_password_into_a_private_cache(tmp_path):
    kinit, log = fake_kinit(tmp_path, 'test "$password" = "' + SECRET + '" && : > "${KRB5CCNAME#FILE:}"')
    seen = {}
    made = []
    factory = fake_factory({"kerberos": "ok"}, made)

    def recording(**kwargs):
        seen["KRB5CCNAME"] = os.environ.get("KRB5CCNAME")
        return factory(**kwargs)

    before = os.environ.get("KRB5CCNAME")
    client = WinRMClient(kerberos_settings(kinit, kinit_args="-f"), protocol_factory=recording)
    with client.shell():
        pass
    arguments, cache = log.read_text().splitlines()
    assert arguments == "-f support@LAB.TEST"  # the password is never on the command line
    assert SECRET not in log.read_text()
    assert seen["KRB5CCNAME"] == cache and cache.startswith("FILE:")
    directory = pathlib.Path(cache[5:]).parent
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert os.environ.get("KRB5CCNAME") == before  # restored once the handshake is over
    del client
    import gc
    gc.collect()
    assert not directory.exists()


def test_without_a_password_or_in_manual_mode_no_kinit_runs(tmp_path):
    kinit, log = fake_kinit(tmp_path, "exit 0")
    made = []
    client = WinRMClient(kerberos_settings(kinit, kinit_mode="manual"),
                         protocol_factory=fake_factory({"kerberos": "ok"}, made))
    with client.shell():
        pass
    assert not log.exists() and len(made) == 1


@pytest.mark.parametrize("said, expected", [
    ("kinit: Password incorrect while getting initial credentials", "refused the password"),
    ("kinit: Client 'nobody@LAB.TEST' not found in Kerberos database while getting initial credentials",
     "does not know the user"),
    ("kinit: Cannot contact any KDC for realm 'LAB.TEST' while getting initial credentials", "no KDC could be reached"),
])
def test_a_failed_kinit_is_auth_and_says_what_to_check(tmp_path, said, expected):
    kinit, _log = fake_kinit(tmp_path, f"echo \"{said}\" >&2; exit 1")
    client = WinRMClient(kerberos_settings(kinit), protocol_factory=fake_factory({"kerberos": "ok"}, []))
    with pytest.raises(DeviceError) as info:
        client.run_script(device_script.load("get_device_facts"))
    assert info.value.reason == "auth" and expected in info.value.message
    assert SECRET not in info.value.message + info.value.detail


def test_a_missing_kinit_is_named(tmp_path):
    client = WinRMClient(kerberos_settings(tmp_path / "no-such-kinit"),
                         protocol_factory=fake_factory({"kerberos": "ok"}, []))
    with pytest.raises(DeviceError) as info:
        client.run_script(device_script.load("get_device_facts"))
    assert info.value.reason == "auth" and "krb5-user" in info.value.message


@pytest.mark.parametrize("text, expected", [
    ("Server not found in Kerberos database", "service principal HTTP/desk"),
    ("No Kerberos credentials available (default cache: FILE:/tmp/krb5cc_0)", "no valid Kerberos ticket"),
    ("Clock skew too great", "clocks"),
])
def test_gssapi_failures_during_the_handshake_are_auth(text, expected):
    class GSSError(Exception):
        pass

    s = resolve_settings({"transport": ["kerberos"]}, {"ansible_user": "support@LAB.TEST"}, "desk")
    wrapped = RuntimeError("authGSSClientStep() failed")
    wrapped.__cause__ = GSSError(text)
    error = classify(wrapped, s)
    assert error.reason == "auth" and expected in error.message.replace("clock and the KDC's", "clocks")


def test_a_user_without_realm_is_not_handed_to_kinit(tmp_path):
    kinit, log = fake_kinit(tmp_path, "exit 0")
    settings = resolve_settings({"transport": ["kerberos", "ntlm"], "kinit_cmd": str(kinit)},
                                {"ansible_user": "labadmin", "ansible_password": SECRET}, "desk")
    made = []
    client = WinRMClient(settings, protocol_factory=fake_factory({"kerberos": "ok", "ntlm": "ok"}, made))
    with client.shell():
        pass
    assert not log.exists()  # no KDC of the default realm was asked
    assert [p.kwargs["transport"] for p in made] == ["ntlm"]
