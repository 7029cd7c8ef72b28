# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The WinRM client: settings resolution, failure classification against real sockets, one shell per run."""

from __future__ import annotations

import datetime
import json
import socket
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.remote_support.windows.plugins.module_utils import device_script, winrm_http
from ansible_collections.remote_support.windows.plugins.module_utils.errors import DeviceError, SettingsError
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_client import (
    STDIN_CHUNK_BYTES,
    WinRMClient,
    _ntlm_password,
)
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_failures import classify
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_settings import (
    WINRM_ARGUMENT_SPEC,
    WINRM_HOST_VARIABLES,
    WinRMSettings,
    resolve_settings,
)

SECRET = "S3cret-Pa55word!"


def settings(**options):
    """Settings for a device at 127.0.0.1 with the inventory's user and password; `options` as task options."""
    host_vars = {"ansible_host": "127.0.0.1", "ansible_user": "support", "ansible_password": SECRET}
    return resolve_settings(options, host_vars, "device-1")


# --- settings --------------------------------------------------------------------------------------------------

def test_every_task_option_has_inventory_variables():
    assert set(WINRM_ARGUMENT_SPEC) == set(WINRM_HOST_VARIABLES)
    assert WINRM_ARGUMENT_SPEC["password"]["no_log"] is True


def test_defaults_are_the_safe_ones():
    s = resolve_settings({}, {"ansible_user": "u", "ansible_password": "p"}, "desk-1")
    assert (s.host, s.port, s.scheme, s.transport) == ("desk-1", 5986, "https", "ntlm")
    assert s.server_cert_validation == "validate"
    assert s.message_encryption == "auto"
    assert s.endpoint == "https://desk-1:5986/wsman"


def test_inventory_variables_are_read_and_task_options_win():
    host_vars = {
        "ansible_host": "10.1.2.3", "ansible_port": "5985", "ansible_user": "inv-user", "ansible_winrm_pass": "pw",
        "ansible_winrm_transport": ["ntlm", "kerberos"], "ansible_winrm_ca_trust_path": "/ca.pem",
        "ansible_winrm_read_timeout_sec": 50, "ansible_winrm_operation_timeout_sec": 40,
        "ansible_winrm_connection_timeout": 7,
    }
    s = resolve_settings({}, host_vars, "desk-1")
    assert (s.host, s.port, s.scheme, s.user, s.password) == ("10.1.2.3", 5985, "http", "inv-user", "pw")
    assert (s.transport, s.ca_trust_path) == ("ntlm", "/ca.pem")
    assert (s.connection_timeout, s.operation_timeout, s.read_timeout) == (7, 40, 50)

    s = resolve_settings({"user": "task-user", "port": 15986, "scheme": "https"}, host_vars, "desk-1")
    assert (s.user, s.port, s.scheme, s.password) == ("task-user", 15986, "https", "pw")


def test_password_alias_order_follows_the_winrm_connection():
    s = resolve_settings({}, {"ansible_user": "u", "ansible_password": "first", "ansible_winrm_password": "second"}, "h")
    assert s.password == "first"


@pytest.mark.parametrize("options, host_vars, message", [
    ({}, {}, "no user name"),
    ({"port": 70000}, {"ansible_user": "u"}, "outside 1-65535"),
    ({"read_timeout": 10, "operation_timeout": 20}, {"ansible_user": "u"}, "must exceed operation_timeout"),
    ({"transport": "basic", "scheme": "http"}, {"ansible_user": "u"}, "clear text"),
    ({}, {"ansible_user": "u", "ansible_winrm_scheme": "ftp"}, "scheme is 'ftp'"),
    ({}, {"ansible_user": "u", "ansible_port": "fifty"}, "whole number"),
    ({"connection_timeout": -1}, {"ansible_user": "u"}, "positive"),
])
def test_unusable_settings_are_refused_with_the_reason(options, host_vars, message):
    with pytest.raises(SettingsError, match=message):
        resolve_settings(options, host_vars, "h")


def test_password_never_in_repr():
    s = settings()
    assert SECRET not in repr(s)
    assert SECRET not in str(s)


# --- classification against real sockets -----------------------------------------------------------------------

def probe(s: WinRMSettings) -> DeviceError:
    with pytest.raises(DeviceError) as info:
        WinRMClient(s).run_script(device_script.load("get_device_facts"))
    error = info.value
    for text in (error.message, error.detail, str(error), repr(error.as_connection())):
        assert SECRET not in text
    return error


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_closed_port_is_refused():
    error = probe(settings(port=free_port(), scheme="http"))
    assert error.reason == "refused"
    assert "refused the connection" in error.message and "listens on HTTP port" in error.message


def test_unknown_host_name_is_dns():
    error = probe(settings(host="no-such-device.invalid"))
    assert error.reason == "dns"
    assert "no-such-device.invalid" in error.message and "ansible_host" in error.message


