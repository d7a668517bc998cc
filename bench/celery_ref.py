"""Celery + Redis on the same machine: the reference `bench/e2e.py --celery` measures in
the same run as DTF. Neither is installed by the project: it needs `redis-server` on the
PATH and `pip install "celery[redis]"`.

Celery 5 with a prefork pool of 2 processes and Redis (its defaults: no fsync per write,
so Celery's figures are for a broker that may lose acknowledged tasks on a power cut; DTF's
are durable). Latency: ``noop.delay().get()`` one at a time; throughput: N ``delay`` calls,
then every result.
"""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agents.nats.server import free_port

TASKS = '''
from celery import Celery

app = Celery("dtf_celery_ref", broker="{url}", backend="{url}")
app.conf.update(worker_prefetch_multiplier=4, result_expires=600,
                broker_connection_retry_on_startup=True)


@app.task
def noop():
    return None
'''
READY_S = 60.0


def available() -> str | None:
    """Why Celery cannot be measured here, or None."""
    if shutil.which("redis-server") is None:
        return "redis-server is not on the PATH"
    try:
        importlib.import_module("celery")
        importlib.import_module("redis")
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install 'celery[redis]')"
    return None


def measure(samples: int, tasks: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="dtf-celery-") as tmp:
        port = free_port()
        url = f"redis://127.0.0.1:{port}/0"
        redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                  "--dir", tmp], stdout=subprocess.DEVNULL)
        Path(tmp, "dtf_celery_ref.py").write_text(TASKS.format(url=url))
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "dtf_celery_ref", "worker", "--pool",
             "prefork", "--concurrency", "2", "--loglevel", "WARNING"],
            cwd=tmp, env={**os.environ, "PYTHONPATH": tmp}, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        sys.path.insert(0, tmp)
        try:
            mod: Any = importlib.import_module("dtf_celery_ref")
            _wait_ready(mod.app)
            for _ in range(100):  # warm up
                mod.noop.delay().get(timeout=10)
            lat = []
            for _ in range(samples):
                t = time.perf_counter()
                mod.noop.delay().get(timeout=10)
                lat.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            results = [mod.noop.delay() for _ in range(tasks)]
            for r in results:
                r.get(timeout=60)
            rate = tasks / (time.perf_counter() - t)
        finally:
            sys.path.remove(tmp)
            sys.modules.pop("dtf_celery_ref", None)
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(30)
            redis.terminate()
            redis.wait(30)
    lat.sort()
    return {"celery_p50_ms": round(statistics.median(lat), 3),
            "celery_p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 3),
            "celery_tasks_per_s": round(rate, 1)}


def _wait_ready(app: Any) -> None:
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        if app.control.ping(timeout=0.5):
            return
    raise RuntimeError(f"the Celery worker did not answer within {READY_S:.0f} s")
