"""DTF's NATS subject permissions per role, as data the auth callout turns into user JWTs.

Everything not allowed is denied by the server. Each principal gets its own inbox prefix
(``_INBOX.<role>.<principal>``) and may subscribe only below it, so it cannot read other
clients' replies; clients must connect with ``inbox_prefix=perms.inbox_prefix``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from dtf_core import subjects
from dtf_core.ids import validate_id
from dtf_core.subjects import subject_matches

ROLES = ("worker", "reader", "manager", "admin", "agent", "enroller", "autoscaler")
EVENTS = subjects.EVENTS_STREAM
# The server answers with the caller's own account, user and permissions: harmless, and
# the way a client (or a test) sees what the callout granted it.
USER_INFO = "$SYS.REQ.USER.INFO"
# Every role may renew its own token (agents/wire/client.py sends RefreshToken there).
TOKEN_REFRESH = "dtf.cmd.auth.refresh"
APIKEY_CREATE = "dtf.cmd.auth.apikey_create"


@dataclass(frozen=True)
class Permissions:
    """What one connection may publish and subscribe to; the server enforces it."""

    role: str
    principal: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    publish_deny: tuple[str, ...] = ()
    subscribe_deny: tuple[str, ...] = ()
    inbox_prefix: str = "_INBOX"
    expires: int | None = None  # unix seconds; the server closes the connection then

    def may_publish(self, subject: str) -> bool:
        return _allowed(subject, self.publish, self.publish_deny)

    def may_subscribe(self, subject: str) -> bool:
        return _allowed(subject, self.subscribe, self.subscribe_deny)

    def until(self, expires: int | None) -> Permissions:
        return replace(self, expires=expires)


def _allowed(subject: str, allow: tuple[str, ...], deny: tuple[str, ...]) -> bool:
    return any(subject_matches(p, subject) for p in allow) and not any(
        subject_matches(p, subject) for p in deny
    )


def inbox_prefix(role: str, principal: str) -> str:
    if role == "worker":
        return subjects.worker_inbox(principal)
    return f"_INBOX.{role}.{validate_id(principal, 'principal')}"


def reply_target(reply: str | None, role: str | None, principal: str | None) -> str | None:
    """Where an agent may answer a request: into the verified requester's own inbox, and
    nowhere else (a requester names the reply subject, and an answer published onto
    ``dtf.evt.>``, ``$JS.>`` or another's inbox would act as whatever is there). ``role``
    None: a stack without authentication, where any inbox will do. Returns None when the
    request gets no answer."""
    if not reply or any(c in reply for c in " *>\t\r\n"):
        return None
    if role is None or role in ("admin", "agent"):
        prefix = "_INBOX."
    elif role == "worker":
        prefix = subjects.worker_inbox(principal or "") + "."
        if reply.startswith(prefix + "lease."):  # its own lease deliveries: never
            return None
    else:
        prefix = inbox_prefix(role, principal or "") + "."
    return reply if reply.startswith(prefix) and len(reply) > len(prefix) else None


def consumer_subjects(stream: str, consumer: str) -> tuple[str, ...]:
    """Publish rights to use (not create, change or delete) exactly one JetStream consumer.
    Creating it is the api's job: a client allowed to create its own consumer chooses its
    filter, and so could read any subject of the stream."""
    api = "$JS.API.CONSUMER"
    return (
        f"{api}.INFO.{stream}.{consumer}",
        f"{api}.MSG.NEXT.{stream}.{consumer}",
        f"$JS.ACK.{stream}.{consumer}.>",
        f"$JS.ACK._.*.{stream}.{consumer}.>",  # the v2 format: $JS.ACK.<domain or _>.<acc hash>...
        f"$JS.FC.{stream}.{consumer}.*",  # flow-control replies of push consumers
        f"$JS.FC._.*.{stream}.{consumer}.*",
    )


def log_readers() -> tuple[str, ...]:
    """Reading the event log and task output (`dtf wait`, `dtf logs -f`) through consumers
    the api opens into the client's inbox (agents/log/tail.py): no client creates,
    inspects or deletes a consumer (the server would deliver wherever its creator said).
    Flow-control answers, single messages, and stream info (sizes and sequences, no
    content: whether a tail is short enough for one covering filter)."""
    out: list[str] = []
    for stream in (EVENTS, subjects.LOGS_STREAM):
        out += [f"$JS.API.STREAM.MSG.GET.{stream}", f"$JS.API.STREAM.INFO.{stream}",
                f"$JS.FC.{stream}.>"]
    return tuple(out)


def object_reader(bucket: str) -> tuple[str, ...]:
    """Reading objects of one JetStream object store bucket, by message gets answered into
    the reader's own inbox (agents/nats/objects.py), never through a consumer."""
    stream = f"OBJ_{bucket}"
    api = "$JS.API"
    # STREAM.NAMES (names only, no content): nats-py looks up the bucket's stream by subject.
    return (f"{api}.STREAM.NAMES", f"{api}.STREAM.INFO.{stream}", f"{api}.STREAM.MSG.GET.{stream}",
            f"{api}.DIRECT.GET.{stream}", f"{api}.DIRECT.GET.{stream}.>")


def object_writer(bucket: str) -> tuple[str, ...]:
    """Putting objects: chunks and metadata, and purging an object's old chunks."""
    return (*object_reader(bucket), f"$O.{bucket}.>",
            f"$JS.API.STREAM.PURGE.OBJ_{bucket}")


def worker(worker_id: str) -> Permissions:
    wid = validate_id(worker_id, "worker id")
    inbox = inbox_prefix("worker", wid)
    return Permissions(
        role="worker",
        principal=wid,
        publish=(
            subjects.CMD_REPORT,
            subjects.CMD_REGISTER,
            subjects.CMD_CAPABILITIES,
            subjects.CMD_WORKER_STOP,
            subjects.Q_SECRETS,  # the secret env of a task it holds the lease of
            subjects.heartbeat_subject(wid),
            f"dtf.log.*.*.{wid}",  # output, named by the worker that wrote it
            *consumer_subjects(EVENTS, subjects.lease_consumer(wid)),
            *object_reader(subjects.PACKS_BUCKET),  # the code of test runs
            USER_INFO,
            TOKEN_REFRESH,
        ),
        subscribe=(f"{inbox}.>",),
        inbox_prefix=inbox,
    )


def reader(principal: str) -> Permissions:
    inbox = inbox_prefix("reader", principal)
    return Permissions(role="reader", principal=principal,
                       publish=("dtf.q.>", USER_INFO, TOKEN_REFRESH, *log_readers(),
                                *object_reader(subjects.ARTIFACTS_BUCKET)),
                       subscribe=(f"{inbox}.>",), inbox_prefix=inbox)


def enroller(principal: str) -> Permissions:
    """Asking the api for a new worker's key, and nothing else (no log, no queries)."""
    inbox = inbox_prefix("enroller", principal)
    return Permissions(role="enroller", principal=principal,
                       publish=(APIKEY_CREATE, USER_INFO), subscribe=(f"{inbox}.>",),
                       inbox_prefix=inbox)


def autoscaler(group: str) -> Permissions:
    """An autoscaler (its principal is its worker group): its tail of the log, opened by the
    api into its inbox; appends of its own group's scale events and its leadership claim
    (straight to JetStream, as the agents write); the api's drain, uncordon and worker key
    commands (scoped to its group there); nothing else."""
    g = validate_id(group, "worker group")
    inbox = inbox_prefix("autoscaler", g)
    stream = EVENTS
    return Permissions(
        role="autoscaler", principal=g,
        publish=(subjects.Q_TAIL, subjects.CMD_WORKER_MANAGE, APIKEY_CREATE, TOKEN_REFRESH,
                 USER_INFO, subjects.scale_filter(g), subjects.lead_filter(f"autoscaler-{g}"),
                 subjects.dlq_subject(f"autoscaler-{g}"),
                 f"$JS.API.STREAM.INFO.{stream}", f"$JS.FC.{stream}.>"),
        subscribe=(f"{inbox}.>",), inbox_prefix=inbox)


def manager(principal: str) -> Permissions:
    inbox = inbox_prefix("manager", principal)
    return Permissions(
        role="manager",
        principal=principal,
        publish=("dtf.q.>", subjects.CMD_SUBMIT, subjects.CMD_CANCEL, subjects.CMD_IMPORT,
                 "dtf.cmd.worker.>",
                 USER_INFO, TOKEN_REFRESH, *log_readers(),
                 *object_writer(subjects.PACKS_BUCKET), *object_writer(subjects.ARTIFACTS_BUCKET)),
        subscribe=(f"{inbox}.>",),
        inbox_prefix=inbox,
    )


def admin(principal: str, role: str = "admin") -> Permissions:
    """Everything in the DTF account: a person's admin token, or an agent run by hand with
    one (`dtf agent ... --server URL`)."""
    validate_id(principal, "principal")
    return Permissions(role=role, principal=principal, publish=(">",), subscribe=(">",))


# What the agents (api, scheduler, recovery, projector) write: events, dead letters, their
# JetStream and object-store calls, answers into inboxes, and calls to one another. Not
# heartbeats or task output (a worker's own), nor anything else a bug could reach.
AGENT_PUBLISH = ("dtf.evt.>", "dtf.dlq.>", "dtf.q.>", "dtf.cmd.>", "$JS.API.>", "$JS.ACK.>",
                 "$JS.FC.>", "$O.>", "_INBOX.>", USER_INFO)
AGENT_PREFIX = "agent-"  # the subject of the tokens `dtf up` mints for its own agents


def agent(principal: str) -> Permissions:
    """The agents `dtf up` runs: an admin's reach, narrowed to what they write."""
    validate_id(principal, "principal")
    return Permissions(role="admin", principal=principal, publish=AGENT_PUBLISH,
                       subscribe=(">",))


def for_role(role: str, principal: str) -> Permissions:
    """The permissions of ``principal`` acting as ``role`` (a worker's principal is its id)."""
    if role == "worker":
        return worker(principal)
    if role == "reader":
        return reader(principal)
    if role == "manager":
        return manager(principal)
    if role == "enroller":
        return enroller(principal)
    if role == "autoscaler":
        return autoscaler(principal)
    if role in ("admin", "agent") and principal.startswith(AGENT_PREFIX):
        return agent(principal)
    if role in ("admin", "agent"):
        return admin(principal, role)
    raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
