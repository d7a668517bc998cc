"""Settings: one frozen struct from ``DTF_*`` environment variables, read in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from msgspec import Struct

from dtf_core.errors import InvalidInput

DEFAULT_SERVER = "nats://127.0.0.1:4222"


class Settings(Struct, frozen=True, kw_only=True):
    server: str = DEFAULT_SERVER
    data_dir: str = ".dtf"
    heartbeat_interval: float = 1.0
    heartbeat_misses: int = 5
    log_level: str = "INFO"
    token: str | None = None
    token_file: str | None = None
    tls_ca: str | None = None
    policy: str = "default"  # the scheduling policy (DTF_POLICY; see docs/scheduling.md)
    lead: bool = True  # DTF_LEAD=0: schedulers place without a leadership claim
    quotas: dict[str, int] = {}  # DTF_QUOTAS="alice=4,ci-bot=10": most live leases per user


def load(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    try:
        return Settings(
            server=env.get("DTF_SERVER", DEFAULT_SERVER),
            data_dir=env.get("DTF_DATA_DIR", ".dtf"),
            heartbeat_interval=float(env.get("DTF_HEARTBEAT_INTERVAL", "1.0")),
            heartbeat_misses=int(env.get("DTF_HEARTBEAT_MISSES", "5")),
            log_level=env.get("DTF_LOG_LEVEL", "INFO").upper(),
            token=env.get("DTF_TOKEN") or None,
            token_file=env.get("DTF_TOKEN_FILE") or None,
            tls_ca=env.get("DTF_TLS_CA") or None,
            policy=env.get("DTF_POLICY", "default"),
            quotas=parse_quotas(env.get("DTF_QUOTAS", "")),
            lead=env.get("DTF_LEAD", "1") != "0",
        )
    except ValueError as exc:
        raise InvalidInput(f"invalid DTF_* setting: {exc}") from None


def parse_quotas(text: str) -> dict[str, int]:
    quotas: dict[str, int] = {}
    for item in filter(None, (i.strip() for i in text.split(","))):
        user, sep, limit = item.partition("=")
        if not sep or not user.strip() or not limit.strip().isdigit():
            raise InvalidInput(f"invalid DTF_QUOTAS entry {item!r}: use user=N,other=M")
        quotas[user.strip()] = int(limit)
    return quotas


def credential(settings: Settings, token_file: str | None = None) -> str | None:
    """The credential to present: ``--token-file``, then DTF_TOKEN, then DTF_TOKEN_FILE,
    then the local admin credential that `dtf up` wrote into the data dir."""
    path = token_file or (None if settings.token else settings.token_file)
    if path is None and settings.token:
        return settings.token.strip()
    if path is None:
        default = Path(settings.data_dir) / "admin.jwt"
        if not default.exists():
            return None
        path = str(default)
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise InvalidInput(f"cannot read credential file {path}: {exc.strerror}") from None


def tls_ca(settings: Settings) -> str | None:
    """The CA to verify a ``tls://`` server with: DTF_TLS_CA, or the one `dtf up --tls`
    made in the data dir."""
    if settings.tls_ca:
        return settings.tls_ca
    default = Path(settings.data_dir) / "tls" / "ca.pem"
    return str(default) if default.exists() else None
