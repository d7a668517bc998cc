"""What the api answers, one struct per command and query. The api builds these; the client
decodes each answer once, into the type its method returns (``agents/wire/client.py``).

Field names are the wire's and ``--json``'s: changing one changes what users' scripts
read. ``UNSET`` fields are left out of the answer (a compacted row's ``compacted``).
"""

from __future__ import annotations

from typing import Literal

from msgspec import UNSET, Struct, UnsetType

from dtf_core.events.worker import Capabilities


class TaskSummary(Struct, kw_only=True):
    """A row of `dtf tasks`. A task that ended long ago and was compacted keeps only its
    id and status (the other fields are None, and ``compacted`` is True)."""

    id: str
    type: str | None
    name: str
    status: str
    priority: int | None
    attempt: int | None
    worker_id: str | None
    run_id: str | None
    submitted_at: float | None
    started_at: float | None
    finished_at: float | None
    exit_code: int | None
    error: str
    last_seq: int | None  # its newest event's position in the log
    compacted: bool | UnsetType = UNSET
    group: str | None = None  # the worker group it requires, if any


class HistoryEntry(Struct, kw_only=True):
    """One event of a task, as `dtf task` shows it (an undecodable one has no actor)."""

    type: str
    seq: int
    time: float
    actor: str | UnsetType = UNSET
    data: dict[str, object] | UnsetType = UNSET


class TaskDetail(TaskSummary, kw_only=True):
    spec: dict[str, object]  # as the viewer may read it (environment values hidden)
    lease_seq: int
    history: list[HistoryEntry]


class WorkerRow(Struct, kw_only=True):
    id: str
    hostname: str
    pid: int
    session: str
    state: str
    scheduling: str  # open, cordoned or draining
    slots: int
    running: int
    capabilities: Capabilities
    last_seen: float
    load: WorkerLoad | None = None  # from its newest heartbeat (None: none yet)


class WorkerLoad(Struct, kw_only=True):
    """A worker's newest heartbeat: its host's CPU and memory use, the worker's own
    memory, and the report batches its session sent again."""

    cpu_percent: float
    memory_percent: float
    rss_mb: float
    report_resends: int


class LeaderClaim(Struct, kw_only=True):
    holder: str
    term: int
    expires_at: float


class Status(Struct, kw_only=True):
    last_seq: int
    tasks: dict[str, int]
    workers_alive: int
    workers: int
    leaders: dict[str, LeaderClaim]
    state_hash: str | UnsetType = UNSET


class Explanation(Struct, kw_only=True):
    task_id: str
    status: str
    lines: list[str]


class TailOpened(Struct, kw_only=True):
    consumer: str
    pending: int


class CancelResult(Struct, kw_only=True):
    id: str
    status: str


class WorkerAck(Struct, kw_only=True):
    worker_id: str


class Registered(Struct, kw_only=True):
    worker_id: str
    session: str
    seq: int  # the registration's sequence: the worker's lease consumer starts after it
    report_key: bytes | None = None  # the session's key for its reports' tags (ADR 0020)


class SchedulingChanged(Struct, kw_only=True):
    worker_id: str
    scheduling: Literal["open", "cordoned", "draining"]
    migrated: list[str]


class TokenGranted(Struct, kw_only=True):
    token: str
    jti: str
    exp: int


class RevokedToken(Struct, kw_only=True):
    jti: str
    revoked: bool


class CreatedApiKey(Struct, kw_only=True):
    key: str
    key_id: str
    worker_id: str


class RevokedApiKey(Struct, kw_only=True):
    key_id: str
    revoked: bool


class KeyRotated(Struct, kw_only=True):
    kid: str


class KeyRetired(Struct, kw_only=True):
    kid: str
    retired: bool


class ProjectorStatus(Struct, kw_only=True):
    """What the projector answers on ``dtf.q.projector`` (JSON): its read position, and the
    tables' row counts (``status``) or a hash of their rows (``hash``); or why not."""

    last_seq: int | UnsetType = UNSET
    counts: dict[str, int] | UnsetType = UNSET
    hash: str | UnsetType = UNSET
    error: str | UnsetType = UNSET


class Durations(Struct, kw_only=True):
    """The median passing duration of each test asked about (``dtf.q.test_durations``)."""

    ok: bool
    result: dict[str, float] | UnsetType = UNSET
    error: str | UnsetType = UNSET
    retryable: bool = False  # refused for now (the projection catching up): ask again


class FlakyTest(Struct, kw_only=True):
    """A test that both passed and failed within the window, and where it failed."""

    test_id: str
    passed: int
    failed: int
    failed_on: list[str]  # worker ids
    last_seen: float  # Unix time of its newest result


class FlakyTests(Struct, kw_only=True):
    """What the projector answers on ``dtf.q.flaky_tests``."""

    ok: bool
    result: list[FlakyTest] | UnsetType = UNSET
    error: str | UnsetType = UNSET
    retryable: bool = False  # refused for now (the projection catching up): ask again


class RunSummary(Struct, kw_only=True):
    """A run (a batch of tasks: `dtf run pytest`, a named submission) and where its tasks
    are: their count by status."""

    id: str
    name: str
    created_at: float
    actor: str
    tasks: int
    statuses: dict[str, int]


Scalar = str | int | float | bool | None
Cell = Scalar | list[Scalar]


class ResultsQuery(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True,
                   omit_defaults=True):
    """``dtf.q.results``: benchmark results filtered by these (all optional; times are Unix
    seconds), or ``sql``: one read-only SELECT over the tables (docs/projections.md)."""

    model: str | None = None
    hardware: str | None = None
    precision: str | None = None
    batch_size: int | None = None
    commit: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    workload: str | None = None
    since: float | None = None
    until: float | None = None
    sql: str | None = None
    limit: int = 1000


class ResultsTable(Struct, kw_only=True):
    """What the projector answers on ``dtf.q.results``: the columns and rows (times as ISO
    8601 UTC strings); ``truncated`` when more rows matched than ``limit``."""

    ok: bool
    columns: list[str] = []
    rows: list[list[Cell]] = []
    truncated: bool = False
    error: str | UnsetType = UNSET
    retryable: bool = False  # refused for now (the projection catching up): ask again
