"""The task specification: the seed's task JSON, strictly typed.

Unknown fields and wrong types are refused with the field's path (msgspec names it).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import Meta, Struct

from dtf_core.errors import InvalidInput
from dtf_core.ids import validate_id

TaskType = Literal["command", "test", "benchmark", "browser", "noop"]
RUNNABLE_TYPES: frozenset[str] = frozenset({"benchmark", "browser", "command", "noop", "test"})
MAX_SPEC_BYTES = 64 * 1024
MAX_ARGV = 4096

Priority = Annotated[int, Meta(ge=-1_000_000, le=1_000_000)]
Seconds = Annotated[float, Meta(gt=0, le=30 * 24 * 3600)]
Label = Annotated[str, Meta(max_length=256)]
IdStr = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class Requirements(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True,
                   omit_defaults=True, gc=False):
    hardware: tuple[Annotated[str, Meta(max_length=64)], ...] = ()
    min_memory_gb: Annotated[float, Meta(ge=0)] = 0.0
    min_cuda_compute: Annotated[float, Meta(ge=0)] | None = None
    worker_group: Annotated[str, Meta(max_length=64)] | None = None
    # Reserved per lease: a worker runs tasks whose min_memory_gb and gpus add up to no
    # more than it has (and declines a lease that would overcommit it).
    gpus: Annotated[int, Meta(ge=0, le=64)] = 0
    # A preference, not a requirement: placed elsewhere when another worker fits (reruns).
    avoid_workers: tuple[Annotated[str, Meta(max_length=128)], ...] = ()
    # Nothing else runs on the worker while this task does (a benchmark, unless shared).
    exclusive: bool = False
    # Only workers whose hardware fingerprint is this (`dtf rerun --equivalent-host`).
    fingerprint: Annotated[str, Meta(pattern=r"^[0-9a-f]{16,64}$")] | None = None


class RetryPolicy(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True,
                  omit_defaults=True, gc=False):
    max_retries: Annotated[int, Meta(ge=0, le=100)] = 0
    retry_delay_seconds: Annotated[float, Meta(ge=0, le=24 * 3600)] = 0.0
    backoff: Annotated[float, Meta(ge=1, le=10)] = 1.0  # exponential factor per retry
    max_delay_seconds: Annotated[float, Meta(ge=0, le=24 * 3600)] | None = None
    jitter: Annotated[float, Meta(ge=0, le=1)] = 0.0  # ± this fraction of the delay


EnvName = Annotated[str, Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]


class CommandConfig(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    argv: Annotated[tuple[str, ...], Meta(min_length=1, max_length=MAX_ARGV)]
    cwd: str | None = None
    env: dict[str, str] = {}
    # Sealed by the api as it accepts the task: the log never holds these values in clear
    # (agents/auth/secrets.py); the worker holding the lease gets them from the api.
    secret_env: dict[EnvName, str] = {}
    # Where ``cwd`` is: the submitter's host; on another host (or where ``cwd`` is gone),
    # the task runs in a copy of ``code``, the pack of ``cwd``'s tree (agents/worker/packs.py).
    host: str = ""
    code: Annotated[str, Meta(pattern=r"^[0-9a-f]{64}$")] | None = None


MAX_NODE_IDS = 20_000
# pytest sets no limit; real suites have parametrised ids of over 5,000 characters
NODE_ID_MAX = 32 * 1024
NodeId = Annotated[str, Meta(min_length=1, max_length=NODE_ID_MAX)]
RelPath = Annotated[str, Meta(min_length=1, max_length=1024)]
Digest = Annotated[str, Meta(pattern=r"^[0-9a-f]{64}$")]


class TestConfig(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A chunk of a pytest run: the tests to run, named inline (``node_ids``, for a few) or
    as chunk ``chunk`` of the run's plan, stored in the object store under
    ``plan-<plan>`` (so that a run of any size fits: a task spec stays small). The chunk
    may be submitted before the plan is written: the worker starts its session and waits.

    The worker's session is pytest run as the submitter ran it: ``args`` (DTF's own
    options removed) in ``invocation_dir``, with the submitter's ``env`` for pytest
    (``PYTEST_ADDOPTS`` and the like) and ``path0`` when the submitter's directory was first
    on ``sys.path`` (``python -m pytest``). ``code`` is the content hash of the submitter's
    tree; a worker on the submitter's host (``host``) runs ``rootdir`` in place, any other
    unpacks the pack stored under ``code`` and runs the same relative directory in it."""
    __test__: ClassVar[bool] = False  # not a pytest test class

    node_ids: Annotated[tuple[NodeId, ...], Meta(max_length=MAX_NODE_IDS)] = ()
    plan: IdStr | None = None
    chunk: Annotated[int, Meta(ge=0, le=1_000_000)] = 0
    args: Annotated[tuple[Annotated[str, Meta(max_length=8192)], ...],
                    Meta(max_length=1024)] = ()
    invocation_dir: str = ""
    rootdir: str = ""
    host: str = ""
    code: Digest | None = None
    packed: bool = False
    env: dict[Annotated[str, Meta(pattern=r"^(PYTEST_[A-Z_]{1,64}|PYTHONPATH|PYTHONHASHSEED)$")],
              Annotated[str, Meta(max_length=8192)]] = {}
    path0: bool = False
    markup: bool = False  # the submitter's terminal: failure explanations are built for it
    highlight: bool = False
    width: Annotated[int, Meta(ge=10, le=10_000)] = 80
    workers: Annotated[int, Meta(ge=1, le=1_000_000)] = 1  # PYTEST_XDIST_WORKER_COUNT
    run: Annotated[str, Meta(max_length=64)] = ""  # PYTEST_XDIST_TESTRUNUID


