"""Secret task environment (`dtf submit --secret-env NAME`): values that never enter the
log in clear (ADR 0008).

The api seals each value as it accepts the task, with the stack's secrets key (AES-256-GCM,
``keys/secrets.key``, 0600, made once by the first `dtf up`), bound to the task id and the
variable's name; the event log holds only the sealed text. The worker that holds the
task's lease asks the api for the values (``dtf.q.secrets``, with its fencing token) and
gets them into its own inbox, for that attempt only.

Sealing is deterministic (the nonce is derived from the key, the task, the name and the
value, as in SIV constructions), so that a client sending a submission again gets the same
spec and the same task rather than a conflict. Equal values of the same task and name
seal equally; nothing else is revealed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path
from typing import Any

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agents.auth import keyfiles
from dtf_core.errors import DTFError, InvalidInput
from dtf_core.spec import CommandConfig, TaskSpec

SECRETS_FILE = "secrets.key"
SEALED = "dtf-sealed:v1:"


class Sealer:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise DTFError("the secrets key must be 32 bytes")
        self._enc = hmac.digest(key, b"dtf secrets: encryption", hashlib.sha256)
        self._nonce = hmac.digest(key, b"dtf secrets: nonce", hashlib.sha256)
        self._reports = hmac.digest(key, b"dtf secrets: report keys", hashlib.sha256)

    @classmethod
    def load_or_create(cls, directory: Path) -> Sealer:
        path = Path(directory) / SECRETS_FILE
        if not (path.exists() or path.is_symlink()):
            keyfiles.ensure_private_dir(path.parent)
            keyfiles.create_secret_file(path, base64.b64encode(os.urandom(32)) + b"\n")
        try:
            key = base64.b64decode(keyfiles.read_secret_file(path).strip(), validate=True)
        except ValueError:
            raise DTFError(f"{path} is not a secrets key (base64 of 32 bytes)") from None
        return cls(key)

    def report_key(self, worker_id: str, session: str) -> bytes:
        """The key a worker session authenticates its reports with (ADR 0020): the same on
        every control plane holding this secrets key, never written to the log."""
        return hmac.digest(self._reports, f"{worker_id}\x00{session}".encode(),
                           hashlib.sha256)

    @staticmethod
    def _aad(task_id: str, name: str) -> bytes:
        return f"{task_id}\x00{name}".encode()

    def seal(self, task_id: str, name: str, value: str) -> str:
        aad = self._aad(task_id, name)
        nonce = hmac.digest(self._nonce, aad + b"\x00" + value.encode(), hashlib.sha256)[:12]
        sealed = AESGCM(self._enc).encrypt(nonce, value.encode(), aad)
        return SEALED + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, task_id: str, name: str, sealed: str) -> str:
        try:
            raw = base64.urlsafe_b64decode(sealed.removeprefix(SEALED))
            plain = AESGCM(self._enc).decrypt(raw[:12], raw[12:], self._aad(task_id, name))
        except (ValueError, InvalidTag):
            raise DTFError(f"the secret {name} of task {task_id} cannot be opened with this "
                           "stack's secrets key") from None
        return plain.decode()


def secret_names(spec: TaskSpec) -> list[str]:
    if spec.type != "command":
        return []
    return sorted(dict(spec.config.get("secret_env") or {}))


def seal_spec(sealer: Sealer | None, task_id: str, spec: TaskSpec) -> TaskSpec:
    """The spec as the log keeps it: every secret value sealed (whatever the client sent:
    a client cannot hand in another task's sealed text)."""
    if not secret_names(spec):
        return spec
    if sealer is None:
        raise InvalidInput("this stack keeps no secrets key (`dtf up --insecure-dev`): "
                           "--secret-env needs a secured stack")
    cfg = msgspec.convert(spec.config, CommandConfig)
    clash = set(cfg.env) & set(cfg.secret_env)
    if clash:
        raise InvalidInput(f"{', '.join(sorted(clash))}: both --env and --secret-env")
    sealed = {name: sealer.seal(task_id, name, value)
              for name, value in cfg.secret_env.items()}
    config: dict[str, Any] = {**spec.config, "secret_env": sealed}
    return msgspec.structs.replace(spec, config=config)


def open_secrets(sealer: Sealer, task_id: str, spec: TaskSpec) -> dict[str, str]:
    cfg = msgspec.convert(spec.config, CommandConfig)
    return {name: sealer.open(task_id, name, value) for name, value in cfg.secret_env.items()}
