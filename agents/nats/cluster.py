"""Configuration of a NATS cluster: one config text per node, with verified TLS routes.

Every node gets its own ``server_name`` and store, the base config's durability settings
(``sync_interval: always``) and a ``cluster`` block naming every other node's route. With
``tls``, routes are mutual TLS: each node presents its certificate and requires a peer
certificate signed by the cluster CA (``verify: true``), so a node without one cannot join
and read or inject replicated data. ``deploy/nats-cluster.conf`` is the same for real hosts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from agents.nats.tls import TlsFiles
from dtf_core.ids import validate_id

CLUSTER_NAME = "dtf"


@dataclass(frozen=True)
class Node:
    name: str
    host: str
    client_port: int
    route_port: int

    @property
    def route_url(self) -> str:
        return f"nats-route://{self.host}:{self.route_port}"


def route_tls_block(tls: TlsFiles) -> str:
    return (
        "  tls {\n"
        f'    cert_file: "{tls.cert}"\n'
        f'    key_file: "{tls.key}"\n'
        f'    ca_file: "{tls.ca}"\n'
        "    verify: true\n"
        '    min_version: "1.2"\n'
        "    timeout: 2\n"
        "  }\n"
    )


def node_conf(base: str, node: Node, nodes: list[Node], *, tls: TlsFiles | None,
              cluster_name: str = CLUSTER_NAME) -> str:
    """``base`` (nats.conf) for ``node`` of ``nodes``: its own name and the routes."""
    validate_id(node.name, "server name")
    text = re.sub(r"(?m)^server_name:.*$", "", base)
    routes = "\n".join(f"    {peer.route_url}" for peer in nodes if peer != node)
    block = (
        f"server_name: {node.name}\n"
        "cluster {\n"
        f"  name: {validate_id(cluster_name, 'cluster name')}\n"
        f"  listen: {node.host}:{node.route_port}\n"
        f"  routes: [\n{routes}\n  ]\n"
        + (route_tls_block(tls) if tls is not None else "")
        + "}\n"
    )
    return text.rstrip() + "\n" + block


ROUTE_PORT_OFFSET = 2000  # node i of `dtf up --cluster N`: client port P+i, route port P+2000+i


def local_nodes(size: int, host: str, port: int) -> list[Node]:
    """The nodes of a local cluster: consecutive client ports from ``port``."""
    return [Node(name=f"dtf-{i + 1}", host=host, client_port=port + i,
                 route_port=port + ROUTE_PORT_OFFSET + i) for i in range(size)]


def store_dir(data_dir: Path, node: Node) -> Path:
    return data_dir / "nats" / node.name
