"""What a flood of made-up worker API keys does to everyone else's logins and requests.

    python bench/auth_flood.py [--attackers 100] [--seconds 5]

It starts its own secure stack (as `dtf up` runs it), then measures, first quietly and then
while ``--attackers`` clients keep connecting with fake ``dtfk_`` keys, (a) the api's
latency for a legitimate client's requests (p50, p99) and (b) how long a legitimate
client takes to connect. Two floods: keys with made-up ids (refused without any scrypt)
and keys with a real key id and a wrong secret (each one an scrypt, bounded and backed off
per address). Targets: p99 <= 20 ms, a legitimate connect <= 200 ms. The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from agents.host.supervisor import Stack
from agents.nats.connect import connect
from agents.nats.server import free_port
from agents.wire.client import ApiClient


async def latencies(api: ApiClient, seconds: float) -> list[float]:
    out: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        await api.status()
        out.append(time.perf_counter() - t0)
    return out


async def connects(url: str, token: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        nc = await connect(url, "legit", reconnect=False, credential=token)
        out.append(time.perf_counter() - t0)
        await nc.close()
    return out


async def attacker(url: str, key_id: str | None, stop: asyncio.Event) -> int:
    tries = 0
    while not stop.is_set():
        kid = key_id or secrets.token_hex(8)
        fake = f"dtfk_{kid}_{secrets.token_urlsafe(32)}"
        tries += 1
        try:
            nc = await nats.connect(url, token=fake, connect_timeout=2,
                                    max_reconnect_attempts=0, allow_reconnect=False)
            await nc.close()
        except Exception:
            pass
    return tries


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def phase(url: str, api: ApiClient, token: str, seconds: float, attackers: int,
                key_id: str | None) -> dict[str, Any]:
    stop = asyncio.Event()
    floods = [asyncio.create_task(attacker(url, key_id, stop)) for _ in range(attackers)]
    try:
        lat = await latencies(api, seconds)
        conn = await connects(url, token, 5)
    finally:
        stop.set()
        tries = sum(await asyncio.gather(*floods))
    return {"api_p50_ms": round(pct(lat, 0.5), 2), "api_p99_ms": round(pct(lat, 0.99), 2),
            "connect_ms": round(statistics.median(conn) * 1000, 1),
            "connect_max_ms": round(max(conn) * 1000, 1), "fake_logins": tries}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dtf-bench-auth-") as tmp:
        stack = Stack(data_dir=Path(tmp) / "stack", port=free_port(), workers=0)
        await stack.start()
        supervisor = asyncio.create_task(stack.supervise())
        try:
            await stack.wait_ready()
            assert stack.creds is not None
            token = stack.creds.admin.read_text().strip()
            nc = await connect(stack.url, "bench", reconnect=False, credential=token)
            api = ApiClient(nc, credential=token)
            key_id = (await api.create_api_key("bench-worker")).key_id
            result = {
                "quiet": await phase(stack.url, api, token, args.seconds, 0, None),
                "unknown_ids": await phase(stack.url, api, token, args.seconds,
                                           args.attackers, None),
                "known_id": await phase(stack.url, api, token, args.seconds,
                                        args.attackers, key_id),
            }
            await nc.close()
        finally:
            supervisor.cancel()
            await stack.stop()
    worst = max(result["unknown_ids"]["api_p99_ms"], result["known_id"]["api_p99_ms"])
    slowest = max(result["unknown_ids"]["connect_ms"], result["known_id"]["connect_ms"])
    result.update(attackers=args.attackers, worst_p99_ms=worst, worst_connect_ms=slowest,
                  p99_over_quiet=round(worst / max(result["quiet"]["api_p99_ms"], 1e-3), 2),
                  targets_met=worst <= 20 and slowest <= 200)
    return result


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--attackers", type=int, default=100)
    p.add_argument("--seconds", type=float, default=5.0)
    result = asyncio.run(main(p.parse_args()))
    for name in ("quiet", "unknown_ids", "known_id"):
        r = result[name]
        print(f"{name:12s} api p50 {r['api_p50_ms']} ms, p99 {r['api_p99_ms']} ms; "
              f"legit connect {r['connect_ms']} ms; fake logins {r['fake_logins']}")
    print(json.dumps(result))


if __name__ == "__main__":
    cli()
