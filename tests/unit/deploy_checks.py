"""Checks of deploy/compose/compose.yaml and the Kubernetes manifests: each returns the
problems it finds (an empty list: none), so the tests can also show that each check
refuses a broken copy."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cli.args import parser

DTF_IMAGES = {"dtf", "dtf-cuda", "${DTF_IMAGE:-dtf}"}  # images whose ENTRYPOINT is dtf
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet"}
_SEPARATORS = {";", "&&", "||", "|", "&", "\n"}
_REDIRECTS = {">", ">>", "<", "2>", "2>>"}


def dtf_args_error(argv: list[str]) -> str | None:
    """Why `dtf` would refuse this command line (None: it parses)."""
    if not argv or Path(argv[0]).name != "dtf":
        return f"not a dtf command: {argv[:1]}"
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            parser().parse_args(argv[1:])
    except SystemExit as exc:
        return err.getvalue().strip() or f"exit {exc.code}"
    return None


def script_commands(script: str) -> list[list[str]]:
    """The simple commands of a shell script (redirections dropped)."""
    lex = shlex.shlex(script.replace("\n", " ; "), posix=True, punctuation_chars=";&|<>")
    lex.whitespace_split = True
    commands: list[list[str]] = [[]]
    skip = False
    for word in lex:
        if word in _SEPARATORS:
            commands.append([])
        elif word in _REDIRECTS or (word.endswith(">") and word[:-1].isdigit()):
            skip = True
        elif skip:
            skip = False
        else:
            commands[-1].append(word)
    return [c for c in commands if c]


def argv_problems(where: str, argv: list[str]) -> list[str]:
    err = dtf_args_error(argv)
    return [] if err is None else [f"{where}: `{shlex.join(argv)}`: {err}"]


# --- compose -------------------------------------------------------------------------

def compose_problems(doc: dict[str, Any]) -> list[str]:
    """Commands dtf accepts, depends_on naming services, named volumes, configs and
    secrets defined, and each credential file a dtf service names mounted in it."""
    problems: list[str] = []
    services: dict[str, Any] = doc.get("services") or {}
    for kind in ("volumes", "configs", "secrets"):
        defined = set(doc.get(kind) or {})
        for name, svc in services.items():
            for ref in svc.get(kind) or []:
                source = ref["source"] if isinstance(ref, dict) else str(ref).split(":")[0]
                named = kind != "volumes" or not source.startswith(("/", ".", "$"))
                if named and source not in defined:
                    problems.append(f"service {name}: {kind[:-1]} {source!r} is not defined")
    for name, svc in services.items():
        for dep in svc.get("depends_on") or []:
            if dep not in services:
                problems.append(f"service {name}: depends_on {dep!r} is not a service")
        if svc.get("image") in DTF_IMAGES:
            argv = ["dtf", *svc.get("command", [])]
            problems += argv_problems(f"service {name}", argv)
            problems += _compose_files(name, svc, argv)
    return problems


def _compose_files(name: str, svc: dict[str, Any], argv: list[str]) -> list[str]:
    mounted = {str(ref["target"]) for ref in svc.get("secrets") or []}
    mounted |= {_vars(str(v), {}).split(":")[1] for v in svc.get("volumes") or []}
    env = svc.get("environment") or {}
    wanted = [env.get("DTF_TOKEN_FILE"), env.get("DTF_TLS_CA")]
    wanted += [argv[i + 1] for i, w in enumerate(argv[:-1]) if w in ("--token-file", "--keys")]
    return [f"service {name}: {path} is not mounted" for path in wanted
            if path and path not in mounted]


def _vars(text: str, env: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:?message} and ${NAME:-default}, from ``env``."""
    def value(m: re.Match[str]) -> str:
        name, op, rest = m.group(1), m.group(2) or "", m.group(3) or ""
        return env.get(name) or (rest if op == ":-" else "$" + name)

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:[-?])?([^}]*)\}", value, text)


