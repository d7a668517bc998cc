"""Who wrote a batch of reports, beside the server's permissions (defence in depth): a
worker that registered a signing key proves each batch with its session's tag (the report
key the api handed it at registration, ADR 0020) or with its Ed25519 signature."""

from __future__ import annotations

from collections.abc import Callable

from agents.auth.signing import canonical_bytes, public_key_from_bytes, verify_mac, verify_signature
from dtf_core.commands import ReportResults
from dtf_core.errors import DTFError, Refused
from projections.board import Board

ReportKey = Callable[[str, str], bytes]  # (worker id, session) -> the session's report key


def check_report_auth(board: Board, cmd: ReportResults, report_key: ReportKey | None) -> None:
    """Refused unless each reporting worker that registered a signing key proved the batch:
    a tag made with its current session's key (``report_key``: None where the api has no
    secrets key, ``--insecure-dev``), or a signature with its registered key."""
    payload: bytes | None = None
    tag, signature = cmd.mac if report_key is not None else None, cmd.signature
    for worker_id in {r.worker_id for r in cmd.reports} | {t.worker_id for t in cmd.tests}:
        worker = board.workers.get(worker_id)
        if worker is None or worker.signing_key is None:
            continue
        if tag is None and signature is None:
            raise Refused(f"reports for worker {worker_id} must be signed with its key")
        payload = payload if payload is not None else canonical_bytes(cmd.signed_part())
        try:
            if tag is not None and report_key is not None:
                verify_mac(report_key(worker_id, worker.session), payload, tag)
            elif signature is not None:
                verify_signature(public_key_from_bytes(worker.signing_key), payload, signature)
        except DTFError:
            raise Refused(f"bad signature on reports for worker {worker_id}") from None
