"""Who is calling: bearer tokens mapped to a tenant and a role, and the server's TLS.

    request metadata ── authorization: Bearer T ──▶ Authenticator.identify ──▶ Identity
                                                     (tenant, role)          │
    auth off: tenant from x-zako-tenant, role admin ─────────────────────────┘

Tokens come from a file (one `TOKEN TENANT ROLE` per line, `#` comments) or the
`ZAKO_AUTH_TOKENS` setting (`TOKEN:TENANT:ROLE,...`). Only SHA-256 digests of tokens are
kept and compared in constant time, so a token never sits in memory or logs in the clear
after start-up. Roles: `admin` may call BroadcastGC, sees every tenant in Stats and may
cancel any task; `client` sees and cancels only its own tenant's tasks.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from zako_server.server.errors import Unauthenticated

ROLES = ("admin", "client")
TENANT_HEADER = "x-zako-tenant"
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Identity:
    """The caller, as far as the server is concerned."""

    tenant: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def parse_token_lines(lines: Iterable[str], source: str) -> list[tuple[str, str, str]]:
    """Parse `TOKEN TENANT ROLE` lines; raise ValueError naming the line."""
    entries = []
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.replace(":", " ").split()
        if len(parts) != 3:
            raise ValueError(f"{source} line {number}: expected TOKEN TENANT ROLE")
        token, tenant, role = parts
        if len(token) < 16:
            raise ValueError(f"{source} line {number}: tokens must be at least 16 characters")
        if not _TENANT.match(tenant):
            raise ValueError(f"{source} line {number}: tenant {tenant!r} is not a valid name")
        if role not in ROLES:
            raise ValueError(f"{source} line {number}: role {role!r} is not one of {ROLES}")
        entries.append((token, tenant, role))
    return entries


class Authenticator:
    """Maps request metadata to an Identity; with no tokens configured, auth is off."""

    def __init__(self, entries: Sequence[tuple[str, str, str]] = ()) -> None:
        self._by_digest = {
            _digest(token): Identity(tenant, role) for token, tenant, role in entries
        }

    @classmethod
    def from_settings(cls, tokens: str, tokens_file: str) -> Authenticator:
        entries = parse_token_lines(tokens.split(","), "ZAKO_AUTH_TOKENS") if tokens else []
        if tokens_file:
            path = Path(tokens_file)
            entries += parse_token_lines(path.read_text().splitlines(), str(path))
        return cls(entries)

    @property
    def enabled(self) -> bool:
        return bool(self._by_digest)

    def identify(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Identity:
        """The caller's identity; raises Unauthenticated when auth is on and the
        bearer token is missing or unknown."""
        values = {key: value for key, value in metadata or () if isinstance(value, str)}
        if not self.enabled:
            tenant = values.get(TENANT_HEADER, "")
            return Identity(tenant if _TENANT.match(tenant) else "anonymous", "admin")
        header = values.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("missing bearer token: send 'authorization: Bearer TOKEN'")
        digest = _digest(token.strip())
        for known, identity in self._by_digest.items():
            if hmac.compare_digest(known, digest):
                return identity
        raise Unauthenticated("invalid bearer token")


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for the server's TLS; a client CA turns on mutual TLS."""

    cert: str
    key: str
    client_ca: str = ""

    def load(self) -> tuple[bytes, bytes, bytes | None]:
        try:
            cert = Path(self.cert).read_bytes()
            key = Path(self.key).read_bytes()
            ca = Path(self.client_ca).read_bytes() if self.client_ca else None
        except OSError as exc:
            raise ValueError(f"cannot read TLS file: {exc}") from exc
        return cert, key, ca
