"""Security errors: who you are (Unauthenticated), what you may do (Forbidden), key files."""

from __future__ import annotations

from dtf_core.errors import DTFError


class Unauthenticated(DTFError):
    """A credential (token, API key, signature) that does not prove who sent a request."""


class Forbidden(DTFError):
    """An authenticated principal whose role or scope does not allow the command."""


class KeyFileError(DTFError):
    """A key file that is missing, malformed, or readable by group or others."""
