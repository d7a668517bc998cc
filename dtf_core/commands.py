"""Commands and queries sent to the api agent over request/reply, and their replies."""

from __future__ import annotations

from typing import ClassVar, Literal

import msgspec
from msgspec import Struct

from dtf_core.events.bench import ImportedResult
from dtf_core.events.tests import TestCase
from dtf_core.events.worker import Capabilities
from dtf_core.spec import TaskSpec
from dtf_core.task import Report


class CommandBase(Struct, frozen=True, kw_only=True, tag_field="cmd"):
    actor: str = "local"


class SubmitTasks(CommandBase, frozen=True, kw_only=True, tag="submit"):
    tasks: list[TaskSpec]
    run_id: str | None = None
    run_name: str = ""


class CancelTask(CommandBase, frozen=True, kw_only=True, tag="cancel"):
    task_id: str
    reason: str = "cancelled by user"


class TestBatch(Struct, frozen=True, kw_only=True):
    """Per-test results of one attempt of a test task, reported under its fencing token."""
    __test__: ClassVar[bool] = False  # not a pytest test class

    task_id: str
    worker_id: str
    attempt: int
    fencing: int
    batch: int
    cases: list[TestCase]


class ReportResults(CommandBase, frozen=True, kw_only=True, tag="report"):
    """``signature``: the worker's Ed25519 signature over the reports (one per batch);
    ``mac``: instead, its session's tag over them (ADR 0020)."""

    reports: list[Report]
    signature: bytes | None = None
    mac: bytes | None = None
    tests: list[TestBatch] = []  # written before ``reports``, in the same atomic batch

    def signed_part(self) -> object:
        """What the worker signs: the reports, and the test results when there are any."""
        return self.reports if not self.tests else [self.reports, self.tests]


class ImportResults(CommandBase, frozen=True, kw_only=True, tag="import_results"):
    """Benchmark results measured elsewhere; ``import_id`` is the hash of the source file."""

    import_id: str
    source: str
    results: list[ImportedResult]
    run_id: str | None = None


class Imported(Struct, frozen=True, kw_only=True):
    import_id: str
    results: int
    already: bool = False  # imported before: nothing written now


class RegisterWorker(CommandBase, frozen=True, kw_only=True, tag="register"):
    worker_id: str
    session: str
    hostname: str
    pid: int
    slots: int
    capabilities: Capabilities
    signing_key: bytes | None = None  # the public half of the key its reports are signed with
    heartbeat_interval: float | None = None  # the seconds between its heartbeats


class UpdateCapabilities(CommandBase, frozen=True, kw_only=True, tag="update_capabilities"):
    """What a registered worker found later (a browser's features)."""

    worker_id: str
    session: str
    capabilities: Capabilities


class StopWorker(CommandBase, frozen=True, kw_only=True, tag="stop_worker"):
    worker_id: str
    session: str


ManageAction = Literal["cordon", "drain", "uncordon"]


class ManageWorker(CommandBase, frozen=True, kw_only=True, tag="manage_worker"):
    """cordon: no new leases; drain: cordon, and requeue its leases not started yet;
    uncordon: open again."""

    worker_id: str
    action: ManageAction
    reason: str = ""


class ExplainTask(CommandBase, frozen=True, kw_only=True, tag="explain_task"):
    task_id: str


class IssueToken(CommandBase, frozen=True, kw_only=True, tag="issue_token"):
    sub: str
    role: str
    ttl_s: float = 3600.0
    worker_id: str | None = None


class RevokeToken(CommandBase, frozen=True, kw_only=True, tag="revoke_token"):
    jti: str
    reason: str = ""


class RefreshToken(CommandBase, frozen=True, kw_only=True, tag="refresh_token"):
    ttl_s: float = 3600.0


class CreateApiKey(CommandBase, frozen=True, kw_only=True, tag="create_apikey"):
    worker_id: str


class RevokeApiKey(CommandBase, frozen=True, kw_only=True, tag="revoke_apikey"):
    key_id: str
    reason: str = ""


class RotateKey(CommandBase, frozen=True, kw_only=True, tag="rotate_key"):
    pass


