"""`dtf init`'s options for containers (--tls-hosts, --workers, --enroll) refuse what would
not work, before anything in DIR changes. (What they make, used by a running stack:
tests/integration/test_nats_container_conf.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.args import parser
from cli.init_cmd import init_cmd
from dtf_core.errors import InvalidInput


def init(out: Path, *args: str) -> int:
    return init_cmd(parser().parse_args(["init", "--out", str(out), *args]))


@pytest.mark.parametrize(("args", "says"), [
    (["--tls-hosts", "nats_1"], "host name"), (["--tls-hosts", "a..b"], "host name"),
    (["--workers", "w1,w1"], "twice"), (["--workers", "control"], "other ids"),
    (["--workers", "enroll"], "other ids"), (["--workers", "a.b"], "worker id")])
def test_bad_names_are_refused_and_nothing_is_made(tmp_path: Path, args: list[str],
                                                   says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        init(tmp_path / "out", *args)
    assert not (tmp_path / "out").exists()


def test_a_certificate_made_before_must_name_the_hosts(tmp_path: Path) -> None:
    assert init(tmp_path, "--tls-hosts", "nats-1,10.0.0.7", "--workers", "w1") == 0
    token = (tmp_path / "credentials" / "control.jwt").read_text()
    assert init(tmp_path, "--force", "--tls-hosts", "NATS-1,10.0.0.7") == 0  # the same
    assert (tmp_path / "credentials" / "control.jwt").read_text() != token  # re-minted
    token = (tmp_path / "credentials" / "control.jwt").read_text()
    with pytest.raises(InvalidInput, match="does not name nats-9"):
        init(tmp_path, "--force", "--tls-hosts", "nats-1,nats-9")
    assert (tmp_path / "credentials" / "control.jwt").read_text() == token  # as it was
    assert not (tmp_path / "credentials" / "enroll.jwt").exists()  # only with --enroll


def test_the_keys_hold_the_secrets_key_every_control_plane_shares(tmp_path: Path) -> None:
    """Two control planes on two hosts, each given a copy of keys/: a secret sealed through
    one opens through the other (a control plane made its own secrets key at first start,
    so after a failover the secrets of queued tasks could not be opened, and a read-only
    keys/ mount could not start at all)."""
    import shutil
    import stat

    from agents.auth.secrets import SECRETS_FILE, Sealer

    assert init(tmp_path / "out") == 0
    keys = tmp_path / "out" / "keys"
    assert stat.S_IMODE((keys / SECRETS_FILE).stat().st_mode) == 0o600
    host_a, host_b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(keys, host_a)
    shutil.copytree(keys, host_b)
    sealed = Sealer.load_or_create(host_a).seal("t-1", "TOKEN", "s3cret")
    assert Sealer.load_or_create(host_b).open("t-1", "TOKEN", sealed) == "s3cret"