@pytest.fixture
def silent_server():
    """Accepts TCP connections and never answers: a device that hangs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def test_silent_device_is_timeout(silent_server):
    error = probe(settings(port=silent_server, scheme="http", operation_timeout=1, read_timeout=2,
                           connection_timeout=1))
    assert error.reason == "timeout"
    assert "did not answer" in error.message


def _self_signed_cert(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "somewhere-else.example")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("somewhere-else.example")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture
def tls_server(tmp_path):
    """A device whose certificate names somewhere-else.example, not 127.0.0.1; serves one TLS handshake.
    Yields its port and the certificate's file."""
    cert_file, key_file = _self_signed_cert(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)

    def serve_one_handshake():
        conn, _address = server.accept()
        try:
            context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            pass  # the client aborts the handshake, which is the point
        finally:
            conn.close()

    thread = threading.Thread(target=serve_one_handshake, daemon=True)
    thread.start()
    yield server.getsockname()[1], cert_file
    thread.join(5)
    server.close()


def test_untrusted_certificate_is_tls(tls_server):
    port, _cert_file = tls_server
    error = probe(settings(port=port, scheme="https", connection_timeout=3))
    assert error.reason == "tls"
    assert "ansible_winrm_ca_trust_path" in error.message and "certificate" in error.message


def test_a_trusted_ca_file_is_loaded_once_per_process_and_the_host_name_still_checked(tls_server, monkeypatch):
    # The device's certificate is the CA file itself, but it does not name 127.0.0.1: the shared context must refuse
    # it as the per-connection one did.
    port, cert_file = tls_server
    trusted = settings(port=port, scheme="https", connection_timeout=3, ca_trust_path=str(cert_file))
    error = probe(trusted)
    assert error.reason == "tls" and "mismatch" in error.detail  # the CA is trusted; the name is what fails

    # NTLM with no proxy on the way: http.client, one context per CA file for the process.
    transports = [WinRMClient(trusted)._protocol().transport for _device in range(2)]
    assert all(isinstance(transport, winrm_http.DirectTransport) for transport in transports)
    contexts = [winrm_http._tls_context(winrm_http._verify(transport), None, None) for transport in transports]
    assert contexts[0] is contexts[1]
    assert contexts[0].verify_mode == ssl.CERT_REQUIRED and contexts[0].check_hostname
    ignored = WinRMClient(settings(port=port, scheme="https", server_cert_validation="ignore"))._protocol().transport
    assert winrm_http._verify(ignored) is False
    assert winrm_http._tls_context(False, None, None).verify_mode == ssl.CERT_NONE

    # Through a proxy, requests' session (pywinrm's own transport) shares one context per CA file the same way.
    proxied = settings(port=port, scheme="https", ca_trust_path=str(cert_file), proxy="http://127.0.0.1:9")
    sessions = [WinRMClient(proxied)._protocol().transport.session for _device in range(2)]
    contexts = [session.get_adapter(f"https://127.0.0.1:{port}/").poolmanager.connection_pool_kw["ssl_context"]
                for session in sessions]
    assert contexts[0] is contexts[1]
    assert contexts[0].verify_mode == ssl.CERT_REQUIRED
    assert all(session.trust_env is False and session.verify == str(cert_file) for session in sessions)
    # No CA file, one that does not exist, or validation off: requests' own handling, nothing shared.
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # what pywinrm takes without ca_trust_path
        monkeypatch.delenv(name, raising=False)
    for other in (settings(port=port, proxy="http://127.0.0.1:9"),
                  settings(port=port, ca_trust_path=str(cert_file) + ".missing", proxy="http://127.0.0.1:9"),
                  settings(port=port, ca_trust_path=str(cert_file), server_cert_validation="ignore",
                           proxy="http://127.0.0.1:9")):
        adapter = WinRMClient(other)._protocol().transport.session.get_adapter(f"https://127.0.0.1:{port}/")
        assert "ssl_context" not in adapter.poolmanager.connection_pool_kw


def test_ntlm_gets_the_password_as_the_hash_pair_pyspnego_takes_for_it():
    # MS-NLMP 4.2.2.1.1 and 4.2.2.1.2: LMOWFv1 and NTOWFv1 of "Password".
    assert _ntlm_password("Password") == "e52cac67419a9a224a3b108f3fa6cb6d:a4f49c406510bdcab6824ee7c30fd852"
    already = "e52cac67419a9a224a3b108f3fa6cb6d:a4f49c406510bdcab6824ee7c30fd852"
    assert _ntlm_password(already) == already
    client, made = make_client()
    with client.shell():
        pass
    assert made[0].kwargs["password"] == _ntlm_password(SECRET) != SECRET
    basic = WinRMClient(settings(transport="basic"), protocol_factory=FakeProtocol)
    assert basic._protocol().kwargs["password"] == SECRET


# --- classification of library exceptions that need a real server to provoke ----------------------------------

