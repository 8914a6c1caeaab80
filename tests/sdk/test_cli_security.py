"""`zako` over TLS, mutual TLS and bearer tokens, against a real server on loopback.

The certificates come from a throwaway CA made here (the helper is a copy of the one in
tests/server/test_security.py: tests is not a package, so it cannot be imported).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from zako_sdk.cli import (
    EXIT_OK,
    EXIT_PERMISSION_DENIED,
    EXIT_UNAUTHENTICATED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    main,
)

ADMIN = "admin-token-0123456789"
ACME = "acme-client-token-0123"


def _cert(subject: str, key, issuer_name, issuer_key, *, ca: bool, server: bool = False):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer_name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "zako test CA")])
    files = {"ca.pem": _cert("zako test CA", ca_key, ca_name, ca_key, ca=True)}
    for name, server in (("server", True), ("client", False)):
        key = ec.generate_private_key(ec.SECP256R1())
        files[f"{name}.pem"] = _cert(name, key, ca_name, ca_key, ca=False, server=server)
        files[f"{name}.key"] = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return {name: folder / name for name in files}


@pytest.fixture
def secured(server_factory, pki, monkeypatch):
    """A server with mutual TLS and tokens, and the CLI flags that reach it (no token)."""
    monkeypatch.delenv("ZAKO_TOKEN", raising=False)
    monkeypatch.delenv("ZAKO_TENANT", raising=False)
    server = server_factory(tls_cert=pki["server.pem"], tls_key=pki["server.key"],
                            tls_client_ca=pki["ca.pem"],
                            auth_tokens=f"{ADMIN}:ops:admin,{ACME}:acme:client")
    return ["--target", server.target, "--tls-ca", str(pki["ca.pem"]),
            "--tls-cert", str(pki["client.pem"]), "--tls-key", str(pki["client.key"])]


def test_run_and_stats_over_mutual_tls_with_a_token(secured, tmp_path, capsys):
    task = tmp_path / "task.js"
    task.write_text("module.exports = (x) => x * 2", encoding="utf-8")
    assert main(["run", str(task), "--input", "21", "--token", ACME, *secured]) == EXIT_OK
    assert json.loads(capsys.readouterr().out) == 42
    assert main(["stats", "--json", "--token", ADMIN, *secured]) == EXIT_OK
    tenants = {t["tenant"]: t for t in json.loads(capsys.readouterr().out)["tenants"]}
    assert tenants["acme"]["accepted"] == 1  # the token decided the tenant


def test_token_from_the_environment(secured, monkeypatch, capsys):
    monkeypatch.setenv("ZAKO_TOKEN", ADMIN)
    assert main(["stats", *secured]) == EXIT_OK
    assert "WORKERS  live" in capsys.readouterr().out


def test_wrong_or_missing_token_exits_unauthenticated(secured, capsys):
    assert main(["stats", "--token", "not-a-token", *secured]) == EXIT_UNAUTHENTICATED
    err = capsys.readouterr().err
    assert err.startswith("zako: not authenticated:") and "--token" in err
    assert main(["capabilities", *secured]) == EXIT_UNAUTHENTICATED


def test_client_role_may_not_gc(secured, capsys):
    assert main(["gc", "--token", ACME, *secured]) == EXIT_PERMISSION_DENIED
    assert "permission denied" in capsys.readouterr().err


def test_server_name_override(secured, capsys):
    argv = ["capabilities", "--token", ADMIN, *secured]
    assert main([*argv, "--tls-server-name", "localhost"]) == EXIT_OK  # a SAN of the cert
    capsys.readouterr()
    assert main([*argv, "--tls-server-name", "elsewhere.example"]) == EXIT_UNAVAILABLE
    assert "cannot reach the server" in capsys.readouterr().err


def test_without_a_client_certificate_the_handshake_fails(secured, pki, capsys):
    argv = ["stats", "--token", ADMIN, "--target", secured[1], "--tls-ca", str(pki["ca.pem"])]
    assert main(argv) == EXIT_UNAVAILABLE
    assert main(["stats", "--token", ADMIN, "--target", secured[1]]) == EXIT_UNAVAILABLE


@pytest.mark.parametrize(("flags", "message"), [
    (["--tls-ca", "{missing}"], "cannot read --tls-ca"),
    (["--tls-ca", "{key}"], "is not a PEM file with a CERTIFICATE"),
    (["--tls-cert", "{cert}"], "--tls-cert and --tls-key go together"),
    (["--tls-cert", "{cert}", "--tls-key", "{cert}"], "--tls-key"),
    (["--token", "two\nlines"], "printable ASCII"),
])
def test_bad_security_options_exit_2(pki, tmp_path, flags, message, capsys):
    paths = {"missing": tmp_path / "nope.pem", "key": pki["client.key"],
             "cert": pki["client.pem"]}
    argv = ["stats", "--target", "127.0.0.1:1", *(f.format(**paths) for f in flags)]
    assert main(argv) == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_tenant_flag_and_environment(zako_server, tmp_path, monkeypatch, capsys):
    task = tmp_path / "task.js"
    task.write_text("module.exports = 1", encoding="utf-8")
    assert main(["run", str(task), "--target", zako_server.target,
                 "--tenant", "cli-flag"]) == EXIT_OK
    monkeypatch.setenv("ZAKO_TENANT", "cli-env")
    assert main(["run", str(task), "--target", zako_server.target]) == EXIT_OK
    capsys.readouterr()
    assert main(["stats", "--json", "--target", zako_server.target]) == EXIT_OK
    tenants = {t["tenant"] for t in json.loads(capsys.readouterr().out)["tenants"]}
    assert {"cli-flag", "cli-env"} <= tenants