class TaskSpec(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True,
               omit_defaults=True, gc=False):
    type: TaskType
    id: IdStr | None = None
    name: Label = ""
    priority: Priority = 0
    config: dict[str, Any] = {}
    requirements: Requirements = Requirements()
    timeout_seconds: Seconds | None = None
    retry_policy: RetryPolicy = RetryPolicy()
    dependencies: tuple[IdStr, ...] = ()  # hard: a failed one fails this task
    soft_dependencies: tuple[IdStr, ...] = ()  # wait for them to end, whatever the outcome
    idempotency_key: Annotated[str, Meta(min_length=1, max_length=256)] | None = None
    # Unix time: earliest deadline first within a priority; flagged when missed in the queue.
    deadline: Annotated[float, Meta(ge=0)] | None = None


_spec_decoder = msgspec.json.Decoder(TaskSpec | list[TaskSpec])


WORKLOADS = ("numpy-matmul", "python-startup", "disk-io", "torch-matmul")
Precision = Literal["fp16", "bf16", "fp32", "fp64", "int8"]
MAX_BENCH_SAMPLES = 20_000  # iterations x batch sizes: what one result may carry


class BenchmarkConfig(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The seed's ``benchmark`` config plus how to run it: ``workload`` (a built-in),
    ``callable`` (``pkg.module:function``, called with the batch size and precision) or
    ``command`` (an argv printing a JSON line of metrics per iteration). With none, the
    built-in ``torch-matmul`` runs where the task is for a GPU and torch is there, else
    ``numpy-matmul``. ``model`` is a label (results are filtered by it)."""

    model: Annotated[str, Meta(max_length=256)] = ""
    batch_sizes: Annotated[tuple[Annotated[int, Meta(ge=1, le=1_000_000)], ...],
                           Meta(min_length=1, max_length=64)] = (1,)
    precision: Precision = "fp32"
    iterations: Annotated[int, Meta(ge=1, le=MAX_BENCH_SAMPLES)] = 10
    warmup: Annotated[int, Meta(ge=0, le=10_000)] = 1
    workload: Literal["numpy-matmul", "python-startup", "disk-io", "torch-matmul"] | None = None
    callable: Annotated[str, Meta(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")] | None = None
    command: Annotated[tuple[str, ...], Meta(min_length=1, max_length=MAX_ARGV)] | None = None
    cwd: str | None = None
    env: dict[EnvName, str] = {}
    host: str = ""
    code: Annotated[str, Meta(pattern=r"^[0-9a-f]{64}$")] | None = None
    shared: bool = False  # run beside other tasks (a benchmark has its worker to itself)
    commit: Annotated[str, Meta(max_length=64)] = ""  # the code's commit, when known


def benchmark_config(spec: TaskSpec) -> BenchmarkConfig:
    return msgspec.convert(spec.config, BenchmarkConfig)


def _validate_benchmark(spec: TaskSpec) -> TaskSpec:
    try:
        cfg = benchmark_config(spec)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"invalid benchmark config: {exc} (in `$.config`)") from None
    chosen = [k for k in ("workload", "callable", "command") if getattr(cfg, k) is not None]
    if len(chosen) > 1:
        raise InvalidInput("invalid benchmark config: choose one of `workload`, `callable` "
                           f"and `command`, not {' and '.join(chosen)}")
    if cfg.iterations * len(cfg.batch_sizes) > MAX_BENCH_SAMPLES:
        raise InvalidInput(f"invalid benchmark config: iterations x batch sizes is over "
                           f"{MAX_BENCH_SAMPLES}")
    if any("\x00" in a for a in (*(cfg.command or ()), *cfg.env.values(), cfg.cwd or "")):
        raise InvalidInput("invalid benchmark config: a NUL byte in command, env or cwd")
    if cfg.shared or spec.requirements.exclusive:
        return spec
    return msgspec.structs.replace(
        spec, requirements=msgspec.structs.replace(spec.requirements, exclusive=True))


def command_config(spec: TaskSpec) -> CommandConfig:
    """The typed config of a command task (validated at submit, so this cannot fail later)."""
    return msgspec.convert(spec.config, CommandConfig)


def test_config(spec: TaskSpec) -> TestConfig:
    return msgspec.convert(spec.config, TestConfig)


def check_relative(path: str, what: str) -> str:
    """A path inside the run's root: relative, no ``..``, no NUL, no backslash tricks."""
    parts = path.replace("\\", "/").split("/")
    if (not path or "\x00" in path or path.startswith(("/", "~")) or ".." in parts
            or (len(path) > 1 and path[1] == ":")):
        raise InvalidInput(f"invalid {what} {path!r}: must be a relative path inside the root")
    return path


def _validate_test(spec: TaskSpec) -> None:
    try:
        cfg = test_config(spec)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"invalid test config: {exc} (in `$.config`)") from None
    if bool(cfg.node_ids) == (cfg.plan is not None):
        raise InvalidInput("invalid test config: name the tests by `node_ids` or by a `plan`"
                           " and its `chunk`, not both")
    for node in cfg.node_ids:
        check_relative(node.split("::", 1)[0], "test node id")
    if any("\x00" in a for a in (*cfg.args, *cfg.env.values(), cfg.invocation_dir)):
        raise InvalidInput("invalid test config: a NUL byte in args, env or invocation_dir")
    if cfg.packed and cfg.code is None:
        raise InvalidInput("invalid test config: a packed tree needs its `code` hash")


