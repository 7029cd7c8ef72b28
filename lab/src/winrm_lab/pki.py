"""The lab's certificate authority and the server certificates its devices present on HTTPS.

`CertificateAuthority.create(directory)` writes `ca.pem`, the file clients pass as `ca_trust_path`, so that examples
keep certificate validation on. Each device's HTTPS listener presents a certificate of the kind its
`Faults.certificate` names:

- valid:     issued by the lab CA for the device's address (IP SAN) and name (DNS SAN)
- mismatch:  issued by the lab CA, but for another host name, so host name verification fails
- untrusted: self-signed, not from the lab CA, so chain verification fails
- expired:   issued by the lab CA for the right names, but its validity ended yesterday

For certificate authentication the CA also issues client certificates (`issue_client`): Client Authentication EKU
and the account in a UPN subject alternative name (`user@localhost`), which is what a WinRM certificate mapping
(`winrm/config/service/certmapping`) matches for a local account. Every listener asks for a client certificate and
accepts the handshake without one; `client_upn` reads the UPN back for the authenticator.

EC P-256 keys and one leaf key shared by every certificate keep 1,000 devices cheap: issuing a certificate costs a
signature, and a device's TLS context is only built when a client first connects to it.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import pathlib
import re
import ssl
import threading
import typing as t

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

# szOID_NT_PRINCIPAL_NAME: the UPN in a certificate's subject alternative name, as Windows maps it to an account.
UPN_OID = ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")

CERTIFICATE_KINDS = ("valid", "mismatch", "untrusted", "expired")

_ONE_DAY = datetime.timedelta(days=1)


class IssuedCertificate(t.NamedTuple):
    context: ssl.SSLContext  # server-side TLS context presenting the certificate
    der: bytes  # the certificate, DER encoded (what a client sees; used for channel binding)
    path: pathlib.Path  # PEM file


class CertificateAuthority:
    """A lab CA that lives in one directory: ca.pem (public), ca-key.pem and leaf-key.pem (private, 0600)."""

    def __init__(self, directory: pathlib.Path, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
                 leaf_key: ec.EllipticCurvePrivateKey) -> None:
        self.directory = directory
        self._ca_key = ca_key
        self.certificate = ca_cert
        self._leaf_key = leaf_key
        self._leaf_key_path = directory / "leaf-key.pem"
        self._issued: dict[tuple[str, str, str], IssuedCertificate] = {}
        self._lock = threading.Lock()

    @property
    def ca_path(self) -> pathlib.Path:
        """The CA certificate clients trust (`ansible_winrm_ca_trust_path`, pypsrp `cert_validation`)."""
        return self.directory / "ca.pem"

    @classmethod
    def create(cls, directory: str | os.PathLike[str], common_name: str = "winrm-lab CA") -> "CertificateAuthority":
        directory = pathlib.Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(datetime.timezone.utc)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "winrm-lab")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _ONE_DAY).not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        leaf_key = ec.generate_private_key(ec.SECP256R1())
        authority = cls(directory, ca_key, ca_cert, leaf_key)
        authority.ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        _write_private(directory / "ca-key.pem", ca_key)
        _write_private(authority._leaf_key_path, leaf_key)
        return authority

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> "CertificateAuthority":
        """Reopens a CA that `create` wrote earlier (so a restarted lab keeps the ca.pem clients already trust)."""
        directory = pathlib.Path(directory)
        ca_cert = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
        ca_key = serialization.load_pem_private_key((directory / "ca-key.pem").read_bytes(), None)
        leaf_key = serialization.load_pem_private_key((directory / "leaf-key.pem").read_bytes(), None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey) and isinstance(leaf_key, ec.EllipticCurvePrivateKey)
        return cls(directory, ca_key, ca_cert, leaf_key)

    # Issuing ---------------------------------------------------------------------------------------------------
    def issue(self, dns_names: t.Sequence[str], addresses: t.Sequence[str], *, self_signed: bool = False,
              expired: bool = False) -> x509.Certificate:
        """A TLS server certificate for the given names, signed by the CA (or by itself when `self_signed`)."""
        now = datetime.datetime.now(datetime.timezone.utc)
        common_name = (list(dns_names) + list(addresses) or ["winrm-lab"])[0]
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        if expired:
            not_before, not_after = now - datetime.timedelta(days=366), now - _ONE_DAY
        else:
            not_before, not_after = now - _ONE_DAY, now + datetime.timedelta(days=825)
        alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        alt_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
        issuer = subject if self_signed else self.certificate.subject
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(issuer).public_key(self._leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if not self_signed:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._ca_key.public_key()), critical=False)
        return builder.sign(self._leaf_key if self_signed else self._ca_key, hashes.SHA256())

    def server_certificate(self, device_name: str, address: str, kind: str = "valid",
                           extra_dns_names: t.Sequence[str] = ()) -> IssuedCertificate:
        """The certificate (and a TLS context presenting it) for one device's HTTPS listener. Cached."""
        if kind not in CERTIFICATE_KINDS:
            raise ValueError(f"unknown certificate kind {kind!r}; expected one of {', '.join(CERTIFICATE_KINDS)}")
        key = (device_name, address, kind)
        with self._lock:
            issued = self._issued.get(key)
            if issued is not None:
                return issued
            names = [device_name.lower()] + [n for n in extra_dns_names if n and n.lower() != device_name.lower()]
            if kind == "mismatch":
                # Right CA, wrong host: the name and address of some other machine.
                cert = self.issue([f"not-{device_name.lower()}.invalid"], [])
            else:
                cert = self.issue(names, [address], self_signed=kind == "untrusted", expired=kind == "expired")
            cert_dir = self.directory / "certs"
            cert_dir.mkdir(exist_ok=True)
            path = cert_dir / f"{_safe(device_name)}-{_safe(address)}-{kind}.pem"
            path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            context = server_context(path, self._leaf_key_path, self.ca_path)
            issued = IssuedCertificate(context, cert.public_bytes(serialization.Encoding.DER), path)
            self._issued[key] = issued
            return issued

    def issue_client(self, upn: str, directory: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
        """A client certificate for `upn` (user@localhost for a local account) and its own key, written as PEM files
        (the key 0600). Returns (certificate path, key path)."""
        now = datetime.datetime.now(datetime.timezone.utc)
        key = ec.generate_private_key(ec.SECP256R1())
        name = upn.partition("@")[0]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.certificate.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _ONE_DAY).not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([x509.OtherName(UPN_OID, _der_utf8(upn))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._ca_key.public_key()),
                           critical=False)
            .sign(self._ca_key, hashes.SHA256())
        )
        directory.mkdir(parents=True, exist_ok=True)
        cert_path = directory / f"{_safe(name)}.pem"
        key_path = directory / f"{_safe(name)}-key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_private(key_path, key)
        return cert_path, key_path

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts only the lab CA, with host name checking on."""
        return ssl.create_default_context(cafile=str(self.ca_path))


def server_context(cert_path: pathlib.Path, key_path: pathlib.Path,
                   client_ca: pathlib.Path | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert_path), str(key_path))
    _ask_for_client_certificate(context, client_ca or cert_path.parent.parent / "ca.pem")
    return context


def _ask_for_client_certificate(context: ssl.SSLContext, client_ca: pathlib.Path) -> None:
    # HTTP.sys asks for a client certificate when certificate authentication is on; a client without one still
    # completes the handshake (and authenticates another way). One from another CA fails the handshake.
    if client_ca.exists():
        context.load_verify_locations(str(client_ca))
        context.verify_mode = ssl.CERT_OPTIONAL


def client_upn(der: bytes | None) -> str | None:
    """The UPN in a (verified) client certificate's subject alternative name, if any."""
    if not der:
        return None
    try:
        cert = x509.load_der_x509_certificate(der)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return None
    for other in names.get_values_for_type(x509.OtherName):
        if other.type_id == UPN_OID:
            return _read_der_utf8(other.value)
    return None


