"""Cluster routes are mutual TLS and verified: three nodes with certificates from the
cluster CA form a cluster (an R3 stream can be created); a node whose certificate comes from
another CA, or a route without TLS, never joins."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest

from agents.nats.cluster import Node, node_conf
from agents.nats.server import NatsServer, base_conf_text, free_port
from agents.nats.tls import TlsFiles, ensure_certs
from tests.helpers import eventually, until

pytestmark = pytest.mark.anyio


def make_node(i: int) -> Node:
    return Node(name=f"n{i}", host="127.0.0.1", client_port=free_port(), route_port=free_port())


@contextmanager
def servers(tmp: Path, nodes: list[Node], peers: list[Node], tls: list[TlsFiles | None],
            ) -> Iterator[list[tuple[NatsServer, int]]]:
    started: list[tuple[NatsServer, int]] = []
    try:
        for node, node_tls in zip(nodes, tls, strict=True):
            conf = tmp / f"{node.name}.conf"
            monitor = free_port()
            conf.write_text(node_conf(base_conf_text(), node, peers, tls=node_tls)
                            + f"http_port: {monitor}\n")
            server = NatsServer(store_dir=tmp / node.name, port=node.client_port, conf=conf)
            server.start()
            started.append((server, monitor))
        yield started
    finally:
        for server, _ in started:
            server.stop()


def monitor_json(monitor: int, path: str) -> dict[str, Any]:
    """The node's monitoring endpoint; empty until its HTTP listener is up."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/{path}", timeout=2) as reply:
            data: dict[str, Any] = json.load(reply)
            return data
    except OSError:  # the monitor port opens a moment after the client port
        return {}


def route_peers(monitor: int) -> set[str]:
    routes = monitor_json(monitor, "routez").get("routes") or []
    return {r.get("remote_name", "") for r in routes}


def meta_ready(monitor: int, size: int) -> bool:
    """A meta leader that sees every other peer as current: R3 placement can succeed."""
    meta = monitor_json(monitor, "jsz?leader-only=0").get("meta_cluster") or {}
    current = [r for r in meta.get("replicas") or [] if r.get("current")]
    return bool(meta.get("leader")) and len(current) == size - 1


async def test_verified_routes_form_a_cluster_and_keep_strangers_out(tmp_path: Path) -> None:
    tls = ensure_certs(tmp_path / "tls")
    stranger_tls = ensure_certs(tmp_path / "other-ca")
    nodes = [make_node(i) for i in range(3)]
    rogue, plain = make_node(3), make_node(4)
    peers = [*nodes, rogue, plain]
    with servers(tmp_path, nodes, nodes, [tls] * 3) as members, \
         servers(tmp_path, [rogue, plain], peers, [stranger_tls, None]) as outsiders:
        for name, (_, monitor) in zip(["n0", "n1", "n2"], members, strict=True):
            others = {"n0", "n1", "n2"} - {name}
            eventually(lambda m=monitor, o=others: route_peers(m) >= o,  # type: ignore[misc]
                       what="the three nodes to route to each other", timeout=15)
        eventually(lambda: any(meta_ready(m, 3) for _, m in members), timeout=15,
                   what="a JetStream meta leader with every peer current")
        nc = await nats.connect(members[0][0].url)
        try:
            js = nc.jetstream()
            info = await js.add_stream(name="R3CHECK", subjects=["r3.>"], num_replicas=3)
            assert info.config.num_replicas == 3

            async def led() -> bool:  # created is not yet led: a publish may find no one
                try:
                    cluster = (await js.stream_info("R3CHECK")).cluster
                except nats.errors.Error:
                    return False
                current = [r for r in (cluster.replicas or []) if r.current] if cluster else []
                return cluster is not None and bool(cluster.leader) and len(current) == 2

            await until(led, 15, "the R3 stream to have a leader and two current replicas")
            ack = await js.publish("r3.x", b"replicated")
            assert ack.seq == 1
        finally:
            await nc.close()
        for _, monitor in members:
            assert route_peers(monitor) & {"n3", "n4"} == set()
        for _, monitor in outsiders:
            eventually(lambda m=monitor: bool(monitor_json(m, "routez")),  # type: ignore[misc]
                       what="the outsider's monitor to answer")
            assert route_peers(monitor) == set()
        logs = "".join((tmp_path / n.name / "nats-server.log").read_text() for n in nodes)
        assert "TLS route handshake error: remote error: tls: bad certificate" in logs  # n3
        assert "TLS route handshake error: tls: first record does not look like a TLS" in logs
