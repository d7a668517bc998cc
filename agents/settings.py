"""Settings: one frozen struct from ``DTF_*`` environment variables, read in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping

from msgspec import Struct

from dtf_core.errors import InvalidInput

DEFAULT_SERVER = "nats://127.0.0.1:4222"


class Settings(Struct, frozen=True, kw_only=True):
    server: str = DEFAULT_SERVER
    data_dir: str = ".dtf"
    heartbeat_interval: float = 1.0
    heartbeat_misses: int = 5
    log_level: str = "INFO"


def load(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    try:
        return Settings(
            server=env.get("DTF_SERVER", DEFAULT_SERVER),
            data_dir=env.get("DTF_DATA_DIR", ".dtf"),
            heartbeat_interval=float(env.get("DTF_HEARTBEAT_INTERVAL", "1.0")),
            heartbeat_misses=int(env.get("DTF_HEARTBEAT_MISSES", "5")),
            log_level=env.get("DTF_LOG_LEVEL", "INFO").upper(),
        )
    except ValueError as exc:
        raise InvalidInput(f"invalid DTF_* setting: {exc}") from None
