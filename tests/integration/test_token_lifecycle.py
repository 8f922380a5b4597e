"""A token's life on a live connection, with JWTs from PyJWT: the native client told before
its token expires, refreshing it (rights re-evaluated, subscriptions they no longer allow
removed and reported), closed at expiry plus the grace; MQTT 5 re-authentication with AUTH;
revocation from the revocation file on SIGHUP closing live clients; one-time tokens; a static
token removed on SIGHUP closing its connections. After each bad input, a well-behaved client
still publishes and receives."""
import asyncio
import json
import signal
import socket
import struct
import time

import jwt as pyjwt
import pytest

from conftest import closed_with, connect, publish, recv_type, run, subscribe
from test_jwt import HMAC_SECRET, Keys, authenticated, jwt_config, refused, token_for  # noqa: F401
from test_mqtt5 import packet, parse_props, read_packet, read_varint, utf8, varint

LIFECYCLE = """
[auth]
refresh_notice_s = 60
expiry_grace_s = 1
"""


@pytest.fixture
def keys(tmp_path):
    return Keys(tmp_path)


def lifecycle_config(keys, extra=""):
    return LIFECYCLE + jwt_config(keys, "leeway_s = 0\n" + extra)


async def still_serves(agent, keys):
    """A well-behaved client publishes and receives its own message."""
    ws, r = await authenticated(agent, token_for(keys, "ES256", sub="bystander",
                                                 roles=["device", "dashboard"]))
    await subscribe(ws, "devices/bystander/#")
    await publish(ws, "devices/bystander/t", {"ok": 1})
    assert (await recv_type(ws, "message"))["payload"] == {"ok": 1}
    await ws.close()


def test_native_client_is_told_refreshes_and_is_closed_at_expiry_plus_grace(agent_factory,
                                                                             keys):
    a = agent_factory(lifecycle_config(keys))

    async def go():
        now = int(time.time())
        # Device and dashboard rights, expiring in 4 s.
        ws, r = await authenticated(a, token_for(keys, "ES256", sub="dev-r", exp=now + 4,
                                                 roles=["device", "dashboard"]))
        assert r["expiresAt"] == (now + 4 + 1) * 1000, r  # exp plus the grace
        await subscribe(ws, "devices/#", "devices/dev-r/control")
        # Told at half its life (refresh_notice_s is longer than it).
        told = await recv_type(ws, "token_expiring", timeout=5)
        assert told["expiresAt"] == r["expiresAt"]
        assert told["timestamp"] < told["expiresAt"]
        # A fresh token with device rights only: devices/# is no longer allowed.
        await ws.send(json.dumps({"type": "refresh", "id": "r1",
                                  "token": token_for(keys, "ES256", sub="dev-r",
                                                     exp=now + 60)}))
        done = await recv_type(ws, "refreshed")
        assert done == {"type": "refreshed", "id": "r1", "expiresAt": (now + 61) * 1000,
                        "unsubscribed": ["devices/#"]}
        a.wait_log(r'"detail":"refreshed; no longer allowed, unsubscribed: devices/#"')
        # Past the first expiry and its grace the connection is still there, with the new
        # rights: what it may still read arrives, what it may no longer read does not.
        await asyncio.sleep(max(0, now + 5.5 - time.time()))
        other, _ = await authenticated(a, token_for(keys, "ES256", sub="ctl",
                                                    roles=None,
                                                    acl={"publish": ["devices/#"]}))
        await publish(other, "devices/x/temp", 1)
        await publish(other, "devices/dev-r/control", {"go": 1})
        got = await recv_type(ws, "message")
        assert got["tag"] == "devices/dev-r/control", got
        await publish(ws, "devices/elsewhere/t", 1, qos=1, msgid="no")
        assert (await recv_type(ws, "error"))["code"] == "forbidden"
        await other.close()
        await ws.close()

        # Without a refresh: closed with 4401 once exp and the grace have passed.
        now = int(time.time())
        ws, r = await authenticated(a, token_for(keys, "ES256", sub="dev-x", exp=now + 2))
        started = time.time()
        code, reason = await closed_with(ws, timeout=6)
        assert (code, reason) == (4401, "Authentication expired")
        assert time.time() >= now + 2 + 1 - 0.05, "closed before exp + grace"
        assert time.time() - started < 5
        a.wait_log(r'"audit":"auth_failure".*"detail":"credentials expired"')
        await still_serves(a, keys)

    run(go())


