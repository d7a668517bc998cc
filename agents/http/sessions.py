"""Who the caller is, and the browser's session: a login link's short-lived token traded
for an HttpOnly, SameSite=Strict cookie holding a session token refreshed from it."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from agents.auth.server_auth import unverified_claims
from agents.http import access
from agents.http.routes import Handlers, as_json
from dtf_core.errors import InvalidInput


class Sessions(Handlers):
    """Who the caller is; logging in and out."""

    async def me(self, request: Request) -> Response:
        """Who the caller is (the dashboard shows only the actions its role may take)."""
        cred = access.credential(request, secure=self.secure)
        await self.pool.client(cred, access.source(request))  # the server checked it
        claims = unverified_claims(cred) if cred else None
        if claims is None:
            return as_json({"sub": "anonymous" if cred is None else "worker-key",
                            "role": "admin" if cred is None else "worker"})
        return as_json({"sub": claims.get("sub"), "role": claims.get("role")})

    async def login(self, request: Request) -> Response:
        """Trade a short-lived login token (from `dtf dashboard`) for a session cookie."""
        token = request.query_params.get("token", "")
        if not token:
            raise InvalidInput("the login link has no token: run `dtf dashboard` again")
        api = await self.pool.client(token, access.source(request))
        session = await api.refresh_token(access.SESSION_TTL_S)
        response = RedirectResponse("/", status_code=303)
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        access.set_session(response, session.token, https=request.url.scheme == "https")
        return response

    async def logout(self, request: Request) -> Response:
        access.check_same_origin(request)
        response = Response(status_code=204)
        access.clear_session(response)
        return response
