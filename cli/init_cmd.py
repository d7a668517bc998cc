"""`dtf init --out DIR`: the secrets a secure stack on several hosts starts from, made once
(what `dtf up` makes for itself on one machine).

- ``keys/``: the token signing key and the auth callout's issuer key and password; the
  control plane needs it (`dtf agent control --keys DIR/keys`);
- ``nats-auth.conf``: the ``authorization`` block every NATS node's config includes (the
  callout user's password only as a bcrypt hash);
- ``credentials/<service>.jwt``: a token per agent (control and projector as admins, the
  HTTP agent as a reader), and ``admin.jwt`` for the operator.

Every file is 0600 in a 0700 directory. Tokens are checked against the signing key in
``keys/``, so they work from the first start of the control plane; workers get API keys
from the running stack (`dtf worker-key create ID`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cli import render
from dtf_core.errors import InvalidInput

SERVICES = ["control", "projector", "http"]


def init_cmd(args: argparse.Namespace) -> int:
    from agents.auth.keyfiles import ensure_private_dir
    from agents.auth.server_auth import server_config
    from agents.control.bootstrap import keys_dir, mint

    out = Path(args.out).expanduser().resolve()
    if out.exists() and any(out.iterdir()) and not args.force:
        raise InvalidInput(f"{out} is not empty: `dtf init` makes new keys (tokens signed by "
                           "the old ones would stop working); pass --force to add to it")
    ensure_private_dir(out)
    creds, _ = mint(out, services=SERVICES, workers=[])
    block = server_config("", keys_dir(out), out / "nats-auth.conf")
    files = {"control plane keys (--keys)": keys_dir(out),
             "NATS authorization block (include it in each node's config)": block,
             "operator credential (--token-file)": creds.admin,
             **{f"{s} agent credential (DTF_TOKEN_FILE)": creds.files[f"agent-{s}"]
                for s in SERVICES}}
    if args.json:
        render.emit_json({k: str(v) for k, v in files.items()})
    else:
        render.out("\n".join(f"{what}: {path}" for what, path in files.items())
                   + "\nnext: docs/deploy.md (which file goes to which host)")
    return 0
