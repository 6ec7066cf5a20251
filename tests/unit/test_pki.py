"""The lab CA: made once, kept private, and issuing certificates OpenSSL accepts."""

import ssl

from labkit import pki, topology


def test_ca_key_is_private_and_reused(tmp_path):
    ca = pki.LabCA(tmp_path)
    assert (ca.key_path.stat().st_mode & 0o777) == 0o600
    assert pki.LabCA(tmp_path).cert_pem == ca.cert_pem


def test_host_certificate_names_every_name_of_the_host(tmp_path):
    relay = topology.load().host("relay")
    issued = pki.issue_for_host(pki.LabCA(tmp_path), relay)
    from labkit.probes.tls import CertInfo
    der = ssl.PEM_cert_to_DER_cert(issued.cert_pem)
    info = CertInfo.from_der(der)
    assert info.common_name == "relay.example.com"
    assert {"relay.example.com", "relay-in.example.com", "192.168.56.20"} <= set(info.sans)
    assert not info.self_signed and not info.expired


def test_openssl_accepts_an_issued_certificate_and_key(tmp_path):
    ca = pki.LabCA(tmp_path)
    issued = ca.issue("server.example.com")
    (tmp_path / "c.pem").write_text(issued.cert_pem)
    (tmp_path / "k.pem").write_text(issued.key_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")  # raises if they do not match
    client = ssl.create_default_context(cadata=ca.cert_pem)
    assert client.cert_store_stats()["x509_ca"] == 1