def test_a_refused_refresh_is_an_error_and_the_connection_keeps_its_identity(agent_factory,
                                                                             keys):
    a = agent_factory(lifecycle_config(keys))

    async def go():
        ws, _ = await authenticated(a, token_for(keys, "ES256", sub="dev-k"))
        cases = {
            "bad signature": (token_for(keys, "ES256", sub="dev-k")[:-6] + "AAAAAA",
                              "refresh refused: JWT: bad signature"),
            "another client": (token_for(keys, "ES256", sub="dev-other"),
                               "refresh refused: the token stands for client 'dev-other', "
                               "not 'dev-k'"),
            "expired": (token_for(keys, "ES256", sub="dev-k", exp=int(time.time()) - 10),
                        "refresh refused: JWT: expired"),
        }
        for name, (token, message) in cases.items():
            await ws.send(json.dumps({"type": "refresh", "id": name, "token": token}))
            err = await recv_type(ws, "error")
            assert err == {"type": "error", "code": "unauthorized", "message": message,
                           "id": name}, err
        await ws.send(json.dumps({"type": "refresh", "id": "empty"}))
        assert (await recv_type(ws, "error"))["code"] == "bad_request"
        # Still itself, with its rights.
        await publish(ws, "devices/dev-k/t", 1, qos=1, msgid="m1")
        assert (await recv_type(ws, "ack"))["msgid"] == "m1"
        await ws.close()
        await still_serves(a, keys)

    run(go())


# --- MQTT 5 re-authentication (raw packets: the AUTH exchange is what is tested) ---

def connect_with_token(agent, client_id, token, method="token"):
    props = (b"\x15" + utf8(method) + b"\x16" + struct.pack("!H", len(token)) + token.encode())
    body = (utf8("MQTT") + bytes([5, 0x02]) + struct.pack("!H", 30) + varint(len(props)) +
            props + utf8(client_id))
    s = socket.create_connection(("127.0.0.1", agent.mqtt_port), timeout=5)
    s.sendall(packet(0x10, body))
    kind, ack = read_packet(s)
    assert kind == 0x20, kind
    n, at = read_varint(ack, 2)
    return s, ack[1], parse_props(ack[at:at + n])


def auth_packet(reason, token, method="token"):
    props = b"\x15" + utf8(method) + b"\x16" + struct.pack("!H", len(token)) + token.encode()
    return packet(0xF0, bytes([reason]) + varint(len(props)) + props)


def subscribe_packet(topic, packet_id=1):
    return packet(0x82, struct.pack("!H", packet_id) + b"\x00" + utf8(topic) + b"\x01")


def test_mqtt5_reauthenticates_with_auth_and_a_failed_one_disconnects(agent_factory, keys):
    a = agent_factory(lifecycle_config(keys))
    now = int(time.time())
    token = token_for(keys, "RS256", sub="m5", exp=now + 3, roles=["device", "dashboard"])
    s, code, props = connect_with_token(a, "m5", token)
    assert code == 0
    assert props[0x15] == [b"token"]  # the method, confirmed
    s.sendall(subscribe_packet("devices/#"))
    kind, body = read_packet(s)
    assert kind == 0x90 and body[-1] == 1, body
    # A fresh token, device rights only: AUTH Success, devices/# reported as removed.
    s.sendall(auth_packet(0x19, token_for(keys, "RS256", sub="m5", exp=now + 60)))
    kind, body = read_packet(s)
    assert kind == 0xF0 and body[0] == 0x00, (kind, body)
    n, at = read_varint(body, 1)
    got = parse_props(body[at:at + n])
    assert got[0x15] == [b"token"]
    assert got[0x26] == [(b"unsubscribed", b"devices/#")]
    # Past the first token's expiry (and the grace) the connection lives on.
    time.sleep(max(0, now + 4.5 - time.time()))
    s.sendall(packet(0xC0, b""))  # PINGREQ
    kind, _ = read_packet(s)
    assert kind == 0xD0
    # A re-authentication with a bad token ends it: DISCONNECT Not authorized.
    s.sendall(auth_packet(0x19, "not-a-token"))
    kind, body = read_packet(s)
    assert kind == 0xE0 and body[0] == 0x87, (kind, body)
    s.close()
    a.wait_log(r'"detail":"re-authentication refused: unknown token')

    # Another method than "token" is refused in CONNACK; AUTH without a method is a
    # protocol error.
    s, code, _ = connect_with_token(a, "m6", token, method="SCRAM-SHA-1")
    assert code == 0x8C
    s.close()
    fresh = token_for(keys, "RS256", sub="m7")
    s, code, _ = connect_with_token(a, "m7", fresh)
    assert code == 0
    s.sendall(auth_packet(0x19, fresh, method="other"))
    kind, body = read_packet(s)
    assert kind == 0xE0 and body[0] == 0x82, (kind, body)
    s.close()
    run(still_serves(a, keys))


def test_mqtt5_without_a_refresh_is_disconnected_at_expiry(agent_factory, keys):
    a = agent_factory(lifecycle_config(keys))
    now = int(time.time())
    s, code, _ = connect_with_token(a, "m8", token_for(keys, "ES256", sub="m8", exp=now + 2))
    assert code == 0
    s.settimeout(6)
    kind, body = read_packet(s)
    assert kind == 0xE0 and body[0] == 0xA0, (kind, body)  # Maximum connect time
    assert time.time() >= now + 3 - 0.05
    s.close()


# --- revocation and one-time tokens ---

