"""The nats-server config block that turns on auth callout for DTF (server-config mode).

The callout service logs in as ``auth_user``, the only user the config defines, in the
system account ``SYS``; every other client goes through the callout, which places it in
the global account ``$G`` where DTF's streams live. Why ``SYS`` and not an account of its
own: nats-server enables JetStream for ``$G`` only while no account but ``$G`` and the
system account is configured (a separate ``AUTH`` account turns JetStream off for ``$G``);
clients in ``$G`` cannot see ``$SYS.REQ.USER.AUTH`` (whose requests carry every client's
token); and a system-account connection may kick connections (``$SYS.REQ.SERVER.<id>.KICK``).

Passwords: nats-server accepts a bcrypt hash (``$2a$``/``$2b$``...) in place of the
plaintext (from ``nats server passwd``, or the ``bcrypt`` package, not a DTF dependency);
pass the hash here and the plaintext to the service. With a plaintext password, write the
file mode 0600 (the server logs "Plaintext passwords detected").
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from agents.auth.natsauth import nkeys

SYS_ACCOUNT = "SYS"
CLIENT_ACCOUNT = "$G"  # the ``aud`` of the user JWTs the callout issues
_SAFE = re.compile(r"[A-Za-z0-9_.$/+=-]{1,200}")


def new_password() -> str:
    return secrets.token_urlsafe(32)


def _q(value: str) -> str:
    if _SAFE.fullmatch(value) is None:
        raise ValueError("config values must be 1-200 of A-Z a-z 0-9 _ . $ / + = -")
    return f'"{value}"'


@dataclass(frozen=True)
class CalloutConfig:
    issuer_public_key: str  # the account nkey (A...) whose seed signs the callout's answers
    auth_password: str  # plaintext or bcrypt hash
    auth_user: str = "dtf-auth"
    timeout_s: float = 2.0  # how long a connecting client may wait for the callout

    def render(self) -> str:
        """The block to append to the server config (it must not define other accounts)."""
        if not nkeys.is_valid_public(self.issuer_public_key, nkeys.PREFIX_ACCOUNT):
            raise ValueError("the issuer must be a public account nkey (A...)")
        user = _q(self.auth_user)
        return (
            "accounts {\n"
            f"  {SYS_ACCOUNT} {{ users: [ {{ user: {user}, "
            f"password: {_q(self.auth_password)} }} ] }}\n"
            "}\n"
            f"system_account: {SYS_ACCOUNT}\n"
            "authorization {\n"
            f"  timeout: {self.timeout_s:g}\n"
            "  auth_callout {\n"
            f"    issuer: {_q(self.issuer_public_key)}\n"
            f"    account: {SYS_ACCOUNT}\n"
            f"    auth_users: [ {user} ]\n"
            "  }\n"
            "}\n"
        )
