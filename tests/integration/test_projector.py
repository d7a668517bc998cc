"""The DuckDB projector against a real nats-server: rows, reads over NATS, restarts, kill -9,
dead letters, and the rebuilt projection equal to the live one.

Each test starts its own nats-server: the projector reads the fixed stream DTF_EVENTS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
from nats.aio.client import Client

from agents.control.projector import ProjectorAgent
from agents.control.rebuild import rebuild
from agents.log.jetstream import JetStreamLog
from agents.log.port import MAX_BATCH, Append
from agents.nats.connect import connect, ensure_streams
from agents.nats.server import NatsServer, free_port
from dtf_core import subjects
from dtf_core.events import codec
from dtf_core.events.codec import Event
from dtf_core.events.task import TaskLeased, TaskStarted, TaskSubmitted, TaskSucceeded
from dtf_core.events.worker import Capabilities, WorkerRegistered
from dtf_core.spec import TaskSpec
from projections.reads import table_counts, table_hash
from tests.helpers import until
from tests.integration.harness import stack
from tests.unit.test_tables import story

pytestmark = pytest.mark.anyio
REPO = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000.0

NO_BENCH = {"bench_results": 0, "bench_metrics": 0, "hosts": 0}  # no benchmark ran


@dataclass
class Env:
    server: NatsServer
    nc: Client
    log: JetStreamLog


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    server = NatsServer(store_dir=tmp_path / "nats", port=free_port())
    server.start()
    try:
        nc = await connect(server.url, "test")
        await ensure_streams(nc.jetstream())
        yield Env(server, nc, JetStreamLog(nc))
        await nc.close()
    finally:
        server.stop()


async def append(log: JetStreamLog, events: list[Event]) -> list[int]:
    seqs: list[int] = []
    for i in range(0, len(events), MAX_BATCH):
        chunk = events[i : i + MAX_BATCH]
        seqs += await log.append([
            Append(subject=codec.subject_of(e), data=codec.encode(e), msg_id=codec.msg_id_of(e))
            for e in chunk
        ])
    return seqs


async def run_tasks(log: JetStreamLog, ids: list[str], worker: str = "w1") -> None:
    """Submit, lease, start and succeed each task, with the real fencing tokens."""
    spec = TaskSpec(type="benchmark", config={"model": "m"})
    await append(log, [TaskSubmitted(task_id=t, spec=spec, at=T0, actor="t") for t in ids])
    fences = await append(log, [
        TaskLeased(task_id=t, worker_id=worker, session="s", attempt=1, at=T0 + 1, actor="t")
        for t in ids
    ])
    await append(log, [
        e
        for t, f in zip(ids, fences, strict=True)
        for e in (
            TaskStarted(task_id=t, attempt=1, fencing=f, worker_id=worker, at=T0 + 2, actor="t"),
            TaskSucceeded(task_id=t, attempt=1, fencing=f, worker_id=worker, duration_s=1.0,
                          at=T0 + 3, actor="t"),
        )
    ])


async def register(log: JetStreamLog, worker: str = "w1") -> None:
    caps = Capabilities(hardware=("cpu",), platform="linux", cpu_count=4)
    await append(log, [WorkerRegistered(worker_id=worker, session="s", hostname="h", pid=1,
                                        slots=4, capabilities=caps, at=T0, actor="t")])


async def ask(nc: Client, body: bytes | dict[str, Any]) -> dict[str, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    msg = await nc.request(subjects.Q_PROJECTOR, data, timeout=5)
    reply: dict[str, Any] = json.loads(msg.data)
    return reply


async def reached(nc: Client, seq: int) -> bool:
    try:
        return int((await ask(nc, {"op": "status"})).get("last_seq", -1)) >= seq
    except Exception:  # no projector answering yet
        return False


@contextlib.asynccontextmanager
async def projector(env: Env, db: Path) -> AsyncIterator[tuple[ProjectorAgent, asyncio.Task[None]]]:
    nc = await connect(env.server.url, "projector")
    tail_nc = await connect(env.server.url, "projector-tail")  # as launched: held reads
    agent = ProjectorAgent(nc, JetStreamLog(nc), db, tail_nc=tail_nc)
    task = asyncio.create_task(agent.run())
    try:
        waiter = asyncio.create_task(agent.ready.wait())
        await asyncio.wait({waiter, task}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
        assert agent.ready.is_set(), "the projector did not catch up"
        yield agent, task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await tail_nc.close()
        await nc.close()


async def test_rows_appear_and_status_answers(env: Env, tmp_path: Path) -> None:
    await register(env.log)
    await run_tasks(env.log, [f"t{i}" for i in range(50)])
    end = await env.log.last_seq()
    async with projector(env, tmp_path / "p.duckdb"):
        await until(lambda: reached(env.nc, end))
        status = await ask(env.nc, {"op": "status"})
        assert status == {"last_seq": end, "counts": {
            "tasks": 50, "attempts": 50, "workers": 1, "test_results": 50, **NO_BENCH}}
        await run_tasks(env.log, ["late"])
        await until(lambda: reached(env.nc, end + 4))
        assert (await ask(env.nc, {"op": "status"}))["counts"]["test_results"] == 51
        assert "error" in await ask(env.nc, {"op": "drop tables"})
        assert "error" in await ask(env.nc, b"not json")
        assert "error" in await ask(env.nc, {"op": "status", "extra": 1})
        assert (await ask(env.nc, {"op": "hash"}))["last_seq"] == end + 4


async def test_flaky_tests_are_asked_over_nats(env: Env, tmp_path: Path) -> None:
    from agents.wire.projector import flaky_tests
    from dtf_core.events.tests import TestCase, TestsReported

    def reported(task: str, worker: str, outcome: str) -> TestsReported:
        return TestsReported(run_id="r1", task_id=task, worker_id=worker, attempt=1,
                             fencing=1, batch=1, at=T0 + 1, actor=worker,
                             cases=(TestCase(nodeid="t.py::f", outcome=outcome),))  # type: ignore[arg-type]

    seqs = await append(env.log, [reported("c1", "w1", "failed"), reported("c2", "w2", "passed")])
    async with projector(env, tmp_path / "p.duckdb"):
        await until(lambda: reached(env.nc, seqs[-1]))
        answer = await flaky_tests(env.nc, since=T0)
        assert answer.ok and [(f.test_id, f.passed, f.failed, f.failed_on)
                              for f in answer.result or []] == [("t.py::f", 1, 1, ["w1"])]
        assert (await flaky_tests(env.nc, since=T0 + 2)).result == []
        bad = await env.nc.request(subjects.Q_FLAKY_TESTS, b'{"since": -1}', timeout=5)
        assert b"invalid request" in bad.data


async def test_a_query_sees_what_the_log_held_when_asked(env: Env, tmp_path: Path) -> None:
    """Writes are paced (one transaction every 0.15 s at most), reads are not stale: a
    user who saw a test end and asks at once finds it."""
    from agents.wire.projector import flaky_tests
    from dtf_core.events.tests import TestCase, TestsReported

    def reported(task: str, n: int, outcome: str) -> TestsReported:
        return TestsReported(run_id="r1", task_id=task, worker_id="w1", attempt=1,
                             fencing=1, batch=n, at=T0 + n, actor="w1",
                             cases=(TestCase(nodeid=f"t.py::f{n}", outcome=outcome),))  # type: ignore[arg-type]

    seqs = await append(env.log, [reported("c0", 0, "passed")])
    async with projector(env, tmp_path / "p.duckdb") as (agent, _):
        await until(lambda: reached(env.nc, seqs[-1]))
        for n in range(1, 6):  # each pair right after the last answer: inside the pause
            await append(env.log, [reported(f"c{n}", n, "failed"),
                                   reported(f"d{n}", n, "passed")])
            answer = await flaky_tests(env.nc, since=T0)
            assert answer.ok, answer.error
            assert sorted(f.test_id for f in answer.result or []) == sorted(
                f"t.py::f{k}" for k in range(1, n + 1))
        assert agent.writer.stored_seq == await env.log.last_seq()


async def test_rebuilt_hash_equals_the_live_one(env: Env, tmp_path: Path) -> None:
    await append(env.log, story())  # a fresh stream: seqs 1..15, as the story's fencing says
    async with projector(env, tmp_path / "live.duckdb"):
        await until(lambda: reached(env.nc, 15))
        live = await ask(env.nc, {"op": "hash"})
    assert live["last_seq"] == 15
    assert await rebuild(env.log, tmp_path / "rebuilt.duckdb") == live["hash"]
    with duckdb.connect(str(tmp_path / "live.duckdb")) as con:  # a stopped projector: a file
        assert table_hash(con) == live["hash"]
        assert table_counts(con)["test_results"] == 3


async def test_restart_mid_stream_loses_and_doubles_nothing(env: Env, tmp_path: Path) -> None:
    db = tmp_path / "p.duckdb"
    await register(env.log)
    async with projector(env, db) as (_, task):
        feeder = asyncio.create_task(
            run_batches(env.log, "a", batches=40, size=50))
        await until(lambda: reached(env.nc, 300))
        task.cancel()  # stop it while events flow
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await feeder
    await run_tasks(env.log, [f"b{i}" for i in range(100)])
    end = await env.log.last_seq()
    async with projector(env, db):
        await until(lambda: reached(env.nc, end))
        live = await ask(env.nc, {"op": "hash"})
        counts = (await ask(env.nc, {"op": "status"}))["counts"]
    assert counts == {"tasks": 2100, "attempts": 2100, "workers": 1, "test_results": 2100,
                      **NO_BENCH}
    assert live == {"hash": await rebuild(env.log, tmp_path / "r.duckdb"), "last_seq": end}


async def run_batches(log: JetStreamLog, prefix: str, batches: int, size: int) -> None:
    for b in range(batches):
        await run_tasks(log, [f"{prefix}{b}x{i}" for i in range(size)])


async def test_malformed_event_is_dead_lettered_and_projection_goes_on(
    env: Env, tmp_path: Path
) -> None:
    await register(env.log)
    js = env.nc.jetstream()
    bad = await js.publish("dtf.evt.task.x.submitted", b"\xc1 not msgpack")
    async with projector(env, tmp_path / "p.duckdb"):
        await run_tasks(env.log, ["after"])
        end = await env.log.last_seq()
        await until(lambda: reached(env.nc, end))
        assert (await ask(env.nc, {"op": "status"}))["counts"]["tasks"] == 1

        async def dead_lettered() -> bool:
            try:
                msg = await js.get_last_msg(subjects.DLQ_STREAM, subjects.dlq_subject("projector"))
            except Exception:
                return False
            return msg.headers is not None and msg.headers.get("Dtf-Seq") == str(bad.seq)

        await until(dead_lettered)
        dlq = await js.get_last_msg(subjects.DLQ_STREAM, subjects.dlq_subject("projector"))
        assert dlq.data == b"\xc1 not msgpack"
        assert dlq.headers is not None and dlq.headers["Dtf-Subject"] == "dtf.evt.task.x.submitted"


async def test_projector_of_a_real_stack(tmp_path: Path) -> None:
    db = tmp_path / "p.duckdb"
    async with stack(tmp_path) as h:
        nc = await h.conn("projector")
        agent = ProjectorAgent(nc, JetStreamLog(nc), db)
        await h.start("projector", agent, agent.ready)
        res = await h.api.submit([TaskSpec(type="noop", name=f"n{i}") for i in range(20)])
        for task_id in res.ids:
            await h.wait_status(task_id, {"succeeded"})
        end = await h.log.last_seq()

        async def stored() -> bool:
            return agent.writer.stored_seq >= end

        await until(stored)
        await h.stop("projector")  # read the file itself: the stack may run other projectors
        rebuilt = await rebuild(h.log, tmp_path / "r.duckdb", until_seq=end)
    with duckdb.connect(str(db)) as con:
        assert table_counts(con) == {"tasks": 20, "attempts": 20, "workers": 1,
                                     "test_results": 20, **NO_BENCH}
        assert table_hash(con) == rebuilt
        names = con.execute("SELECT test_id FROM test_results ORDER BY test_id").fetchall()
        assert names == sorted((f"n{i}",) for i in range(20))


SERVE = """
import asyncio, faulthandler, signal, sys
# A suite started in the background by a non-interactive shell (`.ci/run &`) hands its
# children SIGINT ignored, and Python then keeps it ignored: Ctrl-C must work here.
signal.signal(signal.SIGINT, signal.default_int_handler)
faulthandler.register(signal.SIGUSR1)  # the test asks for every thread's stack if it hangs
from agents.log.jetstream import JetStreamLog
from agents.nats.connect import connect
from agents.control.projector import ProjectorAgent

