"""The OpenAPI document names every route the app serves, with the structs' schemas."""

from __future__ import annotations

import json

from starlette.routing import Route

from agents.http import openapi
from agents.http.app import build_app
from agents.http.pool import ClientPool


def test_every_route_is_documented_and_every_reference_resolves() -> None:
    doc = openapi.document()
    app = build_app(ClientPool("nats://127.0.0.1:1", None), secure=True)
    served = {(r.path, m.lower()) for r in app.routes if isinstance(r, Route)
              for m in (r.methods or ()) if m != "HEAD"}
    documented = {(p, m) for p, ops in doc["paths"].items() for m in ops}
    pages = {("/openapi.json", "get"), ("/login", "get"), ("/logout", "post"), ("/", "get"),
             ("/static/{name}", "get"), ("/metrics", "get")}
    assert served - pages == documented
    text = json.dumps(doc)
    refs = {part.split('"')[0] for part in text.split("#/components/schemas/")[1:]}
    assert refs <= set(doc["components"]["schemas"])
    assert {"TaskSummary", "TaskDetail", "WorkerRow", "TaskSpec"} <= refs
