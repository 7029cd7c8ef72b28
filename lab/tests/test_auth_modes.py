"""The lab's authentication modes, below the integration tests (tests/integration/targets/authentication): what the
Kerberos realm needs, the UPN a client certificate carries, and which Negotiate tokens go to the Kerberos acceptor."""

from __future__ import annotations

import base64
import os

import pytest
import spnego

from winrm_lab import auth, kdc, pki


def test_a_missing_kdc_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(kdc, "SEARCH_PATH", str(tmp_path))
    with pytest.raises(kdc.KerberosUnavailable, match="krb5-kdc krb5-admin-server"):
        kdc.KerberosRealm(tmp_path / "realm").start({"user": "pw"}, ["host"])


def test_the_realm_answers_only_on_loopback_and_names_no_other_realm(tmp_path):
    realm = kdc.KerberosRealm(tmp_path / "realm")
    realm.port = 12345
    realm.directory.mkdir()
    realm._write_configuration()
    krb5_conf = realm.krb5_conf.read_text()
    assert "kdc = 127.0.0.1:12345" in krb5_conf and "dns_lookup_kdc = false" in krb5_conf
    assert krb5_conf.count(" = {") == 1
    assert "kdc_listen = 127.0.0.1:12345" in (tmp_path / "realm" / "kdc.conf").read_text()


def test_client_certificates_carry_the_account_as_upn(tmp_path):
    ca = pki.CertificateAuthority.create(tmp_path / "pki")
    cert_path, key_path = ca.issue_client("labadmin@localhost", tmp_path / "clients")
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    der = x509.load_pem_x509_certificate(cert_path.read_bytes()).public_bytes(serialization.Encoding.DER)
    assert pki.client_upn(der) == "labadmin@localhost"
    assert oct(os.stat(key_path).st_mode & 0o777) == "0o600"
    server = ca.server_certificate("desk", "127.0.0.1")
    assert pki.client_upn(server.der) is None  # a certificate without a UPN maps to nobody
    assert pki.client_upn(None) is None


def test_only_raw_kerberos_tokens_go_to_the_kerberos_acceptor():
    ntlm = spnego.client("user", "pass", protocol="ntlm").step()
    spnego_init = spnego.client("user", "pass", protocol="negotiate", options=spnego.NegotiateOptions.use_ntlm).step()
    krb5_like = bytes.fromhex("6082012306092a864886f71201020201006e82")  # [APPLICATION 0], long length, krb5 OID
    assert not auth._is_kerberos_token(ntlm)
    assert not auth._is_kerberos_token(spnego_init)
    assert auth._is_kerberos_token(krb5_like)
    assert not auth._is_kerberos_token(base64.b64decode("YA=="))  # truncated