def tasks() -> None:  # SIGUSR2: where every task waits, down its chain of awaits
    for task in asyncio.all_tasks():
        print(f"task {task.get_name()} (cancelling {task.cancelling()}):", file=sys.stderr)
        coro = task.get_coro()
        while coro is not None:
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
            if frame is not None:
                print(f"  {frame.f_code.co_filename}:{frame.f_lineno} in "
                      f"{frame.f_code.co_name}", file=sys.stderr)
            coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
        print(f"  waiting on {getattr(task, '_fut_waiter', None)!r}", file=sys.stderr)
    sys.stderr.flush()

async def main() -> None:
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, tasks)
    nc = await connect(sys.argv[1], "projector")
    await ProjectorAgent(nc, JetStreamLog(nc), sys.argv[2]).run()

try:
    asyncio.run(main())
except KeyboardInterrupt:  # SIGINT is how the test stops it
    pass
"""


def spawn(url: str, db: Path) -> subprocess.Popen[bytes]:
    """The projector in a process of its own; its stderr goes to a file beside ``db``."""
    with open(db.with_suffix(".stderr"), "ab") as err:
        return subprocess.Popen([sys.executable, "-c", SERVE, url, str(db)], cwd=REPO,
                                stderr=err)


def stop(proc: subprocess.Popen[bytes], db: Path, wait: float = 20) -> None:
    """SIGINT, as a user's Ctrl-C: the projector must close its file and exit. If it does
    not within ``wait``, fail with every thread's stack (and kill it: nothing is left)."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(wait)
        return
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR2)  # the asyncio tasks' stacks
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(2)  # the loop answers at once; the wait is only for the output
        proc.send_signal(signal.SIGUSR1)  # the threads' stacks (faulthandler)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(2)
        proc.kill()
        proc.wait()
        err = db.with_suffix(".stderr").read_text(errors="replace")
        raise AssertionError(f"the projector did not stop {wait:g}s after SIGINT; its tasks "
                             f"and threads:\n{err[-12000:]}") from None


async def test_kill_9_while_events_flow_loses_and_doubles_nothing(
    env: Env, tmp_path: Path
) -> None:
    db = tmp_path / "p.duckdb"
    await register(env.log)
    proc = spawn(env.server.url, db)
    try:
        await until(lambda: reached(env.nc, 1))
        feeder = asyncio.create_task(run_batches(env.log, "k", batches=60, size=50))
        await until(lambda: reached(env.nc, 500))
        proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(proc.wait)
        assert not feeder.done(), "the kill should land while events flow"
        await feeder
        end = await env.log.last_seq()
        proc = spawn(env.server.url, db)
        await until(lambda: reached(env.nc, end))
        live = await ask(env.nc, {"op": "hash"})
        counts = (await ask(env.nc, {"op": "status"}))["counts"]
    finally:
        await asyncio.to_thread(stop, proc, db)  # a clean stop: asyncio.run cancels, it closes
    assert counts == {"tasks": 3000, "attempts": 3000, "workers": 1, "test_results": 3000,
                      **NO_BENCH}
    assert live == {"hash": await rebuild(env.log, tmp_path / "r.duckdb"), "last_seq": end}
    with duckdb.connect(str(db)) as con:
        assert table_hash(con) == live["hash"]