class RetireKey(CommandBase, frozen=True, kw_only=True, tag="retire_key"):
    kid: str


class ListTasks(CommandBase, frozen=True, kw_only=True, tag="list_tasks"):
    ids: list[str] | None = None
    status: str | None = None
    run_id: str | None = None
    limit: int = 100
    min_seq: int = 0  # answer once the api's fold has reached this stream sequence
    # a page after another (newest first): live tasks last changed before ``before_seq``,
    # or, past every live one, the compacted tasks after ``after_compacted``
    before_seq: int | None = None
    after_compacted: str | None = None


class GetTask(CommandBase, frozen=True, kw_only=True, tag="get_task"):
    task_id: str


class ListWorkers(CommandBase, frozen=True, kw_only=True, tag="list_workers"):
    """``heartbeats``: each worker's newest heartbeat too (its last sign of life and
    load: one read of the heartbeat stream per worker); the counts need none."""

    heartbeats: bool = True


class ListRuns(CommandBase, frozen=True, kw_only=True, tag="list_runs"):
    """Runs, newest first; ``before``: the page after one that ended at that run id."""

    limit: int = 100
    before: str | None = None


class GetStatus(CommandBase, frozen=True, kw_only=True, tag="status"):
    state_hash: bool = False  # also the hash of the folded state, at ``last_seq`` (audits)


class GetSecrets(CommandBase, frozen=True, kw_only=True, tag="get_secrets"):
    """The secret environment of a task, for the worker holding its lease ``fencing``."""

    worker_id: str
    task_id: str
    fencing: int


class OpenTail(CommandBase, frozen=True, kw_only=True, tag="open_tail"):
    """Open a consumer of ``stream`` delivering ``filters`` from ``start_seq`` into
    ``deliver``, which must be in the requester's own inbox. Clients do not create
    consumers themselves (ADR 0008)."""

    stream: str
    filters: list[str]
    start_seq: int = 1
    deliver: str


Command = (
    SubmitTasks
    | ImportResults
    | CancelTask
    | ReportResults
    | RegisterWorker
    | UpdateCapabilities
    | StopWorker
    | IssueToken
    | RevokeToken
    | RefreshToken
    | CreateApiKey
    | RevokeApiKey
    | RotateKey
    | RetireKey
    | ListTasks
    | GetTask
    | ListWorkers
    | ListRuns
    | GetStatus
    | ManageWorker
    | ExplainTask
    | OpenTail
    | GetSecrets
)


NIL = msgspec.Raw(b"\xc0")  # msgpack's nil: the result of an error reply


class Reply(Struct, frozen=True, kw_only=True):
    """The api's answer. ``result`` stays encoded until the client decodes it into the
    type its call returns (``dtf_core.replies``): decoded once, at the edge."""

    ok: bool
    result: msgspec.Raw = NIL
    error: str = ""
    code: Literal[
        "", "invalid", "not_found", "refused", "conflict", "unavailable", "internal",
        "unauthenticated", "forbidden",
    ] = ""


class SubmitResult(Struct, frozen=True, kw_only=True):
    ids: list[str]
    run_id: str | None = None
    created: int = 0


class ReportOutcome(Struct, frozen=True, kw_only=True):
    task_id: str
    applied: bool
    reason: str = ""


_cmd_encoder = msgspec.msgpack.Encoder()
_cmd_decoder = msgspec.msgpack.Decoder(Command)
_reply_decoder = msgspec.msgpack.Decoder(Reply)


def encode(obj: Command | Reply) -> bytes:
    return _cmd_encoder.encode(obj)


def decode_command(data: bytes) -> Command:
    try:
        cmd: Command = _cmd_decoder.decode(data)  # typed or Any, by msgspec's version
        return cmd
    except RecursionError:  # free-form fields (a spec's config) can nest without limit
        raise msgspec.DecodeError("command is nested too deeply") from None


def answer(value: object) -> Reply:
    """A successful reply carrying ``value`` (a reply struct, or a list of them)."""
    return Reply(ok=True, result=msgspec.Raw(_cmd_encoder.encode(value)))


def decode_reply(data: bytes) -> Reply:
    return _reply_decoder.decode(data)
