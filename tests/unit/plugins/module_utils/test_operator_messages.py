# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the operator reads when a connection fails: a file on the controller is named as such, a connection cut
mid-exchange is the product's "Connection to workstation lost" and not a certificate problem, a bad setting names
itself and the value given, and the seed's "Unable to connect to the device" is followed by the reason."""

from __future__ import annotations

import datetime
import http.client
import socket
import ssl

import pytest
import requests.exceptions
import urllib3.exceptions

from ansible_collections.remote_support.windows.plugins.module_utils import device_info, device_script, support_audit
from ansible_collections.remote_support.windows.plugins.module_utils.errors import DeviceError, SettingsError
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_client import WinRMClient
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_failures import classify
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_settings import resolve_settings

USER_VARS = {"ansible_host": "127.0.0.1", "ansible_user": "support", "ansible_password": "pw"}


def settings(**options):
    return resolve_settings(options, USER_VARS, "device-1")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def connect(s) -> DeviceError:
    """Runs the facts script for real against `s` (nothing listens there) and returns what the client raised."""
    with pytest.raises(DeviceError) as info:
        WinRMClient(s).run_script(device_script.load("get_device_facts"))
    return info.value


# --- files on the controller ----------------------------------------------------------------------------------------

def test_a_missing_ca_file_is_named_as_a_controller_file(tmp_path):
    missing = tmp_path / "corp-ca.pem"
    error = connect(settings(port=closed_port(), ca_trust_path=str(missing)))
    assert error.reason == "tls"
    assert str(missing) in error.message and "no such file on the controller" in error.message
    assert "ansible_winrm_ca_trust_path" in error.message and "Nothing on the device needs to change" in error.message
    assert "WinRM service" not in error.message and "refused" not in error.message


def test_a_ca_file_without_a_certificate_is_named_with_what_is_wrong(tmp_path):
    wrong = tmp_path / "ca.pem"
    wrong.write_text("this is not a certificate\n")
    error = connect(settings(port=closed_port(), ca_trust_path=str(wrong)))
    assert str(wrong) in error.message and "holds no PEM block" in error.message


def test_a_folder_of_ca_certificates_is_accepted_as_requests_accepts_it(tmp_path):
    error = connect(settings(port=closed_port(), ca_trust_path=str(tmp_path)))
    assert error.reason == "refused"  # the folder is fine: what failed is the closed port


def test_the_ca_file_does_not_matter_without_validation_or_over_http(tmp_path):
    missing = str(tmp_path / "nothing.pem")
    for options in ({"server_cert_validation": "ignore"}, {"scheme": "http"}):
        assert connect(settings(port=closed_port(), ca_trust_path=missing, **options)).reason == "refused"


@pytest.mark.parametrize("which", ["cert_pem", "cert_key_pem"])
def test_a_missing_client_certificate_or_key_is_named(tmp_path, which):
    present = tmp_path / "present.pem"
    present.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    paths = {"cert_pem": str(present), "cert_key_pem": str(present), which: str(tmp_path / "gone.pem")}
    error = connect(settings(port=closed_port(), transport="certificate", **paths))
    assert error.reason == "auth"
    assert str(tmp_path / "gone.pem") in error.message and f"({which}, inventory variable ansible_winrm_{which})" \
        in error.message


def test_a_folder_given_as_the_client_certificate_is_named(tmp_path):
    error = connect(settings(port=closed_port(), transport="certificate", cert_pem=str(tmp_path),
                             cert_key_pem=str(tmp_path)))
    assert "it is a folder, not a file" in error.message and str(tmp_path) in error.message


# --- a connection cut mid-exchange ------------------------------------------------------------------------------------

def _eof() -> BaseException:
    return requests.exceptions.SSLError(urllib3.exceptions.SSLError(
        ssl.SSLEOFError(8, "EOF occurred in violation of protocol (_ssl.c:2427)")))


CUTS = {
    "SSLEOFError": _eof,
    "ConnectionResetError": lambda: requests.exceptions.ConnectionError(urllib3.exceptions.ProtocolError(
        "Connection aborted.", ConnectionResetError(104, "Connection reset by peer"))),
    "ChunkedEncodingError": lambda: requests.exceptions.ChunkedEncodingError(urllib3.exceptions.ProtocolError(
        "Response ended prematurely")),
    "IncompleteRead": lambda: requests.exceptions.ChunkedEncodingError(urllib3.exceptions.ProtocolError(
        "Connection broken: IncompleteRead(10 bytes read, 90 more expected)",
        http.client.IncompleteRead(b"0123456789", 90))),
    "RemoteDisconnected": lambda: requests.exceptions.ConnectionError(urllib3.exceptions.ProtocolError(
        "Connection aborted.", http.client.RemoteDisconnected("Remote end closed connection without response"))),
}


@pytest.mark.parametrize("name", sorted(CUTS))
def test_a_cut_connection_is_connection_to_workstation_lost_not_a_certificate_problem(name):
    error = classify(CUTS[name](), settings())
    assert error.reason == "protocol"
    assert "Connection to workstation lost" in error.message and "network path" in error.message
    assert "certificate" not in error.message.lower() and "ca_trust_path" not in error.message


