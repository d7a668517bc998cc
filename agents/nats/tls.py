"""Certificates for `dtf up --tls`: a local CA and a server certificate, made once.

For real deployments, give nats-server your own certificates (see docs/security.md);
this is for a stack on one machine or a lab network, where the CA file is copied to
clients (``DTF_TLS_CA``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agents.auth.keyfiles import create_secret_file, ensure_private_dir

MIN_TLS = ssl.TLSVersion.TLSv1_2


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path

    def server_block(self) -> str:
        return (
            "tls {\n"
            f'  cert_file: "{self.cert}"\n'
            f'  key_file: "{self.key}"\n'
            f'  ca_file: "{self.ca}"\n'
            '  min_version: "1.2"\n'
            "  timeout: 2\n"
            "}\n"
        )


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def ensure_certs(directory: Path, hosts: list[str] | None = None) -> TlsFiles:
    """The CA and server certificate in ``directory``, created on first use (keys 0600)."""
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    if files.ca.exists() and files.cert.exists() and files.key.exists():
        return files
    ensure_private_dir(directory)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("DTF local CA"))
          .issuer_name(_name("DTF local CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost"),
                                     x509.DNSName(socket.gethostname()),
                                     x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    for host in hosts or []:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (x509.CertificateBuilder().subject_name(_name("dtf nats-server"))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(ca_key, hashes.SHA256()))
    create_secret_file(directory / "ca.key", _pem_key(ca_key))
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    create_secret_file(files.key, _pem_key(key))
    return files


def client_context(ca_file: str) -> ssl.SSLContext:
    """Verify the server against ``ca_file``; TLS 1.2 at least."""
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.minimum_version = MIN_TLS
    return ctx
