"""The lab's certificate authority and the certificates it issues (``cryptography``).

One CA per machine, kept in ``/var/cache/labkit/pki`` (beside the images): every lab's
relay and server certificates verify against it. :meth:`LabCA.issue` makes a key and a
certificate for a host (server and client use) with its DNS names as SANs.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from labkit.errors import LabkitError
from labkit.images import cache_dir
from labkit.topology import Host

CA_NAME = "MTA Hardening Lab CA"
VALID_DAYS = 825


class CAError(LabkitError):
    """The lab CA cannot be used here."""


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, PEM-encoded."""
    name: str
    cert_pem: str
    key_pem: str


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "MTA Hardening Lab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: x509.Name, issuer: x509.Name, public_key, not_before: datetime.datetime,
             days: int) -> x509.CertificateBuilder:
    """A certificate builder with the fields every lab certificate has."""
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_before + datetime.timedelta(days=days)))


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


class LabCA:
    """The lab CA in ``directory`` (created on first use)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or cache_dir() / "pki"
        self.cert_path = self.directory / "lab-ca.crt"
        self.key_path = self.directory / "lab-ca.key"
        if not (self.cert_path.exists() and self.key_path.exists()):
            if os.geteuid() != 0:  # the key is root's (see can_issue): so is making the CA
                raise CAError(f"the lab CA is not made yet ({self.cert_path}): root makes it "
                              "on first use (labkit service does when it starts)")
            self._create()
        self.cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        self._loaded_key: ec.EllipticCurvePrivateKey | None = None

    @property
    def can_issue(self) -> bool:
        """True if this process may read the CA's key (root may; a learner asks the lab
        service, see :func:`issue_for_host`)."""
        return os.access(self.key_path, os.R_OK)

    @property
    def _key(self):
        if self._loaded_key is None:
            self._loaded_key = serialization.load_pem_private_key(self.key_path.read_bytes(),
                                                                  None)
        return self._loaded_key

    @property
    def cert_pem(self) -> str:
        return self.cert_path.read_text()

    def _create(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (_builder(_name(CA_NAME), _name(CA_NAME), key.public_key(),
                         now - datetime.timedelta(days=1), 3650)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                             False, False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .sign(key, hashes.SHA256()))
        tmp_key = self.key_path.with_suffix(".tmp")
        fd = os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(_key_pem(key))
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        tmp_key.rename(self.key_path)

    def issue(self, common_name: str, dns_names: list[str] | None = None,
              addresses: list[str] | None = None, days: int = VALID_DAYS,
              not_before: datetime.datetime | None = None) -> Issued:
        """A new key and a certificate for ``common_name`` (server and client auth)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = not_before or datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in (dns_names or [common_name])]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in (addresses or [])]
        cert = (_builder(_name(common_name), self.cert.subject, key.public_key(), now, days)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self._key.public_key()), critical=False)
                .sign(self._key, hashes.SHA256()))
        return Issued(common_name, cert.public_bytes(serialization.Encoding.PEM).decode(),
                      _key_pem(key))


def self_signed(common_name: str) -> Issued:
    """A self-signed certificate (what a careless set-up has): for probes to tell apart."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (_builder(_name(common_name), _name(common_name), key.public_key(),
                     now - datetime.timedelta(hours=1), 30)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
            .sign(key, hashes.SHA256()))
    return Issued(common_name, cert.public_bytes(serialization.Encoding.PEM).decode(),
                  _key_pem(key))


def issue_for_host(ca: LabCA, host: Host) -> Issued:
    """A certificate for a lab host: its FQDN as common name, every name of it as SANs.
    A process that may not read the CA's key (a learner who is not root) gets it from the
    lab service, which issues certificates for the topology's hosts only."""
    if not ca.can_issue:
        from labkit.engines.service import request
        got = request("issue", host=host.name)[0]
        return Issued(host.fqdn, got["cert_pem"], got["key_pem"])
    names = [host.fqdn, *(i.name for i in host.interfaces if i.name != host.fqdn),
             *host.extra_names]
    return ca.issue(host.fqdn, list(dict.fromkeys(names)),
                    [str(i.address) for i in host.interfaces])
