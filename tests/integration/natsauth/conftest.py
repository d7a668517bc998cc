"""A nats-server of its own (``nats-server -c conf``) with auth callout on."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from agents.auth.natsauth import nkeys
from agents.auth.natsauth.config import CalloutConfig, new_password
from agents.nats.server import free_port, port_open, server_binary
from tests.helpers import eventually
from tests.integration.natsauth.harness import AuthedServer


@pytest.fixture(scope="module")
def authed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthedServer]:
    base = tmp_path_factory.mktemp("natsauth")
    port = free_port()
    issuer = nkeys.KeyPair.create(nkeys.PREFIX_ACCOUNT)
    callout = CalloutConfig(issuer_public_key=issuer.public_key, auth_password=new_password())
    conf = base / "nats.conf"
    conf.touch(mode=0o600)
    conf.write_text(
        f'listen: "127.0.0.1:{port}"\n'
        "server_name: dtf-natsauth-test\n"
        f"jetstream {{ store_dir: {json.dumps(str(base / 'store'))} }}\n"
        + callout.render()
    )
    with open(base / "nats-server.log", "wb") as log:
        proc = subprocess.Popen([server_binary(), "-c", str(conf)], stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        def listening() -> bool:  # another process: poll its port
            assert proc.poll() is None, (base / "nats-server.log").read_text()
            return port_open("127.0.0.1", port)

        eventually(listening, 10, "nats-server to start")
        yield AuthedServer(f"nats://127.0.0.1:{port}", issuer, callout.auth_user,
                           callout.auth_password, base / "nats-server.log")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
