"""Authentication: by header, query and frame; failures; timeouts; takeover; reload."""

import asyncio
import json
import signal

import websockets

from conftest import (auth, closed_with, connect, nothing_for, publish, recv, recv_type, run,
                      still_serves, subscribe)

TOKENS = """
[heartbeat]
auth_timeout_ms = 600

[[auth.tokens]]
token = "device-secret"
identity = "sensor-001"
roles = ["device"]

[[auth.tokens]]
token_sha256 = "8d9c9f5bbb6f8cb9ae49d3f47d6b3f1c2cb8f7ce9bb96f41bbf83a0e43a48f87"
user = "ops"
roles = ["dashboard"]

[[auth.tokens]]
token = "dash-secret"
user = "dash"
roles = ["dashboard"]

[auth.roles.device]
publish = ["devices/%c/#"]
subscribe = ["devices/%c/control"]

[auth.roles.dashboard]
publish = ["devices/+/control"]
subscribe = ["devices/#", "$sys/#"]
"""


def test_token_in_authorization_header(agent_factory):
    a = agent_factory(TOKENS)

    async def go():
        ws = await connect(a, headers={"Authorization": "Bearer device-secret"})
        # Authenticated by the upgrade: the auth frame is answered with the token's identity.
        r = await auth(ws)
        assert r["status"] == "success" and r["clientId"] == "sensor-001"
        assert isinstance(r["timestamp"], int)
        await ws.close()
    run(go())
    a.wait_log(r'"audit":"auth_success","clientId":"sensor-001"')


def test_token_in_query_for_browsers(agent_factory):
    a = agent_factory(TOKENS)

    async def go():
        ws = await connect(a, query="token=dash-secret&clientId=dash-7")
        r = await auth(ws)
        assert r["clientId"] == "dash-7"
        await subscribe(ws, "devices/+/status")
        await ws.close()
    run(go())


def test_token_in_first_frame_and_device_id(agent_factory):
    a = agent_factory(TOKENS)

    async def go():
        ws = await connect(a)
        r = await auth(ws, token="dash-secret", client_id="panel-3")
        assert r == {**r, "type": "auth_response", "status": "success", "clientId": "panel-3"}
        await ws.close()
    run(go())


def test_token_stored_as_sha256(agent_factory):
    # sha256("ops-secret") is configured, not the secret itself.
    import hashlib
    digest = hashlib.sha256(b"ops-secret").hexdigest()
    a = agent_factory(TOKENS.replace(
        "8d9c9f5bbb6f8cb9ae49d3f47d6b3f1c2cb8f7ce9bb96f41bbf83a0e43a48f87", digest))

    async def go():
        ws = await connect(a)
        r = await auth(ws, token="ops-secret", client_id="ops-1")
        assert r["clientId"] == "ops-1"
        await ws.close()
    run(go())


def test_wrong_token_closes_4403(agent_factory):
    a = agent_factory(TOKENS)

    async def go():
        ws = await connect(a)
        await ws.send(json.dumps({"type": "auth", "token": "guess", "deviceId": "x"}))
        assert await closed_with(ws) == (4403, "Authentication failed")
        ws = await connect(a, headers={"Authorization": "Bearer guess"})
        code, _ = await closed_with(ws)
        assert code == 4403
        await still_serves_with_token(a)
    run(go())
    a.wait_log(r'"audit":"auth_failure".*"detail":"unknown token"')


async def still_serves_with_token(a):
    sub = await connect(a, headers={"Authorization": "Bearer dash-secret"})
    dev = await connect(a, headers={"Authorization": "Bearer device-secret"})
    await subscribe(sub, "devices/+/status")
    await publish(dev, "devices/sensor-001/status", {"ok": 1})
    m = await recv_type(sub, "message")
    assert m["from"] == "sensor-001" and m["payload"] == {"ok": 1}
    await sub.close()
    await dev.close()


def test_no_auth_in_time_closes_4401(agent_factory):
    a = agent_factory(TOKENS)

    async def go():
        ws = await connect(a)
        code, reason = await closed_with(ws, timeout=5)
        assert code == 4401 and reason == "Authentication timeout"
    run(go())


def test_request_before_auth_closes_4401(agent_factory):
    a = agent_factory(TOKENS)

    async def go():
        ws = await connect(a)
        await subscribe_raw(ws)
        assert await closed_with(ws) == (4401, "Authentication required")
        await still_serves_with_token(a)
    run(go())


async def subscribe_raw(ws):
    await ws.send(json.dumps({"type": "subscribe", "tags": ["devices/#"]}))


