"""Insiders, part 7: output only from the lease's worker, no cleartext network by default,
no plaintext password in the server config, a private data dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agents.nats.server import free_port
from dtf_core.spec import command_spec
from tests.security.insider import Insider

pytestmark = pytest.mark.anyio


async def test_logs_show_only_the_output_of_the_worker_that_held_the_lease(
        insider: Insider) -> None:
    res = await insider.admin.submit([command_spec(["echo", "the real output"])])
    (task_id,) = res.ids
    rc, out = await insider.cli("wait", task_id, "--timeout", "60")
    assert rc == 0, out
    key = await insider.admin.create_api_key("w-evil")
    evil = await insider.connect_as(key.key, worker_id="w-evil")
    # a worker may write output under its own id only, but for any task id
    await evil.publish(f"dtf.log.{task_id}.1.w-evil", b"all tests passed\n",
                       headers={"Dtf-Stream": "stdout"})
    await evil.flush()
    await evil.close()
    rc, out = await insider.cli("logs", task_id)
    assert rc == 0 and "the real output" in out and "all tests passed" not in out, out


def refused_up(tmp_path: Path, *args: str) -> str:
    """`dtf up ARGS` refused as bad input, having made nothing; its stderr."""
    up = subprocess.run(
        [sys.executable, "-m", "cli.main", "up", *args, "--port", str(free_port()),
         "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=60, env={**os.environ})
    assert up.returncode == 2, up.stderr
    assert not (tmp_path / "data").exists()
    return up.stderr


def test_the_rest_api_on_a_network_address_is_refused_unless_said(tmp_path: Path) -> None:
    said = refused_up(tmp_path, "--http-host", "0.0.0.0")
    assert "plain HTTP" in said and "--insecure-network" in said


def test_a_rest_api_port_in_use_is_said_before_anything_is_made(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        said = refused_up(tmp_path, "--http-port", str(taken.getsockname()[1]))
    assert "Address already in use" in said and "--no-http" in said


def test_a_network_address_without_tls_is_refused(tmp_path: Path) -> None:
    said = refused_up(tmp_path, "--host", "0.0.0.0")
    assert "cleartext" in said and "--tls" in said


async def test_the_config_holds_no_plaintext_password_and_the_data_dir_is_private(
        insider: Insider) -> None:
    data = insider.dist.tmp / "stack"
    assert data.stat().st_mode & 0o777 == 0o700
    password = (data / "keys" / "callout-password").read_text().strip()
    config = (data / "nats-server.conf").read_text()
    assert password not in config and "$2a$" in config


async def test_a_data_dir_made_before_is_made_private(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.dist import secure_stack

    monkeypatch.setenv("DTF_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "stack").mkdir(mode=0o755)
    (tmp_path / "stack").chmod(0o755)
    async with secure_stack(tmp_path, workers=0):
        assert (tmp_path / "stack").stat().st_mode & 0o777 == 0o700


async def test_a_reader_cannot_delete_anothers_consumers(insider: Insider) -> None:
    import nats.errors

    reader = await insider.connect_as(await insider.token("reader"))
    subject = "$JS.API.CONSUMER.DELETE.OBJ_dtf-artifacts.someone-elses"
    with pytest.raises(nats.errors.TimeoutError):
        await reader.request(subject, b"", timeout=1)
    assert reader.denied(subject)  # the server refused the publish itself
    await reader.close()