def test_rejected_credentials_are_auth():
    import winrm.exceptions
    error = classify(winrm.exceptions.InvalidCredentialsError("the specified credentials were rejected"), settings())
    assert error.reason == "auth" and "ansible_password" in error.message


@pytest.mark.parametrize("code, reason", [(2150859173, "quota"), (2150858843, "protocol")])
def test_wsman_faults_are_named(code, reason):
    import winrm.exceptions
    fault = winrm.exceptions.WSManFaultError(500, "Bad HTTP response", "<xml/>", "The fault text.",
                                             "s:Receiver", "w:InternalError", code)
    assert classify(fault, settings()).reason == reason


def test_password_echoed_by_a_library_is_masked():
    error = classify(RuntimeError(f"server said {SECRET}"), settings())
    assert SECRET not in error.detail and "********" in error.detail
    # The NTLM hash pair the client uses in the password's place is masked as well.
    hashed = classify(RuntimeError(f"server said {_ntlm_password(SECRET)}"), settings())
    assert _ntlm_password(SECRET) not in hashed.detail and "********" in hashed.detail


# --- one shell per run, stdin as data --------------------------------------------------------------------------

class FakeProtocol:
    """Records the calls the client makes; answers like a device running the facts script."""

    def __init__(self, exit_code=0, stdout=b'{"ok": true}', **kwargs):
        self.kwargs = kwargs
        self.calls = []
        self.stdin = b""
        self.exit_code = exit_code
        self.stdout = stdout
        self.transport = type("T", (), {"read_timeout_sec": kwargs.get("read_timeout_sec")})()

    def open_shell(self, **kw):
        self.calls.append(("open_shell", kw))
        return "shell-1"

    def run_command(self, shell_id, command, arguments, skip_cmd_shell=False):
        self.calls.append(("run_command", command, tuple(arguments), skip_cmd_shell))
        return "cmd-1"

    def send_command_input(self, shell_id, command_id, data, end=False):
        self.calls.append(("send", len(data), end))
        self.stdin += data

    def get_command_output(self, shell_id, command_id):
        self.calls.append(("receive",))
        return self.stdout, b"Invalid class \"Win32_BIOS\"\r\n", self.exit_code

    def close_shell(self, shell_id):
        self.calls.append(("close_shell",))


def make_client(**fake_kwargs):
    made = []

    def factory(**kwargs):
        made.append(FakeProtocol(**fake_kwargs, **kwargs))
        return made[-1]

    return WinRMClient(settings(), protocol_factory=factory), made


def test_script_and_input_travel_as_stdin_data_in_chunks_within_one_shell():
    script = device_script.load("get_device_facts")
    script = device_script.DeviceScript(script.name, script.version, script.text,
                                        {"output": {"required": ["ok"]}})
    client, made = make_client()
    big = "x" * (STDIN_CHUNK_BYTES * 2)
    hostile = "'; Remove-Item C:\\ -Recurse #"
    with client.shell() as shell:
        results = [shell.run(script, {"blob": big, "name": hostile}), shell.run(script)]
    assert results == [{"ok": True}, {"ok": True}]
    protocol = made[0]
    assert len(made) == 1
    assert [c[0] for c in protocol.calls].count("open_shell") == 1
    assert protocol.calls[-1] == ("close_shell",)
    sends = [c for c in protocol.calls if c[0] == "send"]
    assert all(size <= STDIN_CHUNK_BYTES for _name, size, _end in sends)
    assert [send[2] for send in sends].count(True) == 2  # each command's stdin is closed once
    run = next(c for c in protocol.calls if c[0] == "run_command")
    assert run[1] == "powershell.exe" and run[3] is True
    assert hostile not in " ".join(run[2])  # user text never reaches the command line
    first_payload = json.loads(protocol.stdin[:protocol.stdin.index(b'}{') + 1])
    assert first_payload["input"]["name"] == hostile and first_payload["script"] == script.text
    assert protocol.transport.read_timeout_sec == (10, 30)
    assert protocol.kwargs["server_cert_validation"] == "validate"


def test_failing_script_is_named_script_and_the_shell_is_closed():
    client, made = make_client(exit_code=1, stdout=b"")
    with pytest.raises(DeviceError) as info:
        client.run_script(device_script.load("get_device_facts"))
    assert info.value.reason == "script"
    assert "Invalid class" in info.value.message
    assert made[0].calls[-1] == ("close_shell",)


def test_output_that_is_not_json_is_a_script_error():
    client, _made = make_client(stdout=b"WARNING: something\r\n")
    with pytest.raises(DeviceError) as info:
        client.run_script(device_script.load("get_device_facts"))
    assert info.value.reason == "script" and "JSON" in info.value.message


def test_output_missing_contract_fields_is_a_script_error():
    client, _made = make_client(stdout=b'{"computer_name": "X"}')
    with pytest.raises(DeviceError) as info:
        client.run_script(device_script.load("get_device_facts"))
    assert "serial_number" in info.value.message
