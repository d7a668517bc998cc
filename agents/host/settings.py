"""Settings: one frozen struct, read in one place, from (first wins) the command line,
``DTF_*`` environment variables, ``./dtf.toml`` or the ``[tool.dtf]`` table of
``./pyproject.toml``, the user's context (the last `dtf up`), and defaults.

Every ``DTF_*`` variable is read here, by the process's entry point (`dtf ...`), and the
values are passed down explicitly: agents and workers never read the environment.
docs/settings.md lists them.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

from msgspec import Struct

from dtf_core.errors import InvalidInput

N = TypeVar("N", int, float)
DEFAULT_SERVER = "nats://127.0.0.1:4222"


class Settings(Struct, frozen=True, kw_only=True):
    server: str = DEFAULT_SERVER
    data_dir: str = ".dtf"  # DTF_DATA_DIR, else ./.dtf where it exists, else the context's
    data_dir_given: str | None = None  # DTF_DATA_DIR alone (`dtf up` ignores the context)
    heartbeat_interval: float = 1.0
    heartbeat_misses: int = 5
    log_level: str = "INFO"
    token: str | None = None
    token_file: str | None = None
    tls_ca: str | None = None
    policy: str = "default"  # the scheduling policy (DTF_POLICY; see docs/scheduling.md)
    lead: bool = True  # DTF_LEAD=0: schedulers place without a leadership claim
    quotas: dict[str, int] = {}  # DTF_QUOTAS="alice=4,ci-bot=10": most live leases per user
    cache_dir: str = ""  # DTF_CACHE_DIR: a worker's packs and logs (~/.cache/dtf)
    always_unpack: bool = False  # DTF_ALWAYS_UNPACK=1: a worker acts as on another host
    detect_browser: bool = True  # DTF_DETECT_BROWSER=0: workers do not probe Chromium
    browser_contexts: int = 4  # DTF_BROWSER_CONTEXTS: browser tasks at once in a worker's Chromium
    browser_recycle: int = 50  # DTF_BROWSER_RECYCLE: tasks before a worker's Chromium is replaced
    faults: str = ""  # DTF_FAULTS="name@N,...": the chaos suite's crash points
    stream_replicas: int = 1  # DTF_STREAM_REPLICAS: replicas of the streams agents create


def context_path(env: Mapping[str, str] | None = None) -> Path:
    """The user's context: where `dtf up` last ran and its admin credential, so that
    clients find the stack from any directory (as kubectl's contexts). DTF_CONTEXT, or
    $XDG_CONFIG_HOME/dtf/context.json (~/.config/dtf/context.json)."""
    env = os.environ if env is None else env
    if env.get("DTF_CONTEXT"):
        return Path(env["DTF_CONTEXT"])
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "dtf" / "context.json"


def read_context(env: Mapping[str, str] | None = None) -> dict[str, str]:
    try:
        data = json.loads(context_path(env).read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def write_context(server: str, data_dir: Path, env: Mapping[str, str] | None = None,
                  http: str | None = None) -> Path:
    """What `dtf up` records for clients elsewhere: its URL, its data dir (absolute) and
    its REST API's URL."""
    path = context_path(env)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"server": server, "data_dir": str(data_dir.resolve()),
                   **({"http": http} if http else {})}, f)
    os.replace(tmp, path)
    return path


# What a settings file may set: its keys are the variables' names without DTF_, in
# lower case (``heartbeat_interval = 0.5``; ``quotas = {alice = 4}``). Credentials are not
# among them but for a file's path: a token does not belong in a file kept with the code.
FILE_KEYS = ("server", "data_dir", "heartbeat_interval", "heartbeat_misses", "log_level",
             "token_file", "tls_ca", "policy", "lead", "quotas", "cache_dir",
             "detect_browser", "browser_contexts", "browser_recycle", "stream_replicas")
OTHER_TABLES = ("ci",)  # [tool.dtf.ci]: `dtf ci`'s and the pytest plugin's own


