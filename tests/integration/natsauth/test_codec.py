"""nkeys, NATS JWTs, subject matching and the callout's answers, without a server."""

from __future__ import annotations

import base64
import json
import time

import pytest

from agents.auth.natsauth import jwt, nkeys, permissions
from agents.auth.natsauth.callout import AuthCallout
from agents.auth.natsauth.config import CalloutConfig
from dtf_core.errors import InvalidInput

pytestmark = pytest.mark.anyio

# A pair from nats-server's own auth callout tests (server/auth_callout_test.go).
KNOWN_SEED = "SAANDLKMXL6CUS3CP52WIXBEDN6YJ545GDKC65U5JZPPV6WH6ESWUA6YAI"
KNOWN_PUBLIC = "ABJHLOVMPA4CI6R5KLNGOB4GSLNIY7IOUPAJC4YFNDLQVIOBYQGUWVLA"


def test_known_seed_gives_known_public_key() -> None:
    kp = nkeys.KeyPair.from_seed(KNOWN_SEED)
    assert kp.prefix == nkeys.PREFIX_ACCOUNT
    assert kp.public_key == KNOWN_PUBLIC
    assert kp.seed == KNOWN_SEED


@pytest.mark.parametrize("prefix,first", [
    (nkeys.PREFIX_ACCOUNT, "A"), (nkeys.PREFIX_USER, "U"), (nkeys.PREFIX_SERVER, "N"),
    (nkeys.PREFIX_OPERATOR, "O"),
])
def test_key_types_round_trip(prefix: int, first: str) -> None:
    kp = nkeys.KeyPair.create(prefix)
    assert kp.public_key[0] == first and kp.seed[:2] == "S" + first
    assert nkeys.KeyPair.from_seed(kp.seed).public_key == kp.public_key
    assert nkeys.is_valid_public(kp.public_key, prefix)
    sig = kp.sign(b"data")
    assert nkeys.verify(kp.public_key, b"data", sig)
    assert not nkeys.verify(kp.public_key, b"other", sig)
    assert kp.seed not in repr(kp)


def test_corrupt_keys_are_rejected() -> None:
    bad = KNOWN_PUBLIC[:-1] + ("A" if KNOWN_PUBLIC[-1] != "A" else "B")
    with pytest.raises(nkeys.NkeyError):
        nkeys.decode_public(bad)
    with pytest.raises(nkeys.NkeyError):
        nkeys.decode_public(KNOWN_PUBLIC, nkeys.PREFIX_USER)
    with pytest.raises(nkeys.NkeyError):
        nkeys.decode_seed(KNOWN_PUBLIC)
    assert not nkeys.is_valid_public("not a key", nkeys.PREFIX_ACCOUNT)


def test_jwt_round_trip_and_tampering() -> None:
    issuer = nkeys.KeyPair.create(nkeys.PREFIX_ACCOUNT)
    token = jwt.encode({"sub": "x", "nats": {"type": "user", "version": 2}}, issuer)
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"typ": "JWT", "alg": "ed25519-nkey"}
    claims = jwt.decode(token, nkeys.PREFIX_ACCOUNT)
    assert claims["iss"] == issuer.public_key and claims["jti"]
    head, _, sig = token.split(".")
    forged = base64.urlsafe_b64encode(json.dumps({**claims, "sub": "y"}).encode()).decode()
    with pytest.raises(jwt.JwtError, match="signature"):
        jwt.decode(f"{head}.{forged.rstrip('=')}.{sig}")
    with pytest.raises(jwt.JwtError, match="expected kind"):
        jwt.decode(token, nkeys.PREFIX_SERVER)
    old = jwt.encode({"sub": "x", "exp": int(time.time()) - 5}, issuer)
    with pytest.raises(jwt.JwtError, match="expired"):
        jwt.decode(old)


def _request(server: nkeys.KeyPair, user: nkeys.KeyPair, token: str) -> str:
    claims = {
        "aud": jwt.AUTH_REQUEST_AUDIENCE, "sub": KNOWN_PUBLIC, "exp": int(time.time()) + 5,
        "nats": {
            "server_id": {"name": "s", "host": "127.0.0.1", "id": server.public_key},
            "user_nkey": user.public_key,
            "client_info": {"host": "127.0.0.1", "id": 42, "kind": "Client", "type": "nats"},
            "connect_opts": {"auth_token": token, "protocol": 1},
            "type": jwt.AUTH_REQUEST, "version": 2,
        },
    }
    return jwt.encode(claims, server)