def test_a_certificate_that_fails_verification_stays_tls():
    failure = ssl.SSLCertVerificationError(1, "certificate verify failed: unable to get local issuer certificate")
    failure.verify_message = "unable to get local issuer certificate"
    error = classify(requests.exceptions.SSLError(urllib3.exceptions.SSLError(failure)), settings())
    assert error.reason == "tls"
    assert "unable to get local issuer certificate" in error.message and "ansible_winrm_ca_trust_path" in error.message
    assert "Connection to workstation lost" not in error.message


def test_a_handshake_that_is_not_tls_names_scheme_and_port():
    failure = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    failure.reason = "WRONG_VERSION_NUMBER"
    error = classify(requests.exceptions.SSLError(failure), settings(port=5985, scheme="https"))
    assert error.reason == "tls" and "WRONG_VERSION_NUMBER" in error.message
    assert "ansible_winrm_scheme is https, ansible_port is 5985" in error.message


# --- settings that cannot work ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, variable", [
    ("operation_timeout", "ansible_winrm_operation_timeout_sec"),
    ("connection_timeout", "ansible_winrm_connection_timeout"),
    ("read_timeout", "ansible_winrm_read_timeout_sec"),
])
def test_a_timeout_of_zero_is_refused_by_name_and_value_not_replaced_by_a_default(name, variable):
    for given in ({"options": {name: 0}}, {"host_vars": {variable: "0"}}):
        with pytest.raises(SettingsError) as info:
            resolve_settings(given.get("options", {}), dict(USER_VARS, **given.get("host_vars", {})), "device-1")
        assert f"{name} ({variable}) is 0" in str(info.value)
        assert "20 s" not in str(info.value)


def test_a_psrp_host_is_told_its_own_variable():
    with pytest.raises(SettingsError, match=r"operation_timeout \(ansible_psrp_operation_timeout\) is -1"):
        resolve_settings({}, dict(USER_VARS, ansible_connection="psrp", ansible_psrp_operation_timeout=-1), "d")


def test_port_zero_names_the_setting_and_the_value():
    with pytest.raises(SettingsError, match=r"port \(ansible_port\) is 0, outside 1-65535"):
        settings(port=0)


@pytest.mark.parametrize("value", [0, -5, True])
def test_idle_after_names_the_value_given(value):
    assert f"idle_after is {value!r}" in device_info.idle_after_problem(value)


# --- the seed's words, then why ---------------------------------------------------------------------------------------

NOW = datetime.datetime(2026, 11, 24, 12, 0, 0, tzinfo=datetime.timezone.utc)


@pytest.mark.parametrize("seconds, text", [(45, "45 s"), (119, "119 s"), (720, "12 minutes"),
                                           (5 * 3600, "5 hours"), (3 * 86400 + 60, "3 days")])
def test_checkin_age_reads_as_a_person_says_it(seconds, text):
    assert device_info.age_text(seconds) == text


def test_an_idle_device_says_when_the_agent_last_checked_in_in_the_same_message():
    facts = {"computer_name": "DESKTOP-1", "device_time": "2026-11-24T12:00:00Z", "last_checkin": "2026-11-21T12:00:00Z"}
    record = device_info.record_from_facts(facts, 900, NOW)
    assert record["msg"].startswith("Unable to connect to the device: the device's support agent last checked in "
                                    "3 days ago (at 2026-11-21T12:00:00Z by the device's clock; idle_after is 900 s).")
    assert "RemoteSupport-Heartbeat" in record["msg"]


def test_an_unreachable_device_says_the_connection_failure_in_the_same_message():
    record = device_info.unreachable_record(DeviceError("auth", "The device at 127.0.0.1:5986 rejected the "
                                                                "credentials of user 'support' (ntlm)."))
    assert record["msg"] == ("Unable to connect to the device: the device at 127.0.0.1:5986 rejected the credentials "
                             "of user 'support' (ntlm).")


class Unreachable:
    """A client whose every shell fails to open, as WinRMClient does for a device that refuses the connection."""

    settings = None

    def __init__(self, error: DeviceError) -> None:
        self.error = error

    def shell(self):
        raise self.error


@pytest.mark.parametrize("reason, expected", [
    ("refused", "Unable to connect to the device: 10.0.0.5:5986 refused the connection."),
    ("script", "The audit events could not be read: The device script failed: Access is denied."),
])
def test_support_audit_speaks_the_same_words_as_the_other_modules(reason, expected):
    message = {"refused": "10.0.0.5:5986 refused the connection.",
               "script": "The device script failed: Access is denied."}[reason]
    result = support_audit.run(Unreachable(DeviceError(reason, message)),
                               {"since": None, "last": None, "max_events": 100})
    assert result["failed"] is True and result["msg"] == expected
    assert result["connection"]["reason"] == reason
