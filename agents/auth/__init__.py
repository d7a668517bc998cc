"""Authentication and authorisation: tokens, roles, keyring, worker API keys, result signing."""

from agents.auth.apikeys import (
    ApiKeyRecord,
    NewApiKey,
    create_api_key,
    issue_worker_token,
    verify_api_key,
)
from agents.auth.errors import Forbidden, KeyFileError, Unauthenticated
from agents.auth.keyring import Keyring, PublicKeys
from agents.auth.roles import (
    ROLE_PERMISSIONS,
    Permission,
    Role,
    authorize,
    check,
    check_worker_scope,
    permission_for_command,
)
from agents.auth.signing import canonical_bytes, sign, verify_signature
from agents.auth.tokens import Claims, issue, new_token_id, refresh, verify

__all__ = [
    "ROLE_PERMISSIONS",
    "ApiKeyRecord",
    "Claims",
    "Forbidden",
    "KeyFileError",
    "Keyring",
    "NewApiKey",
    "Permission",
    "PublicKeys",
    "Role",
    "Unauthenticated",
    "authorize",
    "canonical_bytes",
    "check",
    "check_worker_scope",
    "create_api_key",
    "issue",
    "issue_worker_token",
    "new_token_id",
    "permission_for_command",
    "refresh",
    "sign",
    "verify",
    "verify_api_key",
    "verify_signature",
]
