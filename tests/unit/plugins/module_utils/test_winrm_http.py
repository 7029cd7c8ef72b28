# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""WinRM over http.client (winrm_http): against a lab device served over real HTTP and HTTPS sockets, what goes on
the wire for NTLM (the negotiation with the first message, channel binding, sealing over HTTP), a connection the
device closes, a refused password, and which settings keep pywinrm's own transport."""

from __future__ import annotations

import datetime
import email
import http.client
import logging
import socket

import pytest
import requests_ntlm.requests_ntlm
import winrm.transport
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from winrm_lab import in_process
from winrm_lab.scenarios import LAB_USER
from winrm_lab.server import LabServer

from ansible_collections.remote_support.windows.plugins.module_utils import device_script, winrm_http
from ansible_collections.remote_support.windows.plugins.module_utils.errors import DeviceError
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_client import WinRMClient
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_failures import classify
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_settings import resolve_settings

FACTS = device_script.load("get_device_facts")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def device(tmp_path):
    """A lab device served on 127.0.0.1 over HTTP and HTTPS (its own CA), with the lab's request log."""
    served = in_process.device("active", work_dir=tmp_path / "device")
    served.address, served.inventory_host = "127.0.0.1", "127.0.0.1"
    served.http_port, served.https_port = _free_port(), _free_port()
    handle = LabServer([served], work_dir=str(tmp_path / "lab")).run_in_thread()
    yield served, handle
    handle.stop()


def client_for(served, handle, scheme="https", **options):
    host_vars = {"ansible_host": served.address, "ansible_user": LAB_USER,
                 "ansible_password": served.accounts[LAB_USER], "ansible_winrm_scheme": scheme,
                 "ansible_port": served.https_port if scheme == "https" else served.http_port,
                 "ansible_winrm_ca_trust_path": str(handle.server.ca.ca_path)}
    return WinRMClient(resolve_settings(options, host_vars, served.name))


def requests_seen(caplog):
    """The lab's request log: one line per HTTP request a device answered."""
    return [r for r in caplog.records if r.name == "winrm_lab.server" and " POST " in r.getMessage()]


@pytest.mark.parametrize("scheme, requests", [("https", 6), ("http", 7)])
def test_ntlm_negotiates_with_the_first_message(device, caplog, scheme, requests):
    """A script in its own shell: negotiation (an empty request), then the shell's creation carrying the
    authentication, the command, its input, its output and the shell's deletion. Over HTTP every message is sealed,
    so the authentication goes with an empty request of its own (as pywinrm's)."""
    served, handle = device
    caplog.set_level(logging.INFO, logger="winrm_lab.server")
    client = client_for(served, handle, scheme)
    facts = client.run_script(FACTS)
    assert facts["serial_number"] == served.hardware.serial_number
    assert len(requests_seen(caplog)) == requests
    transport = client._protocol().transport
    assert isinstance(transport, winrm_http.DirectTransport)


def test_over_http_the_device_refuses_what_is_not_sealed(device):
    """The lab device refuses clear-text SOAP over HTTP (AllowUnencrypted false, Windows' default): a script that
    runs there proves every message was sealed and every reply unsealed."""
    served, handle = device
    assert served.service.allow_unencrypted is False
    client = client_for(served, handle, "http")
    assert client.run_script(FACTS)["computer_name"] == served.name


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_a_connection_the_device_closed_is_opened_and_authenticated_again(device, caplog, scheme):
    served, handle = device
    caplog.set_level(logging.INFO, logger="winrm_lab.server")
    client = client_for(served, handle, scheme)
    with client.shell() as shell:
        assert shell.run(FACTS, {})["computer_name"] == served.name
        transport = shell._protocol.transport
        first = transport._connection.sock
        served.faults.refuse_connections = True  # the WinRM listener closes every open connection
        handle.refresh_listeners(served)
        served.faults.refuse_connections = False
        handle.refresh_listeners(served)
        before = len(requests_seen(caplog))
        assert shell.run(FACTS, {})["computer_name"] == served.name
        assert transport._connection.sock is not first
        # command, input, output on a new connection: its first request negotiates again (and over HTTP the
        # authentication has an empty request of its own)
        assert len(requests_seen(caplog)) - before == (4 if scheme == "https" else 5)


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_a_wrong_password_is_auth_and_names_the_user_not_the_password(device, scheme):
    served, handle = device
    client = client_for(served, handle, scheme, password="Wrong-Passw0rd!")
    with pytest.raises(DeviceError) as refused:
        client.run_script(FACTS)
    assert refused.value.reason == "auth" and LAB_USER in refused.value.message
    assert "Wrong-Passw0rd!" not in f"{refused.value.message} {refused.value.detail}"


