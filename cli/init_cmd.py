"""`dtf init --out DIR`: the secrets a secure stack on several hosts starts from, made once
(what `dtf up` makes for itself on one machine).

- ``keys/``: the token signing key, the secrets key (what `dtf submit --secret-env` seals
  with) and the auth callout's issuer key and password; every control plane needs the same
  copy (`dtf agent control --keys DIR/keys`);
- ``nats-auth.conf``: the ``authorization`` block every NATS node's config includes (the
  callout user's password only as a bcrypt hash);
- ``credentials/<service>.jwt``: a token per agent (control and projector as admins, the
  HTTP agent as a reader), and ``admin.jwt`` for the operator;
- with ``--tls-hosts``: ``tls/`` (a CA and one server certificate naming those hosts, used
  for client TLS and the cluster's mutual-TLS routes; ``ca.key`` stays with the operator);
- with ``--workers``: a worker token per id (``credentials/<id>.jwt``), for workers whose
  ids are known before the stack runs (compose);
- with ``--enroll``: ``credentials/enroll.jwt``, an enroller's credential with which a
  worker pod creates its own worker key at start (Kubernetes: the pods of a Deployment
  have names nobody knows in advance); it creates keys for new worker ids and does nothing
  else.

Every file is 0600 in a 0700 directory. Tokens are checked against the signing key in
``keys/``, so they work from the first start of the control plane; other workers get API
keys from the running stack (`dtf worker-key create ID`).
"""

from __future__ import annotations

import argparse
import ipaddress
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cli import render
from dtf_core.errors import InvalidInput

if TYPE_CHECKING:
    from agents.nats.tls import TlsFiles

SERVICES = ["control", "projector", "http"]
ENROLL = "enroll"
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")


def names(text: str, what: str) -> list[str]:
    """The comma-separated list of an option, without blanks or repeats."""
    out = [n.strip() for n in text.split(",") if n.strip()]
    if len(set(out)) != len(out):
        raise InvalidInput(f"{what}: a name is given twice in {text!r}")
    return out


def tls_host(name: str) -> str:
    """A DNS name or an IP address a certificate may name."""
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        if _HOST.fullmatch(name) is None:
            raise InvalidInput(f"--tls-hosts: {name!r} is neither a host name nor an IP "
                               "address") from None
        return name.lower()


def add_parser(client: Callable[[str, str], argparse.ArgumentParser]) -> None:
    init = client("init", "make the keys, NATS auth block and agent credentials of a "
                          "stack on several hosts (docs/deploy.md)")
    init.add_argument("--out", required=True, metavar="DIR")
    init.add_argument("--force", action="store_true", help="write into a non-empty DIR")
    init.add_argument("--tls-hosts", default="", metavar="NAMES",
                      help="comma-separated names of the NATS nodes (and the name clients "
                           "use): a CA and a server certificate for them in DIR/tls, for "
                           "client TLS and mutual-TLS routes")
    init.add_argument("--workers", default="", metavar="IDS",
                      help="comma-separated worker ids: a worker token for each in "
                           "DIR/credentials/ID.jwt")
    init.add_argument("--enroll", action="store_true",
                      help="DIR/credentials/enroll.jwt: a credential that only creates keys "
                           "for new workers, for worker pods that make their own at start "
                           "(Kubernetes)")


def init_cmd(args: argparse.Namespace) -> int:
    from agents.auth.keyfiles import ensure_private_dir
    from agents.auth.server_auth import server_config
    from agents.control.bootstrap import keys_dir, mint
    from dtf_core.ids import validate_id

    out = Path(args.out).expanduser().resolve()
    if out.exists() and any(out.iterdir()) and not args.force:
        raise InvalidInput(f"{out} is not empty: `dtf init` makes new keys (tokens signed by "
                           "the old ones would stop working); pass --force to add to it")
    hosts = [tls_host(h) for h in names(args.tls_hosts, "--tls-hosts")]
    workers = [validate_id(w, "worker id") for w in names(args.workers, "--workers")]
    if ENROLL in workers or any(w in SERVICES for w in workers):
        raise InvalidInput(f"--workers: {', '.join([*SERVICES, ENROLL])} name agents' "
                           "credentials; give the workers other ids")
    ensure_private_dir(out)
    # first the certificates: the one check that can still refuse (--force over a tls/ made
    # for other hosts) comes before any token is replaced
    tls = server_certs(out / "tls", hosts) if hosts else None
    services = [*SERVICES, ENROLL] if args.enroll else SERVICES
    creds, _ = mint(out, services=services, workers=workers)
    block = server_config("", keys_dir(out), out / "nats-auth.conf")
    files = {"control plane keys (--keys)": keys_dir(out),
             "NATS authorization block (include it in each node's config)": block,
             "operator credential (--token-file)": creds.admin,
             **{f"{s} agent credential (DTF_TOKEN_FILE)": creds.files[f"agent-{s}"]
                for s in SERVICES},
             **{f"worker {w} credential (--token-file)": creds.files[w] for w in workers}}
    if args.enroll:
        files["worker pods' enrollment credential (enroller)"] = creds.files[f"agent-{ENROLL}"]
    if tls is not None:
        files.update({"CA certificate (DTF_TLS_CA)": tls.ca,
                      "NATS server certificate and key": tls.cert})
    if args.json:
        render.emit_json({k: str(v) for k, v in files.items()})
    else:
        render.out("\n".join(f"{what}: {path}" for what, path in files.items())
                   + "\nnext: docs/deploy.md (which file goes to which host)")
    return 0


def server_certs(directory: Path, hosts: list[str]) -> TlsFiles:
    """The CA and server certificate in ``directory`` (made once); one made before must
    already name every host asked for, or the nodes would refuse each other's routes."""
    from cryptography import x509

    from agents.nats.tls import ensure_certs

    tls = ensure_certs(directory, hosts)
    cert = x509.load_pem_x509_certificate(tls.cert.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    named = {str(n.value).lower() for n in sans}
    missing = [h for h in hosts if h not in named]
    if missing:
        raise InvalidInput(f"{tls.cert} was made before and does not name {', '.join(missing)}"
                           f": remove {directory} to make new certificates")
    return tls