def test_the_revocation_file_closes_live_clients_on_sighup(agent_factory, keys, tmp_path):
    revoked = tmp_path / "revoked.toml"
    revoked.write_text("jti = []\n")
    a = agent_factory(lifecycle_config(keys, f'revocations = "{revoked}"\n'))
    now = int(time.time())

    async def go():
        by_id, _ = await authenticated(a, token_for(keys, "ES256", sub="dev-a", jti="id-a"))
        old = token_for(keys, "ES256", sub="dev-b", jti="id-b1", iat=now - 100)
        by_subject, _ = await authenticated(a, old)
        kept, _ = await authenticated(a, token_for(keys, "ES256", sub="dev-c", jti="id-c"))
        revoked.write_text(f"""
jti = ["id-a"]

[[subject]]
sub = "dev-b"
issued_before = {now - 10}
""")
        a.signal(signal.SIGHUP)
        signalled = time.monotonic()
        for ws in (by_id, by_subject):
            code, reason = await closed_with(ws, timeout=3)
            assert (code, reason) == (4403, "Authentication revoked")
        assert time.monotonic() - signalled < 1.5
        a.wait_log(r'"audit":"auth_failure","clientId":"dev-a".*"detail":"closed: JWT: revoked \(jti\)"')
        a.wait_log(r'"clientId":"dev-b".*"detail":"closed: JWT: revoked \(its subject')
        # The others stay, and the revoked tokens are refused from now on; a token of dev-b
        # issued after the time is accepted.
        await publish(kept, "devices/dev-c/t", 1, qos=1, msgid="k1")
        assert (await recv_type(kept, "ack"))["msgid"] == "k1"
        assert await refused(a, token_for(keys, "ES256", sub="dev-a", jti="id-a")) == 4403
        a.wait_log(r'"detail":"JWT: revoked \(jti\)"')
        assert await refused(a, old) == 4403
        ws, r = await authenticated(a, token_for(keys, "ES256", sub="dev-b", jti="id-b2"))
        assert r["clientId"] == "dev-b"
        await ws.close()
        await kept.close()
        await still_serves(a, keys)

    run(go())


def test_a_broken_revocation_file_keeps_the_previous_one(agent_factory, keys, tmp_path):
    revoked = tmp_path / "revoked.toml"
    revoked.write_text('jti = ["id-x"]\n')
    a = agent_factory(lifecycle_config(keys, f'revocations = "{revoked}"\n'))

    async def go():
        assert await refused(a, token_for(keys, "ES256", sub="x", jti="id-x")) == 4403
        revoked.write_text('jti = ["id-x"]\n[[subject]]\nsub = "y"\nissued_before = "yesterday"\n')
        a.signal(signal.SIGHUP)
        a.wait_log(r"revoked.toml:4: subject.issued_before: expected a date-time")
        a.wait_log(r"reload failed: keeping the previous tokens and keys")
        assert await refused(a, token_for(keys, "ES256", sub="x", jti="id-x")) == 4403
        await still_serves(a, keys)

    run(go())


def test_a_one_time_token_is_refused_the_second_time(agent_factory, keys):
    a = agent_factory(lifecycle_config(keys))

    async def go():
        once = token_for(keys, "ES256", sub="new-device", jti="prov-1", once=True)
        ws, r = await authenticated(a, once)
        assert r["clientId"] == "new-device"
        await ws.close()
        assert await refused(a, once) == 4403
        a.wait_log(r'"detail":"JWT: one-time token already used"')
        # One without a jti cannot be one-time.
        assert await refused(a, token_for(keys, "ES256", sub="nd", once=True)) == 4403
        a.wait_log(r'"detail":"JWT: a one-time token needs jti and exp"')
        # Tokens that are not one-time may be used again.
        many = token_for(keys, "ES256", sub="dev-m", jti="m-1")
        for _ in range(2):
            ws, _ = await authenticated(a, many)
            await ws.close()
        await still_serves(a, keys)

    run(go())


def test_removing_a_static_token_on_sighup_closes_its_connections(agent_factory):
    tokens = """
[[auth.tokens]]
token = "tok-keep"
identity = "keeper"
roles = ["all"]
"""
    gone = """
[[auth.tokens]]
token = "tok-gone"
identity = "leaver"
roles = ["all"]
"""
    roles = """
[auth.roles.all]
publish = ["#"]
subscribe = ["#"]
"""
    a = agent_factory(tokens + gone + roles)

    async def go():
        keeper = await connect(a)
        await keeper.send(json.dumps({"type": "auth", "token": "tok-keep"}))
        await recv_type(keeper, "auth_response")
        leaver = await connect(a)
        await leaver.send(json.dumps({"type": "auth", "token": "tok-gone"}))
        await recv_type(leaver, "auth_response")
        a.config_path.write_text(tokens + roles)
        a.signal(signal.SIGHUP)
        code, reason = await closed_with(leaver, timeout=3)
        assert (code, reason) == (4403, "Authentication revoked")
        a.wait_log(r'"clientId":"leaver".*"detail":"closed: token removed from the configuration"')
        await subscribe(keeper, "k/#")
        await publish(keeper, "k/1", {"still": True})
        assert (await recv_type(keeper, "message"))["payload"] == {"still": True}
        await keeper.close()

    run(go())
