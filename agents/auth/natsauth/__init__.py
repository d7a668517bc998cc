"""Server-enforced NATS permissions for DTF through nats-server auth callout.

``nkeys`` and ``jwt`` hand-craft the NATS keys and JWTs, ``permissions`` holds each role's
subjects as data, ``callout`` is the asyncio service that answers the server's authorization
requests (and kicks revoked connections), ``config`` renders the nats-server config block.
See docs/adr/0004-server-enforced-permissions.md.
"""
