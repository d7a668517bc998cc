"""Insiders, part 3: a manager's task cannot take the stack's credentials.

The attack: a task that reads ``$DTF_TOKEN_FILE`` (or ``$DTF_DATA_DIR/admin.jwt`` and the
signing keys) and uses them to issue itself an admin token. Tasks get no ``DTF_*``
variable, and with ``--task-user`` they run as another account that cannot read the data
directory (0700) at all."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest

from dtf_core.spec import TaskSpec
from tests.dist import secure_stack
from tests.security.insider import Insider

pytestmark = pytest.mark.anyio
# /bin/sh: another account may not be able to run this test's Python (under /root)
PROBE = ('echo "DTF vars: [$(env | grep ^DTF_ | cut -d= -f1 | tr "\\n" " ")]"; '
         'for f in "$@"; do if cat "$f" >/dev/null 2>&1; then echo "READ $f"; '
         'else echo "DENIED $f"; fi; done')


async def probe(insider: Insider, data: Path) -> str:
    manager = await insider.token("manager", sub="mallory")
    secrets = [str(data / "admin.jwt"), str(data / "keys" / "signing-keys.json")]
    spec = msgspec.convert({"type": "command", "config": {
        "argv": ["/bin/sh", "-c", PROBE, "probe", *secrets], "cwd": "/"}}, TaskSpec)
    res = await insider.admin.submit([spec])
    rc, out = await insider.cli("wait", res.ids[0], "--timeout", "60", token=manager)
    assert rc == 0, out
    rc, out = await insider.cli("logs", res.ids[0], token=manager)
    assert rc == 0, out
    return out


async def test_a_task_sees_no_dtf_settings_or_credentials(insider: Insider) -> None:
    out = await probe(insider, insider.dist.tmp / "stack")
    assert "DTF vars: []" in out, out


@pytest.mark.skipif(os.geteuid() != 0, reason="--task-user needs the worker to run as root")
async def test_with_a_task_user_a_task_cannot_read_the_stacks_secrets(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DTF_CACHE_DIR", str(tmp_path / "cache"))
    async with secure_stack(tmp_path, workers=1, task_user="nobody") as dist:
        from agents.nats.connect import connect
        from agents.wire.client import ApiClient

        nc = await connect(dist.url, "test-admin", reconnect=False, credential=dist.token)
        try:
            out = await probe(Insider(dist, nc, ApiClient(nc, credential=dist.token)),
                              tmp_path / "stack")
        finally:
            await nc.close()
    assert "DTF vars: []" in out and "READ" not in out, out
    assert out.count("DENIED") == 2, out