def _certificate(algorithm):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "desk")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                   .sign(key, algorithm))
    return certificate.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize("algorithm", [hashes.SHA256(), hashes.SHA384(), hashes.SHA512()])
def test_the_channel_binding_hashes_the_certificate_as_requests_ntlm_does(algorithm):
    """RFC 5929 4.1: the certificate's own signature hash (SHA-256 in place of MD5 and SHA-1, which this machine's
    OpenSSL no longer signs with). The same bytes as the requests_ntlm this transport stands in for, so a device
    that checks channel binding sees no difference."""
    der = _certificate(algorithm)
    assert winrm_http.certificate_hash(der) == requests_ntlm.requests_ntlm._get_certificate_hash(der)
    digest = hashes.Hash(algorithm)
    digest.update(der)
    assert winrm_http.certificate_hash(der) == digest.finalize()


def _transport(**settings):
    defaults = {"endpoint": "https://desk:5986/wsman", "auth_method": "ntlm", "username": "u", "password": "p",
                "proxy": None, "message_encryption": "auto"}
    defaults.update(settings)
    return winrm.transport.Transport(**defaults)


def test_what_keeps_pywinrms_own_transport(monkeypatch, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"  # pywinrm checks that they exist
    cert.write_text("certificate")
    key.write_text("key")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY",
                 "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert winrm_http.serves(_transport())
    assert winrm_http.serves(_transport(auth_method="basic", endpoint="http://desk:5985/wsman"))
    assert winrm_http.serves(_transport(auth_method="certificate", cert_pem=str(cert), cert_key_pem=str(key)))
    assert winrm_http.serves(_transport(proxy="legacy_requests"))  # no proxy in the environment
    assert not winrm_http.serves(_transport(auth_method="kerberos"))
    assert not winrm_http.serves(_transport(auth_method="credssp"))
    assert not winrm_http.serves(_transport(proxy="http://proxy.example:3128"))
    assert not winrm_http.serves(_transport(auth_method="basic", message_encryption="always"))  # pywinrm says why
    assert not winrm_http.serves(_transport(auth_method="certificate", endpoint="http://desk:5985/wsman",
                                            cert_pem=str(cert), cert_key_pem=str(key)))
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert not winrm_http.serves(_transport(proxy="legacy_requests"))
    assert winrm_http.serves(_transport(proxy=None))  # ignore_proxy
    monkeypatch.setenv("NO_PROXY", "desk")
    assert winrm_http.serves(_transport(proxy="legacy_requests"))
    monkeypatch.delenv("NO_PROXY")
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.setenv("Http_Proxy", "http://proxy.example:3128")  # any case, as urllib reads it; not for https
    assert winrm_http.serves(_transport(proxy="legacy_requests"))
    assert not winrm_http.serves(_transport(proxy="legacy_requests", endpoint="http://desk:5985/wsman"))
    monkeypatch.setenv("all_proxy", "socks5://proxy.example:1080")
    assert not winrm_http.serves(_transport(proxy="legacy_requests"))


class _Sealing:
    """An NTLM context as far as unsealing needs one: it never gets a clear-text reply to unwrap."""

    def unwrap_winrm(self, header, data):
        raise AssertionError("a clear-text reply must not be unwrapped")


def test_a_clear_text_reply_on_a_sealed_connection_is_refused():
    """Over HTTP every message is sealed, and so is every reply Windows sends on that connection; a reply in clear
    text was put there by something on the way, and is not read as the device's."""
    transport = _transport(endpoint="http://desk:5985/wsman")
    transport.__class__ = winrm_http.DirectTransport
    transport._sealing = _Sealing()
    clear = email.message_from_string("Content-Type: application/soap+xml;charset=UTF-8\n\n",
                                      _class=http.client.HTTPMessage)
    assert transport._unsealed(200, clear, b"") == b""  # an empty reply carries nothing to trust
    assert transport._unsealed(503, clear, b"Service Unavailable") == b"Service Unavailable"  # HTTP's own error
    with pytest.raises(winrm_http.UnsealedReply) as refused:
        transport._unsealed(200, clear, b"<s:Envelope/>")
    error = classify(refused.value, resolve_settings({}, {"ansible_user": "u", "ansible_password": "p"}, "desk"))
    assert error.reason == "protocol" and "clear text" in error.message and "HTTPS" in error.message
    sealed = email.message_from_string(f"Content-Type: {winrm_http._SEALED_CONTENT_TYPE}\n\n",
                                       _class=http.client.HTTPMessage)
    with pytest.raises(winrm_http.UnsealedReply):  # cut short: no length, no signature
        transport._unsealed(200, sealed, winrm_http._BOUNDARY + b"\r\n\tContent-Type: x\r\n")