def compose_host_files(doc: dict[str, Any], base: Path, env: dict[str, str]) -> list[str]:
    """The files and directories compose would mount that are not there (``base``: the
    compose file's directory, ``env``: the variables it is run with)."""
    sources = [str(d["file"]) for kind in ("configs", "secrets")
               for d in (doc.get(kind) or {}).values()]
    sources += [_vars(str(v), env).split(":")[0] for svc in doc["services"].values()
                for v in svc.get("volumes") or []]
    paths = [_vars(s, env) for s in sources if s.startswith((".", "/", "$"))]
    return [p for p in paths if not (base / p).exists()]


# --- Kubernetes ----------------------------------------------------------------------

def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for doc in docs:
        if doc.get("kind") in WORKLOADS:
            yield doc, doc["spec"]["template"]["spec"]


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def container_commands(c: dict[str, Any]) -> list[list[str]]:
    """The dtf command lines a container runs: the image's ENTRYPOINT (dtf) with its args,
    or each dtf command of an ``sh -c`` script. $(VAR) and $VAR: the variable's name."""
    env = {e["name"] for e in c.get("env", [])}
    command, args = c.get("command"), c.get("args", [])
    if command is None and c.get("image") in DTF_IMAGES:
        found = [["dtf", *args]]
    elif command and command[0] == "sh" and "-c" in command:
        found = [cmd for script in args for cmd in script_commands(script) if cmd[0] == "dtf"]
    else:
        return []
    for argv in found:
        for word in argv:
            for var in re.findall(r"\$\(?([A-Za-z_][A-Za-z0-9_]*)", word):
                if var not in env:
                    argv.append(f"--undefined-variable-{var}")  # dtf refuses it: shown
    return found


def workload_problems(doc: dict[str, Any], pod: dict[str, Any]) -> list[str]:
    """Selector labels on the template, mounts naming volumes, secret items and their
    readers, and the command lines."""
    name = f"{doc['kind']} {doc['metadata']['name']}"
    problems: list[str] = []
    selector = doc["spec"].get("selector", {}).get("matchLabels", {})
    labels = doc["spec"]["template"]["metadata"].get("labels", {})
    if not selector or any(labels.get(k) != v for k, v in selector.items()):
        problems.append(f"{name}: selector {selector} does not match the labels {labels}")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    claims = {t["metadata"]["name"] for t in doc["spec"].get("volumeClaimTemplates", [])}
    for c in containers(pod):
        for mount in c.get("volumeMounts", []):
            if mount["name"] not in volumes and mount["name"] not in claims:
                problems.append(f"{name}/{c['name']}: mounts undefined volume {mount['name']}")
        for argv in container_commands(c):
            problems += argv_problems(f"{name}/{c['name']}", argv)
        problems += _reads_of_items(name, c, volumes)
    return problems


def _reads_of_items(name: str, c: dict[str, Any], volumes: dict[str, Any]) -> list[str]:
    """A script's paths under a Secret volume with items must be among those items."""
    scripts = " ".join(c.get("args", [])) if c.get("command") else ""
    problems = []
    for mount in c.get("volumeMounts", []):
        items = (volumes.get(mount["name"], {}).get("secret") or {}).get("items")
        if not items:
            continue
        paths = {i["path"] for i in items}
        root = mount["mountPath"].rstrip("/") + "/"
        for used in re.findall(re.escape(root) + r"([\w./-]+)", scripts):
            if used not in paths:
                problems.append(f"{name}/{c['name']}: reads {root}{used}, not an item of "
                                f"its volume {mount['name']}")
    return problems


def referenced(pod: dict[str, Any], kind: str) -> list[tuple[str, list[str]]]:
    """(name, keys) of each Secret (kind "secret") or ConfigMap a pod's volumes use."""
    out = []
    for vol in pod.get("volumes", []):
        if kind == "secret" and "secret" in vol:
            src = vol["secret"]
            out.append((src["secretName"], [i["key"] for i in src.get("items", [])]))
        elif kind == "configMap" and "configMap" in vol:
            out.append((vol["configMap"]["name"], []))
    return out