def test_open_mode_accepts_everyone_and_answers_auth(agent):
    async def go():
        ws = await connect(agent)
        # Without an auth frame, requests are served at once...
        await subscribe(ws, "a/#")
        # ...and an auth frame, with or without a token, is answered with success.
        r = await auth(ws, token="anything")
        assert r["status"] == "success" and r["clientId"].startswith("anon-")
        ws2 = await connect(agent)
        r2 = await auth(ws2, client_id="sensor-001")
        assert r2["clientId"] == "sensor-001"
        await ws.close()
        await ws2.close()
    run(go())
    agent.wait_log("OPEN ACCESS")


def test_invalid_client_id_is_refused(agent):
    async def go():
        ws = await connect(agent)
        await ws.send(json.dumps({"type": "auth", "deviceId": "a/#"}))
        e = await recv_type(ws, "error")
        assert e["code"] == "bad_request" and "client id" in e["message"]
        await ws.close()
        await still_serves(agent)
    run(go())


def test_takeover_closes_the_older_connection_4409(agent):
    async def go():
        old = await connect(agent)
        await auth(old, client_id="dev-1")
        await subscribe(old, "x")
        new = await connect(agent)
        await auth(new, client_id="dev-1")
        assert await closed_with(old) == (4409, "Session taken over")
        # The new connection owns the id: a message 'to' dev-1 reaches it.
        sender = await connect(agent)
        await sender.send(json.dumps({"type": "command", "to": "dev-1", "op": "blink"}))
        m = await recv_type(new, "command")
        assert m["op"] == "blink" and m["tag"] == "devices/dev-1/command"
        for w in (new, sender):
            await w.close()
    run(go())
    agent.wait_log(r'"audit":"takeover","clientId":"dev-1"')


def test_sighup_reloads_tokens_without_dropping_connections_whose_token_stays(agent_factory,
                                                                             tmp_path):
    tokens = tmp_path / "tokens.toml"
    tokens.write_text("""
[[tokens]]
token = "kept"
user = "k"
roles = ["all"]
[[tokens]]
token = "first"
user = "u"
roles = ["all"]
[roles.all]
publish = ["#"]
subscribe = ["#"]
""")
    a = agent_factory(f'[auth]\ntokens_file = "{tokens}"\n')

    async def go():
        keep = await connect(a, headers={"Authorization": "Bearer kept"})
        await subscribe(keep, "t")
        old = await connect(a, headers={"Authorization": "Bearer first"})
        tokens.write_text(tokens.read_text().replace('"first"', '"second"'))
        a.signal(signal.SIGHUP)
        a.wait_log("reload: 2 token")
        # The connection whose token was removed is closed (docs/operations.md)...
        assert (await closed_with(old)) == (4403, "Authentication revoked")
        # ...the old token is gone for new connections...
        ws = await connect(a, headers={"Authorization": "Bearer first"})
        assert (await closed_with(ws))[0] == 4403
        # ...the new one works...
        ws = await connect(a, headers={"Authorization": "Bearer second"})
        await publish(ws, "t", 1)
        # ...and the connection whose token stayed is still served.
        m = await recv_type(keep, "message")
        assert m["payload"] == 1
        await ws.close()
        await keep.close()
    run(go())
    a.wait_log(r'"audit":"admin".*SIGHUP')


def test_sighup_with_a_broken_file_keeps_the_old_tokens(agent_factory, tmp_path):
    tokens = tmp_path / "tokens.toml"
    tokens.write_text('[[tokens]]\ntoken = "first"\nuser = "u"\nroles = []\n')
    a = agent_factory(f'[auth]\ntokens_file = "{tokens}"\n')
    tokens.write_text("[[tokens]\nbroken = \n")
    a.reload_until("reload failed")

    async def go():
        ws = await connect(a, headers={"Authorization": "Bearer first"})
        r = await auth(ws)
        assert r["status"] == "success"
        await ws.close()
    run(go())


def test_a_client_id_fixed_by_a_token_cannot_be_claimed_by_another(agent_factory):
    """sensor-001 is the identity of the device token: a dashboard token may not use it and so
    cannot take the device's session over or receive its commands."""
    a = agent_factory(TOKENS)

    async def go():
        dev = await connect(a, headers={"Authorization": "Bearer device-secret"})
        await subscribe(dev, "devices/sensor-001/control")
        thief = await connect(a)
        await thief.send(json.dumps({"type": "auth", "token": "dash-secret", "deviceId": "sensor-001",
                                     "id": "a1"}))
        e = await recv_type(thief, "error")
        assert e["code"] == "forbidden" and e["id"] == "a1" and "belongs to another token" in e["message"]
        # The device is still connected and still gets its commands.
        ctl = await connect(a, headers={"Authorization": "Bearer dash-secret"})
        await ctl.send(json.dumps({"type": "control", "to": "sensor-001", "op": "x"}))
        assert (await recv_type(dev, "control"))["op"] == "x"
        for w in (dev, thief, ctl):
            await w.close()
    run(go())
    a.wait_log(r'"audit":"forbidden","clientId":"sensor-001".*belongs to another token')


