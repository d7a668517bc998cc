"""The user's path: `dtf up`, then the client commands, kill -9 a child, Ctrl-C, resume."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from agents.auth.server_auth import client_inbox_prefix
from agents.nats.fast_client import FastClient
from agents.nats.server import free_port
from tests.gates import Gate
from tests.helpers import eventually

PY = sys.executable


class Up:
    def __init__(self, data_dir: Path, port: int, *extra: str) -> None:
        scheme = "tls" if "--tls" in extra else "nats"
        self.url = f"{scheme}://127.0.0.1:{port}"
        self.http_port = free_port()
        self.http = f"http://127.0.0.1:{self.http_port}/"
        self.data_dir = data_dir
        self.context = data_dir.parent / f"context-{port}.json"  # what `dtf up` records
        env = {**os.environ, "DTF_HEARTBEAT_INTERVAL": "0.2", "DTF_HEARTBEAT_MISSES": "5",
               "DTF_CONTEXT": str(self.context)}
        self.proc = subprocess.Popen(
            [PY, "-m", "cli.main", "up", "--port", str(port), "--data-dir", str(data_dir),
             "--workers", "2", "--slots", "2", "--http-port", str(self.http_port), *extra],
            stdout=subprocess.PIPE, stderr=open(data_dir.parent / f"up-{port}.err", "ab"),
            env=env, text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # bounded by the pytest timeout
        assert line.strip() == f"DTF ready at {self.url}", line

    def _cli(self, args: tuple[str, ...], env: dict[str, str] | None = None,
             ) -> tuple[list[str], dict[str, str]]:
        argv = [PY, "-m", "cli.main", args[0], "--server", self.url, *args[1:]]
        return argv, {**os.environ, "DTF_TOKEN_FILE": str(self.data_dir / "admin.jwt"),
                      "DTF_TLS_CA": str(self.data_dir / "tls" / "ca.pem"), **(env or {})}

    def popen(self, *args: str) -> subprocess.Popen[str]:
        argv, env = self._cli(args)
        return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)

    def dtf(self, *args: str, check: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        argv, env = self._cli(args, env)
        out = subprocess.run(argv, env=env,
                             capture_output=True, text=True, timeout=60)
        if check:
            assert out.returncode == 0, out.stderr
        return out

    def stop(self, sig: int = signal.SIGINT) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    data = tmp_path / "data"
    data.mkdir()
    stack = Up(data, free_port())
    yield stack
    if stack.proc.poll() is None:
        stack.stop()


def test_submit_wait_inspect(up: Up) -> None:
    ok = json.loads(up.dtf("submit", "--json", "--", PY, "-c", "print('hi there')").stdout)
    bad = up.dtf("submit", "--", PY, "-c", "import sys; sys.exit(3)").stdout.strip()
    assert up.dtf("wait", ok["id"]).returncode == 0
    assert up.dtf("wait", bad, check=False).returncode == 1
    assert "hi there" in up.dtf("logs", ok["id"]).stdout
    task = json.loads(up.dtf("task", ok["id"], "--json").stdout)
    assert task["status"] == "succeeded"
    assert [h["type"] for h in task["history"]] == ["submitted", "leased", "started",
                                                    "succeeded"]
    assert all({"type", "seq", "time", "actor"} <= set(h) for h in task["history"])
    tasks = json.loads(up.dtf("tasks", "--json").stdout)
    assert {t["id"]: t["status"] for t in tasks} == {ok["id"]: "succeeded", bad: "failed"}
    status = json.loads(up.dtf("status", "--json").stdout)
    assert status["tasks"] == {"succeeded": 1, "failed": 1}
    assert status["projector"]["last_seq"] <= status["last_seq"]
    assert "projected to:" in up.dtf("status").stdout
    workers = json.loads(up.dtf("workers", "--json").stdout)
    assert sorted(w["id"] for w in workers) == ["local-1", "local-2"]
    for w in workers:
        assert {"id", "hostname", "pid", "capabilities", "slots", "state", "last_seen"} <= set(w)
        assert w["state"] == "alive" and w["slots"] == 2
        assert w["capabilities"]["cpu_count"] >= 1


def test_logs_follow_streams_until_the_task_ends(up: Up, tmp_path: Path) -> None:
    gate = Gate(tmp_path / "gate")  # the task prints, then waits until the test lets it end
    script = "for i in range(5):\n    print('line', i, flush=True)\n" + gate.script()
    task = up.dtf("submit", "--", PY, "-c", script).stdout.strip()
    follow = up.popen("logs", "-f", task)
    assert follow.stdout is not None
    seen = [follow.stdout.readline().strip() for _ in range(5)]  # while the task still runs
    assert seen == [f"line {i}" for i in range(5)]
    assert json.loads(up.dtf("task", task, "--json").stdout)["status"] == "running"
    gate.open()
    rest, _ = follow.communicate(timeout=60)
    assert follow.returncode == 0 and "line" not in rest
    assert json.loads(up.dtf("task", task, "--json").stdout)["status"] == "succeeded"


def test_clear_errors(up: Up, tmp_path: Path) -> None:
    def err(*args: str, code: int) -> str:
        out = up.dtf(*args, check=False)
        assert out.returncode == code, (args, out.stdout, out.stderr)
        assert "Traceback" not in out.stderr
        assert out.stderr.startswith("dtf: error:") and out.stderr.count("\n") == 1
        return out.stderr

    assert "invalid task id" in err("task", "bad.id", code=2)
    assert "unknown task" in err("task", "nope", code=2)
    assert "unknown task" in err("wait", "nope", code=2)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"type": "command", "config": {"argv": ["true"]}, "colour": 1}')
    assert "colour" in err("submit", str(bad_json), code=2)
    bad_json.write_text("{not json")
    assert "invalid JSON" in err("submit", str(bad_json), code=2)
    assert "cannot reach" in subprocess.run(
        [PY, "-m", "cli.main", "status", "--server", "nats://127.0.0.1:1"],
        capture_output=True, text=True, timeout=30).stderr


def test_clients_find_the_stack_from_any_directory(up: Up, tmp_path: Path) -> None:
    """The README's "in another shell, from your project": no --server, no credential, no
    ./.dtf there. `dtf up` recorded its URL and data dir in the user's context (0600);
    without one, the error says exactly what to pass."""
    elsewhere = tmp_path / "my-project"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DTF_")}
    assert oct(up.context.stat().st_mode & 0o777) == "0o600"
    ran = subprocess.run([PY, "-m", "cli.main", "submit", "--", "true"], cwd=elsewhere,
                         env={**env, "DTF_CONTEXT": str(up.context)}, capture_output=True,
                         text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    ran = subprocess.run([PY, "-m", "cli.main", "wait", ran.stdout.strip()], cwd=elsewhere,
                         env={**env, "DTF_CONTEXT": str(up.context)}, capture_output=True,
                         text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    lost = subprocess.run([PY, "-m", "cli.main", "status", "--server", up.url], cwd=elsewhere,
                          env={**env, "DTF_CONTEXT": str(tmp_path / "none.json")},
                          capture_output=True, text=True, timeout=60)
    assert lost.returncode == 1 and "export DTF_TOKEN_FILE=FILE" in lost.stderr, lost.stderr


def test_dtf_dashboard_prints_a_login_link_that_opens_a_session(up: Up, tmp_path: Path) -> None:
    """From another directory, with only the context `dtf up` wrote: the link logs a
    browser in (an HttpOnly cookie), and the REST API then answers it."""
    import httpx

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DTF_")}
    ran = subprocess.run([PY, "-m", "cli.main", "dashboard", "--json"], cwd=elsewhere,
                         env={**env, "DTF_CONTEXT": str(up.context)}, capture_output=True,
                         text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    link = json.loads(ran.stdout)["login"]
    assert link.startswith(f"{up.http}login?token=")
    again = subprocess.run([PY, "-m", "cli.main", "dashboard"], cwd=elsewhere,
                           env={**env, "DTF_CONTEXT": str(up.context)}, capture_output=True,
                           text=True, timeout=60)  # within the minute: said, and why
    assert again.returncode != 0 and "one login link a minute" in again.stderr, again.stderr
    with httpx.Client(base_url=up.http, timeout=30) as browser:
        assert browser.get("/api/status").status_code == 401
        login = browser.get(link)
        assert login.status_code == 303, login.text
        status = browser.get("/api/status")
        assert status.status_code == 200 and status.json()["workers_alive"] == 2
    issued = up.dtf("token", "issue", "--role", "reader", "--sub", "bob", "--ttl", "5m",
                    "--login", "--url", up.http)  # a link for someone else
    bobs = issued.stdout.split("login link (works for 5m): ")[1].strip()
    with httpx.Client(base_url=up.http, timeout=30) as browser:
        assert browser.get(bobs).status_code == 303
        assert browser.get("/api/me").json() == {"sub": "bob", "role": "reader"}


def test_dtf_wait_shows_live_progress_on_a_terminal_only(up: Up, tmp_path: Path) -> None:
    import pty

    gate = Gate(tmp_path / "gate")
    task = up.dtf("submit", "--", PY, "-c", gate.script()).stdout.strip()
    argv, env = up._cli(("wait", task))
    primary, secondary = pty.openpty()
    waiting = subprocess.Popen(argv, env={**env, "COLUMNS": "100"}, stdout=secondary,
                               stderr=secondary, stdin=subprocess.DEVNULL)
    os.close(secondary)
    seen = b""
    while b"tasks ended" not in seen:  # the bar, drawn while the task still runs
        seen += os.read(primary, 4096)
    gate.open()
    assert waiting.wait(timeout=60) == 0
    with contextlib.suppress(OSError):  # the pty reports EIO once the writer is gone
        while chunk := os.read(primary, 4096):
            seen += chunk
    os.close(primary)
    assert b"succeeded" in seen
    piped = up.dtf("wait", task)  # not a terminal: the plain line only
    assert "tasks ended" not in piped.stdout + piped.stderr


def test_kill_a_worker_then_ctrl_c_then_resume(up: Up, tmp_path: Path) -> None:
    workers = json.loads(up.dtf("workers", "--json").stdout)
    victim = next(w for w in workers if w["id"] == "local-1")
    os.kill(victim["pid"], signal.SIGKILL)

    def restarted() -> bool:
        rows = json.loads(up.dtf("workers", "--json").stdout)
        w = next(r for r in rows if r["id"] == "local-1")
        return w["pid"] != victim["pid"] and w["state"] == "alive"

    eventually(restarted, timeout=30, what="the supervisor to restart local-1")
    task = up.dtf("submit", "--", PY, "-c", "print(1)").stdout.strip()
    assert up.dtf("wait", task).returncode == 0
    queued = up.dtf("submit", "--", PY, "-c",  # runs until it is stopped
                    "import threading; threading.Event().wait()").stdout.strip()
    eventually(lambda: json.loads(up.dtf("task", queued, "--json").stdout)["status"]
               == "running", timeout=20, what="the long task to run")
    t0 = time.monotonic()
    assert up.stop(signal.SIGINT) == 0
    assert time.monotonic() - t0 < 30
    assert not _pid_alive(victim["pid"])
    data = Path(up.proc.args[up.proc.args.index("--data-dir") + 1])  # type: ignore[index]
    again = Up(data, free_port())
    try:
        rows = {t["id"]: t for t in json.loads(again.dtf("tasks", "--json").stdout)}
        assert rows[task]["status"] == "succeeded"
        # the task that was running when we stopped is requeued and runs again
        assert rows[queued]["status"] in ("queued", "leased", "running")
        again.dtf("cancel", queued)
    finally:
        again.stop()


def test_a_killed_nats_server_is_started_again_and_a_killed_dtf_up_takes_all_along(
        up: Up) -> None:
    """kill -9 of the nats-server: `dtf up` starts it again on its store (the log kept);
    kill -9 of `dtf up` itself: nothing it started outlives it (no orphan holding the
    ports, which the next `dtf up` would trip over)."""
    import psutil

    first = up.dtf("submit", "--", PY, "-c", "print(1)").stdout.strip()
    assert up.dtf("wait", first).returncode == 0
    children = psutil.Process(up.proc.pid).children()
    [server] = [c for c in children if c.name() == "nats-server"]
    server.kill()
    server.wait(10)

    def submitted() -> bool:
        out = up.dtf("submit", "--", PY, "-c", "print(2)", check=False)
        return out.returncode == 0 and up.dtf("wait", out.stdout.strip(),
                                              check=False).returncode == 0

    eventually(submitted, timeout=60, what="a task to run after nats-server started again")
    assert up.dtf("task", first, "--json").returncode == 0  # the log survived
    everything = psutil.Process(up.proc.pid).children(recursive=True)
    assert any(c.name() == "nats-server" for c in everything)
    up.proc.kill()
    up.proc.wait(10)
    _, alive = psutil.wait_procs(everything, timeout=20)
    assert not alive, [(p.pid, p.name()) for p in alive]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_server_enforces_roles_and_revocation_closes_connections(up: Up) -> None:
    issued = json.loads(up.dtf("token", "issue", "--role", "reader", "--ttl", "10m",
                               "--json").stdout)
    assert asyncio.run(_refused_without_token(up.url))
    reader = {"DTF_TOKEN": issued["token"]}
    slow = up.dtf("submit", "--", PY, "-c", "print('read me')")
    task = slow.stdout.strip()
    assert up.dtf("wait", task, env=reader).returncode == 0  # a reader may follow the log
    assert "read me" in up.dtf("logs", "-f", task, env=reader).stdout
    refused = up.dtf("submit", "--", "true", check=False, env=reader)
    assert refused.returncode == 1 and "may not send dtf.cmd.task.submit" in refused.stderr
    denied, kicked = asyncio.run(_reader_session(up, issued))
    assert denied == ['nats: permissions violation for publish to "dtf.evt.task.x.submitted"']
    assert kicked < 1.0, f"the revoked token's connection stayed open {kicked:.2f}s"
    out = up.dtf("tasks", check=False, env={"DTF_TOKEN": issued["token"]})
    assert out.returncode == 1 and "refused" in out.stderr
    other = json.loads(up.dtf("token", "issue", "--role", "reader", "--json").stdout)
    said = up.dtf("token", "revoke", other["jti"]).stdout  # for people: no JSON unasked
    assert not said.lstrip().startswith("{") and "=" in said, said


async def _refused_without_token(url: str) -> bool:
    try:
        nc = await nats.connect(url, max_reconnect_attempts=1, reconnect_time_wait=0.1,
                                connect_timeout=2)
    except Exception:
        return True
    await nc.close()
    return False


async def _reader_session(up: Up, issued: dict[str, str]) -> tuple[list[str], float]:
    errors: list[str] = []
    gone = asyncio.Event()

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    async def on_disconnect() -> None:
        gone.set()

    nc = FastClient()  # its flush() is a barrier (nats-py's writes its PING ahead)
    await nc.connect(up.url, token=issued["token"], error_cb=on_error,
                     disconnected_cb=on_disconnect,
                     inbox_prefix=client_inbox_prefix(issued["token"]) or "_INBOX",
                     max_reconnect_attempts=1, reconnect_time_wait=0.1)
    try:
        await nc.publish("dtf.evt.task.x.submitted", b"forged")
        await nc.flush(timeout=5)  # a round trip: the permission error is in by then
        t0 = time.monotonic()
        revoke = asyncio.to_thread(up.dtf, "token", "revoke", issued["jti"])
        await revoke
        await asyncio.wait_for(gone.wait(), 10)
        return [e for e in errors if "permissions" in e], time.monotonic() - t0
    finally:
        await nc.close()


def test_tls(tmp_path: Path) -> None:
    data = tmp_path / "tls-data"
    data.mkdir()
    stack = Up(data, free_port(), "--tls")
    try:
        task = stack.dtf("submit", "--", PY, "-c", "print('over tls')").stdout.strip()
        assert stack.dtf("wait", task).returncode == 0
        logs = stack.dtf("logs", task)
        assert "over tls" in logs.stdout
        assert logs.stderr == "", logs.stderr  # no asyncio TLS warnings: errors are one line
        assert (data / "tls" / "server.key").stat().st_mode & 0o777 == 0o600
        plain = stack.url.replace("tls://", "nats://")
        out = subprocess.run([PY, "-m", "cli.main", "status", "--server", plain],
                             capture_output=True, text=True, timeout=60,
                             env={**os.environ, "DTF_TOKEN_FILE": str(data / "admin.jwt")})
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
        from agents.nats.tls import ensure_certs

        other = ensure_certs(tmp_path / "other-ca")  # another stack's CA: said what to check
        out = stack.dtf("status", check=False, env={"DTF_TLS_CA": str(other.ca)})
        assert out.returncode == 1 and "DTF_TLS_CA" in out.stderr, out.stderr
    finally:
        assert stack.stop() == 0
