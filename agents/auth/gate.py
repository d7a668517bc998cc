"""The api's gate: who sent a request (bearer token or worker API key), and may they?

Requests carry ``Authorization: Bearer <credential>``. A JWT is verified against the
signing keys (the local keyring, or public keys published in the log); a worker API key
against its salted hash from the log. Revocations in the log take effect at once. The
actor of every event is the verified subject, never what the client claims.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agents.auth import apikeys
from agents.auth.errors import Forbidden, Unauthenticated
from agents.auth.keyring import Keyring
from agents.auth.roles import Role, authorize, permission_for_command
from agents.auth.signing import public_key_from_bytes
from agents.auth.tokens import Claims, authentic, check_current
from dtf_core import commands as cmds
from projections.board import Board

AUTH_HEADER = "Authorization"
API_KEY_CACHE_S = 60.0
SCRYPT_SLOTS = 2  # API key checks (scrypt) at once, in threads, off the event loop
# Tokens whose signature was checked, by their exact text: a client sends the same token
# with every request, and the signature is most of a check (~70 of 90 us). Expiry,
# revocation and a retired signing key are checked again at every use.
VERIFIED_TOKENS = 4096


class Gate:
    def __init__(
        self, board: Board, *, keyring: Keyring | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.board = board
        self.keyring = keyring
        self.clock = clock
        self._key_cache: dict[bytes, tuple[apikeys.ApiKeyRecord, float]] = {}
        self._verified: dict[str, tuple[Claims, str]] = {}  # token -> (claims, key id)
        self._scrypt: asyncio.Semaphore | None = None

    def _not_retired(self, kid: str) -> None:
        if kid in self.board.auth.retired_keys:
            raise Unauthenticated(f"token rejected: signing key {kid!r} is retired")

    def verification_key(self, kid: str) -> Ed25519PublicKey:
        self._not_retired(kid)
        raw = self.board.auth.public_keys.get(kid)
        if raw is not None:
            return public_key_from_bytes(raw)
        if self.keyring is not None:
            return self.keyring.verification_key(kid)
        raise Unauthenticated(f"token rejected: unknown signing key {kid!r}")

    async def principal_async(self, headers: Mapping[str, str] | None) -> Claims:
        """``principal``, with a worker API key's scrypt (a tenth of a second on purpose) in
        a thread, two at a time: a flood of made-up keys never stalls the event loop (the
        api, the auth callout) and an unknown key id costs nothing at all."""
        credential = _credential(headers)
        if not credential.startswith(apikeys.PREFIX + "_"):
            return self.principal(headers)
        key_id = apikeys.parse_api_key(credential)
        if key_id in self.board.auth.revoked_keys:
            raise Unauthenticated(f"api key rejected: key {key_id!r} is revoked")
        cached = self._key_cache.get(hashlib.sha256(credential.encode()).digest())
        if cached is None or cached[1] < self.clock():
            if self._lookup(key_id) is None:
                raise Unauthenticated("api key rejected: unknown key id or wrong secret")
            if self._scrypt is None:
                self._scrypt = asyncio.Semaphore(SCRYPT_SLOTS)
            async with self._scrypt:
                await asyncio.to_thread(self._api_key_claims, credential)
        return self._api_key_claims(credential)

    def principal(self, headers: Mapping[str, str] | None) -> Claims:
        credential = _credential(headers)
        if credential.startswith(apikeys.PREFIX + "_"):
            return self._api_key_claims(credential)
        return self._token_claims(credential)

    def _token_claims(self, token: str) -> Claims:
        known = self._verified.get(token)
        if known is None:
            known = authentic(token, self)  # raises unless the signature is good
            if len(self._verified) >= VERIFIED_TOKENS:
                self._verified.clear()
            self._verified[token] = known
        claims, kid = known
        self._not_retired(kid)  # retired since the signature was checked?
        return check_current(claims, now=self.clock(), revoked=self.board.auth.is_revoked)

    def _api_key_claims(self, credential: str) -> Claims:
        key_id = apikeys.parse_api_key(credential)
        if key_id in self.board.auth.revoked_keys:
            raise Unauthenticated(f"api key rejected: key {key_id!r} is revoked")
        digest = hashlib.sha256(credential.encode()).digest()
        cached = self._key_cache.get(digest)
        now = self.clock()
        if cached is None or cached[1] < now:
            record = apikeys.verify_api_key(credential, self._lookup)
            cached = (record, now + API_KEY_CACHE_S)
            self._key_cache[digest] = cached
        record = cached[0]
        return Claims(iss="dtf", aud="dtf-api", sub=record.worker_id, role=Role.WORKER,
                      iat=int(now), nbf=int(now), exp=int(now + API_KEY_CACHE_S),
                      jti=record.key_id, wid=record.worker_id)

    def _lookup(self, key_id: str) -> apikeys.ApiKeyRecord | None:
        ev = self.board.auth.api_keys.get(key_id)
        if ev is None:
            return None
        return apikeys.ApiKeyRecord(key_id=key_id, worker_id=ev.worker_id, scheme=ev.scheme,
                                    n=ev.n, r=ev.r, p=ev.p, salt=ev.salt, hash=ev.hash)

    def admit(self, headers: Mapping[str, str] | None, cmd: cmds.Command) -> Claims:
        """Authenticate, then check the role (and a worker's scope) for ``cmd``."""
        claims = self.principal(headers)
        self.authorize(claims, cmd)
        return claims

    def authorize(self, claims: Claims, cmd: cmds.Command) -> None:
        """May the authenticated ``claims`` send ``cmd`` (a worker: for itself only)?"""
        permission = permission_for_command(type(cmd).__struct_config__.tag)  # type: ignore[arg-type]
        for worker_id in _named_workers(cmd) or [None]:
            authorize(claims, permission, worker_id=worker_id)


def _credential(headers: Mapping[str, str] | None) -> str:
    value = (headers or {}).get(AUTH_HEADER, "")
    scheme, _, credential = value.partition(" ")
    if scheme != "Bearer" or not credential:
        raise Unauthenticated("unauthenticated: send 'Authorization: Bearer <token>'")
    return credential


def _named_workers(cmd: cmds.Command) -> list[str | None]:
    match cmd:
        case cmds.ReportResults():
            named: set[str] = {r.worker_id for r in cmd.reports} | {t.worker_id for t in cmd.tests}
            return list(sorted(named))
        case (cmds.RegisterWorker() | cmds.StopWorker() | cmds.GetSecrets()
              | cmds.UpdateCapabilities() | cmds.CreateApiKey()):
            return [cmd.worker_id]
    return []


__all__ = ["AUTH_HEADER", "Forbidden", "Gate", "Unauthenticated"]