def _der_utf8(text: str) -> bytes:
    data = text.encode("utf-8")
    if len(data) >= 128:
        raise ValueError("UPN too long for this encoder")
    return bytes((0x0C, len(data))) + data


def _read_der_utf8(der: bytes) -> str | None:
    if len(der) < 2 or der[0] != 0x0C or der[1] >= 128 or len(der) != 2 + der[1]:
        return None
    return der[2:].decode("utf-8", "replace")


def switching_context(choose: t.Callable[[], ssl.SSLContext], client_ca: pathlib.Path | None = None) -> ssl.SSLContext:
    """A listener context that picks the real context when each handshake starts.

    OpenSSL calls the SNI callback for every ClientHello, with or without a server name, so the certificate a device
    presents can change (Faults.certificate) without rebinding its listener, and no certificate is issued for a
    device nobody connects to. Clients connect by IP address, so there is no SNI to go by: `choose` decides.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if client_ca is not None:
        # OpenSSL keeps the verify mode of the context the handshake started with, whatever the callback picks.
        _ask_for_client_certificate(context, client_ca)

    def pick(ssl_object: t.Any, server_name: str | None, _initial: ssl.SSLContext) -> None:
        ssl_object.context = choose()

    context.sni_callback = pick
    return context


def _write_private(path: pathlib.Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)