def validate_spec(spec: TaskSpec) -> TaskSpec:
    """Check what the schema alone cannot: per-type config and runnable types."""
    if spec.type not in RUNNABLE_TYPES:
        raise InvalidInput(f"task type {spec.type!r} is not supported: 'benchmark', "
                           "'browser', 'command', 'test' and 'noop' run")
    if spec.type == "benchmark":
        spec = _validate_benchmark(spec)
    elif spec.type == "browser":
        from dtf_core.browser_spec import validate_browser  # it builds on this module

        spec = validate_browser(spec)
    elif spec.type == "test":
        _validate_test(spec)
    elif spec.type == "command":
        try:
            cfg = command_config(spec)
        except msgspec.ValidationError as exc:
            raise InvalidInput(f"invalid command config: {exc} (in `$.config`)") from None
        if any("\x00" in a for a in cfg.argv):
            raise InvalidInput("invalid command config: argv contains a NUL byte")
    elif spec.config:
        raise InvalidInput("a 'noop' task takes no config")
    if spec.id is not None:
        validate_id(spec.id, "task id")  # the schema's `$` lets a trailing newline through
    for dep in (*spec.dependencies, *spec.soft_dependencies):
        validate_id(dep, "dependency id")
    if len(msgspec.msgpack.encode(spec)) > MAX_SPEC_BYTES:
        raise InvalidInput(f"task spec is larger than {MAX_SPEC_BYTES} bytes")
    return spec


def parse_specs(data: bytes | str) -> list[TaskSpec]:
    """Parse the seed's task JSON (one object or a list) into validated specs."""
    try:
        parsed = _spec_decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"invalid task JSON: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"invalid JSON: {exc}") from None
    specs = parsed if isinstance(parsed, list) else [parsed]
    if not specs:
        raise InvalidInput("invalid task JSON: the list is empty")
    return [validate_spec(s) for s in specs]


def all_dependencies(spec: TaskSpec) -> tuple[str, ...]:
    return (*spec.dependencies, *spec.soft_dependencies)


def command_spec(argv: list[str], **fields: Any) -> TaskSpec:
    """A command task from an argv list, validated like any other submission."""
    try:
        spec = msgspec.convert({"type": "command", "config": {"argv": argv}, **fields}, TaskSpec)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"invalid task: {exc}") from None
    return validate_spec(spec)