DENY = """
[auth]
anonymous_role = "guest"

[[auth.tokens]]
token = "staff-secret"
roles = ["staff"]

[[auth.tokens]]
token = "ops-secret"
roles = ["ops"]

[auth.roles.staff]
publish = ["#"]
subscribe = ["#"]
deny_publish = ["secret/#"]
deny_subscribe = ["secret/#"]

[auth.roles.ops]
publish = ["#"]
subscribe = ["#"]

[auth.roles.guest]
subscribe = ["public/#"]
"""


def test_deny_rules_read_as_written_on_both_protocols(agent_factory):
    """A role that allows "#" but denies "secret/#": it subscribes to "#" and never receives a
    secret message (live, retained, over MQTT too), cannot subscribe to secret/# (native:
    forbidden; MQTT: SUBACK 0x80 / 0x87 for that filter while the others of the packet
    succeed) nor publish there. Clients without a token get the anonymous role's rights."""
    import paho.mqtt.client as paho
    from test_mqtt import mqtt_client, stop

    agent = agent_factory(config=DENY)
    bearer = lambda t: {"Authorization": f"Bearer {t}"}  # noqa: E731

    async def go():
        ops = await connect(agent, headers=bearer("ops-secret"))
        await publish(ops, "secret/kept", {"s": 0}, retain=True)
        staff = await connect(agent, headers=bearer("staff-secret"))
        await subscribe(staff, "#")  # allowed: it only overlaps the denied tags
        await staff.send(json.dumps({"type": "subscribe", "id": "s2", "tags": ["secret/#"]}))
        e = await recv_type(staff, "error")
        assert e["code"] == "forbidden" and e["id"] == "s2"
        await publish(staff, "secret/x", 1)
        assert (await recv_type(staff, "error"))["code"] == "forbidden"
        # Live, from native and from MQTT: the secret ones never arrive, the rest do.
        m_ops = mqtt_client(agent, "ops-mqtt", username="ops", password="ops-secret")
        m_ops.publish("secret/from-mqtt", b"1", qos=1).wait_for_publish(5)
        await publish(ops, "secret/live", {"s": 1})
        await publish(ops, "public/x", {"p": 1})
        m = await recv_type(staff, "message")
        assert m["tag"] == "public/x", m
        await subscribe(staff, "+/kept")  # the retained secret message is not handed over
        await nothing_for(staff, 0.3)
        stop(m_ops)
        # MQTT, 3.1.1 and 5.0: the denied filter alone is refused in the SUBACK.
        loop = asyncio.get_running_loop()
        for version, refused in ((paho.MQTTv311, 0x80), (paho.MQTTv5, 0x87)):
            c = mqtt_client(agent, f"staff-{version}", version=version, username="staff",
                            password="staff-secret")
            done = loop.create_future()

            def on_subscribe(cl, ud, mid, codes, props=None, done=done):
                codes = [x.value if hasattr(x, "value") else x for x in codes]
                loop.call_soon_threadsafe(done.set_result, codes)
            c.on_subscribe = on_subscribe
            c.subscribe([("#", 0), ("secret/#", 0), ("public/+", 0)])
            assert await asyncio.wait_for(done, 5) == [0, refused, 0]
            stop(c)
        # The anonymous role: in with no token, with its rights only.
        guest = await connect(agent)
        await guest.send(json.dumps({"type": "auth"}))
        await recv_type(guest, "auth_response")
        await subscribe(guest, "public/#")
        await guest.send(json.dumps({"type": "subscribe", "id": "g", "tags": ["#"]}))
        assert (await recv_type(guest, "error"))["code"] == "forbidden"
        await publish(guest, "public/y", 2)
        assert (await recv_type(guest, "error"))["code"] == "forbidden"
        await publish(ops, "public/z", 3)
        assert (await recv_type(guest, "message"))["tag"] == "public/z"
        for ws in (ops, staff, guest):
            await ws.close()
    run(go())


def test_open_mode_with_an_anonymous_role_grants_only_that_role(agent_factory):
    agent = agent_factory(config='[auth]\nanonymous_role = "reader"\n'
                                 '[auth.roles.reader]\nsubscribe = ["public/#"]\n')
    agent.wait_log("OPEN ACCESS with the rights of role 'reader'")

    async def go():
        ws = await connect(agent)
        await subscribe(ws, "public/#")
        await publish(ws, "public/x", 1)
        assert (await recv_type(ws, "error"))["code"] == "forbidden"
        await ws.close()
    run(go())
