"""The lab service's protocol and its authority, without a lab: a fake engine stands in,
the service listens on a socket of the test's own, and requests go through it as they
would from a learner's labkit."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from labkit.engines import service as client
from labkit.engines.base import HostStatus, RunResult
from labkit.errors import LabNotRunningError
from labkit.service import server


class FakeEngine:
    def __init__(self, lab):
        self.lab = lab
        self.calls = []

    def is_running(self):
        if self.lab == "stopped":
            raise LabNotRunningError("lab 'stopped' is not running")
        return True

    def status(self):
        return [HostStatus("relay", "relay.example.com", True, ["192.168.56.20 (outside)"])]

    def run(self, host, argv, input=None, timeout=60):
        self.calls.append(("run", host, argv))
        return RunResult(host, argv, 0, f"{host}:{' '.join(argv)}:{input or ''}", "")

    run_privileged = run

    def connect(self, host, address, port, timeout=10, source=None):
        a, b = socket.socketpair()
        b.sendall(f"hello from {host} to {address}:{port}".encode())
        b.close()
        return a


class FakeService(server.LabService):
    def __init__(self, authority):
        super().__init__(authority)
        self.fakes = {}

    def engine(self, lab):
        return self.fakes.setdefault(lab, FakeEngine(lab))


@pytest.fixture
def service(tmp_path, monkeypatch):
    me = os.getuid()
    authority = server.Authority(learners=lambda: {"alice"})
    monkeypatch.setattr(authority, "is_instructor", lambda uid: False)
    monkeypatch.setattr(authority, "user", lambda uid: "alice" if uid == me else f"uid {uid}")
    svc = FakeService(authority)
    path = str(tmp_path / "service.sock")
    ready = threading.Event()
    threading.Thread(target=server.serve, args=(path, svc, ready), daemon=True).start()
    assert ready.wait(5)
    monkeypatch.setenv("LABKIT_SERVICE", path)
    return svc


def test_a_learner_acts_on_their_own_lab(service):
    result, _ = client.request("whoami")
    assert result == {"user": "alice", "labs": ["alice"]}
    engine = client.ServiceEngine.__new__(client.ServiceEngine)
    engine.lab = "alice"
    res = engine.run("relay", ["id", "-u"], input="x")
    assert res.ok and res.stdout == "relay:id -u:x"
    assert engine.status()[0].fqdn == "relay.example.com"


def test_a_connection_from_a_host_comes_back_as_a_socket(service):
    engine = client.ServiceEngine.__new__(client.ServiceEngine)
    engine.lab = "alice"
    sock = engine.connect("internet", "192.168.56.20", 25)
    assert sock.recv(100) == b"hello from internet to 192.168.56.20:25"
    sock.close()


def test_another_learners_lab_is_refused(service):
    with pytest.raises(client.ServiceError, match="alice may not act on lab 'bob'"):
        client.request("run", "bob", host="relay", argv=["true"])
    assert "bob" not in service.fakes


def test_only_the_probes_own_commands_run_with_privileges(service):
    with pytest.raises(client.ServiceError, match="not a command the service runs"):
        client.request("run_privileged", "alice", host="relay", argv=["sh", "-c", "id"])
    result, _ = client.request("run_privileged", "alice", host="relay", argv=["nft", "-f", "-"])
    assert result["returncode"] == 0


def test_the_services_errors_keep_their_kind(service):
    service.authority.learners = lambda: {"alice", "stopped"}
    service.authority.user = lambda uid: "stopped"
    with pytest.raises(LabNotRunningError, match="not running"):
        client.request("is_running", "stopped")


def test_no_service_says_who_starts_it(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_SERVICE", str(tmp_path / "none.sock"))
    with pytest.raises(client.ServiceError, match="labkit class serve"):
        client.request("whoami")


def test_a_learner_gets_a_certificate_of_the_lab_ca_without_its_key(service):
    """The CA's key is root's: a learner's labkit (which may not read it) asks the service,
    and gets a certificate the lab CA signed, for the host of the topology it named."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    from labkit import pki, topology

    class KeyUnreadable(pki.LabCA):  # as a learner's labkit sees the CA
        can_issue = property(lambda self: False)
    ca = KeyUnreadable()
    issued = pki.issue_for_host(ca, topology.load().host("client"))
    cert = x509.load_pem_x509_certificate(issued.cert_pem.encode())
    assert cert.issuer == ca.cert.subject
    ca.cert.public_key().verify(cert.signature, cert.tbs_certificate_bytes,
                                ec.ECDSA(cert.signature_hash_algorithm))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert topology.load().host("client").fqdn in names.get_values_for_type(x509.DNSName)


def test_a_certificate_for_a_name_outside_the_topology_is_refused(service):
    with pytest.raises(client.ServiceError, match="no host 'www.bank.example'"):
        client.request("issue", host="www.bank.example")


def test_a_user_without_a_lab_gets_no_certificate(service):
    service.authority.learners = lambda: set()
    with pytest.raises(client.ServiceError, match="has no lab"):
        client.request("issue", host="relay")


def test_a_learner_keeps_their_labs_fault_records_through_the_service(service, tmp_path,
                                                                      monkeypatch):
    """The records are root's (their store is 0700); a learner's labkit keeps those of
    their own lab through the service, and no other lab's."""
    monkeypatch.setenv("LABKIT_FAULTS", str(tmp_path / "faults"))
    rec = {"lab": "alice", "engine": "local", "fault": "expn-reopened", "at": "now", "seed": 7}
    assert client.request("fault_records", "alice", records=[rec])[0] == [rec]
    assert client.request("fault_records", "alice")[0] == [rec]
    assert (tmp_path / "faults" / "local-alice.json").stat().st_mode & 0o777 == 0o600
    with pytest.raises(client.ServiceError, match="not a fault record of lab 'alice'"):
        client.request("fault_records", "alice", records=[{**rec, "lab": "bob"}])
    with pytest.raises(client.ServiceError, match="not a fault record"):
        client.request("fault_records", "alice", records=[{**rec, "fault": "made-up"}])
    with pytest.raises(client.ServiceError, match="may not act on lab 'bob'"):
        client.request("fault_records", "bob")
    assert client.request("fault_records", "alice", records=[])[0] == []
