"""`zako` over TLS, mutual TLS and bearer tokens, against a real server on loopback.

The certificates come from the `pki` fixture of tests/conftest.py (a throwaway CA).
"""

from __future__ import annotations

import json

import pytest

from zako_sdk._cli_args import (
    EXIT_OK,
    EXIT_PERMISSION_DENIED,
    EXIT_UNAUTHENTICATED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
)
from zako_sdk.cli import main

ADMIN = "admin-token-0123456789"
ACME = "acme-client-token-0123"


@pytest.fixture
def secured(server_factory, pki, monkeypatch):
    """A server with mutual TLS and tokens, and the CLI flags that reach it (no token)."""
    monkeypatch.delenv("ZAKO_TOKEN", raising=False)
    monkeypatch.delenv("ZAKO_TENANT", raising=False)
    server = server_factory(
        tls_cert=pki["server.pem"],
        tls_key=pki["server.key"],
        tls_client_ca=pki["ca.pem"],
        auth_tokens=f"{ADMIN}:ops:admin,{ACME}:acme:client",
    )
    return [
        "--target",
        server.target,
        "--tls-ca",
        str(pki["ca.pem"]),
        "--tls-cert",
        str(pki["client.pem"]),
        "--tls-key",
        str(pki["client.key"]),
    ]


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


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tls-ca", "{missing}"], "cannot read --tls-ca"),
        (["--tls-ca", "{key}"], "is not a PEM file with a CERTIFICATE"),
        (["--tls-cert", "{cert}"], "--tls-cert and --tls-key go together"),
        (["--tls-cert", "{cert}", "--tls-key", "{cert}"], "--tls-key"),
        (["--token", "two\nlines"], "printable ASCII"),
    ],
)
def test_bad_security_options_exit_2(pki, tmp_path, flags, message, capsys):
    paths = {"missing": tmp_path / "nope.pem", "key": pki["client.key"], "cert": pki["client.pem"]}
    argv = ["stats", "--target", "127.0.0.1:1", *(f.format(**paths) for f in flags)]
    assert main(argv) == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_tenant_flag_and_environment(zako_server, tmp_path, monkeypatch, capsys):
    task = tmp_path / "task.js"
    task.write_text("module.exports = 1", encoding="utf-8")
    assert (
        main(["run", str(task), "--target", zako_server.target, "--tenant", "cli-flag"]) == EXIT_OK
    )
    monkeypatch.setenv("ZAKO_TENANT", "cli-env")
    assert main(["run", str(task), "--target", zako_server.target]) == EXIT_OK
    capsys.readouterr()
    assert main(["stats", "--json", "--target", zako_server.target]) == EXIT_OK
    tenants = {t["tenant"] for t in json.loads(capsys.readouterr().out)["tenants"]}
    assert {"cli-flag", "cli-env"} <= tenants