def file_settings(directory: Path) -> dict[str, str]:
    """``dtf.toml``, or else ``[tool.dtf]`` in ``pyproject.toml``, in ``directory``, as
    the ``DTF_*`` variables they stand for."""
    table: object = {}
    source = directory / "dtf.toml"
    try:
        if source.is_file():
            table = tomllib.loads(source.read_text())
        elif (directory / "pyproject.toml").is_file():
            source = directory / "pyproject.toml"
            table = tomllib.loads(source.read_text()).get("tool", {}).get("dtf", {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInput(f"cannot read settings from {source}: {exc}") from None
    if not isinstance(table, dict):
        raise InvalidInput(f"{source}: [tool.dtf] must be a table")
    unknown = sorted(set(table) - set(FILE_KEYS) - set(OTHER_TABLES))
    if unknown:
        raise InvalidInput(f"{source}: unknown setting {', '.join(unknown)} (known: "
                           f"{', '.join(FILE_KEYS)})")
    return {f"DTF_{key.upper()}": _as_env(value) for key, value in table.items()
            if key in FILE_KEYS}


def _as_env(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def load(env: Mapping[str, str] | None = None, server: str | None = None,
         directory: Path | None = None) -> Settings:
    """``server``: a --server given on the command line. The user's context (the last
    `dtf up` on this host) applies when no server is named, or when it names that one.
    ``directory``: where a settings file is looked for (the current one)."""
    env = {**file_settings(directory or Path.cwd()),
           **(os.environ if env is None else env)}
    server = server or env.get("DTF_SERVER") or None
    context = read_context(env)
    if server is not None and context.get("server") != server:
        context = {}
    try:
        return Settings(
            server=server or context.get("server") or DEFAULT_SERVER,
            data_dir=env.get("DTF_DATA_DIR") or _data_dir(context),
            heartbeat_interval=_number(env, "DTF_HEARTBEAT_INTERVAL", 1.0, float),
            heartbeat_misses=_number(env, "DTF_HEARTBEAT_MISSES", 5, int),
            log_level=env.get("DTF_LOG_LEVEL", "INFO").upper(),
            token=env.get("DTF_TOKEN") or None,
            token_file=env.get("DTF_TOKEN_FILE") or None,
            tls_ca=env.get("DTF_TLS_CA") or None,
            policy=env.get("DTF_POLICY", "default"),
            quotas=parse_quotas(env.get("DTF_QUOTAS", "")),
            lead=env.get("DTF_LEAD", "1") != "0",
            data_dir_given=env.get("DTF_DATA_DIR") or None,
            cache_dir=env.get("DTF_CACHE_DIR") or str(Path.home() / ".cache" / "dtf"),
            always_unpack=bool(env.get("DTF_ALWAYS_UNPACK")),
            detect_browser=env.get("DTF_DETECT_BROWSER", "1") != "0",
            browser_contexts=_positive(env, "DTF_BROWSER_CONTEXTS", 4),
            browser_recycle=_positive(env, "DTF_BROWSER_RECYCLE", 50),
            faults=env.get("DTF_FAULTS", ""),
            stream_replicas=_replicas(env),
        )
    except ValueError as exc:
        raise InvalidInput(f"invalid DTF_* setting: {exc}") from None


def _number(env: Mapping[str, str], name: str, default: N, kind: type[N]) -> N:
    text = env.get(name)
    if text is None:
        return default
    try:
        return kind(text)
    except ValueError:
        raise InvalidInput(f"{name}={text!r} is not a number") from None


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    value = _number(env, name, default, int)
    if value < 1:
        raise InvalidInput(f"{name}={value}: must be at least 1")
    return value


def _replicas(env: Mapping[str, str]) -> int:
    """JetStream keeps 1 to 5 replicas of a stream; 3 on a three-node cluster."""
    n = _number(env, "DTF_STREAM_REPLICAS", 1, int)
    if not 1 <= n <= 5:
        raise InvalidInput(f"DTF_STREAM_REPLICAS={n}: JetStream keeps 1 to 5 replicas")
    return n


def _data_dir(context: Mapping[str, str]) -> str:
    """./.dtf where a stack started here (its credential or its NATS store is there), else
    the context's, else ./.dtf. A worker started here keeps only its signing key under
    ./.dtf: that does not hide the stack the user's context names."""
    here = Path(".dtf")
    if (here / "admin.jwt").exists() or (here / "nats").is_dir() \
            or not context.get("data_dir"):
        return ".dtf"
    return context["data_dir"]


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