async def test_callout_answers_grant_and_denial() -> None:
    issuer = nkeys.KeyPair.create(nkeys.PREFIX_ACCOUNT)
    server = nkeys.KeyPair.create(nkeys.PREFIX_SERVER)
    user = nkeys.KeyPair.create(nkeys.PREFIX_USER)

    def authorize(token: str, client_info: object) -> permissions.Permissions | str:
        return permissions.worker("w1") if token == "good" else "no"

    callout = AuthCallout(issuer, authorize)
    request = jwt.decode_request(_request(server, user, "good"))
    assert request.token == "good" and request.client_id == 42

    answer = jwt.decode((await callout.answer(request)).decode(), nkeys.PREFIX_ACCOUNT)
    assert answer["aud"] == server.public_key and answer["sub"] == user.public_key
    assert answer["nats"]["type"] == jwt.AUTH_RESPONSE
    granted = jwt.decode(answer["nats"]["jwt"], nkeys.PREFIX_ACCOUNT)
    assert granted["iss"] == issuer.public_key and granted["aud"] == "$G"
    assert granted["sub"] == user.public_key and granted["name"] == "worker:w1"
    assert "dtf.hb.w1" in granted["nats"]["pub"]["allow"]
    assert (server.public_key, 42) in callout.sessions

    denied = await callout.answer(jwt.decode_request(_request(server, user, "bad")))
    assert jwt.decode(denied.decode())["nats"]["error"] == "no"

    # A request that its named server did not sign is refused outright.
    other = nkeys.KeyPair.create(nkeys.PREFIX_SERVER)
    claims = jwt.decode(_request(other, user, "good"))
    claims["nats"]["server_id"]["id"] = server.public_key
    with pytest.raises(jwt.JwtError, match="not signed by the server"):
        jwt.decode_request(jwt.encode(claims, other))


def test_worker_permissions_as_data() -> None:
    w1 = permissions.worker("w1")
    for ok in ["dtf.hb.w1", "dtf.cmd.task.report", "dtf.log.t-1.3.w1", "dtf.cmd.auth.refresh",
               "$JS.API.CONSUMER.INFO.DTF_EVENTS.worker-w1",
               "$JS.ACK.DTF_EVENTS.worker-w1.1.2.3.4.0"]:
        assert w1.may_publish(ok), ok
    for no in ["dtf.hb.w2", "dtf.evt.task.x.submitted", "dtf.cmd.task.submit",
               "$JS.API.STREAM.DELETE.DTF_EVENTS", "$JS.API.CONSUMER.INFO.DTF_EVENTS.worker-w2",
               "$JS.ACK.DTF_EVENTS.worker-w2.1.2.3.4.0", "dtf.log.t-1.3.extra", "dtf.log.t-1.3.w2",
               "$JS.API.CONSUMER.CREATE.DTF_EVENTS.worker-w1",
               "$JS.API.CONSUMER.DELETE.DTF_EVENTS.worker-w1",
               "dtf.cmd.auth.issue", "dtf.cmd.auth.revoke"]:
        assert not w1.may_publish(no), no
    assert w1.may_subscribe("_INBOX.worker.w1.abc")
    assert not w1.may_subscribe("_INBOX.worker.w2.abc")
    assert not w1.may_subscribe("_INBOX.>")
    with pytest.raises(InvalidInput):
        permissions.worker("w1.>")  # ids are single subject tokens
    with pytest.raises(ValueError):
        permissions.for_role("root", "x")


def test_config_render() -> None:
    kp = nkeys.KeyPair.create(nkeys.PREFIX_ACCOUNT)
    text = CalloutConfig(kp.public_key, "$2a$11$abcdefghijklmnopqrstuv").render()
    assert f'issuer: "{kp.public_key}"' in text and "account: SYS" in text
    with pytest.raises(ValueError):
        CalloutConfig(nkeys.KeyPair.create(nkeys.PREFIX_USER).public_key, "pw").render()
    with pytest.raises(ValueError):
        CalloutConfig(kp.public_key, 'pw" } ] } evil {').render()
