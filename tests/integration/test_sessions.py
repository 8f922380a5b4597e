"""Persistent sessions on the native protocol: subscriptions and QoS 1 messages kept while the
client is away, resumed in order, forgotten by a clean session or after the expiry."""
import asyncio
import json
import time

import pytest

from conftest import connect, nothing_for, publish, recv, recv_type, run

OPEN = []


@pytest.fixture(autouse=True)
def _no_clients_left():
    OPEN.clear()


async def session(agent, name, persistent=True, expiry=None, query=""):
    ws = await connect(agent, query=query)
    OPEN.append(ws)
    frame = {"type": "auth", "deviceId": name}
    if persistent:
        frame["session"] = "persistent"
    if expiry:
        frame["expiry"] = expiry
    await ws.send(json.dumps(frame))
    return ws, await recv_type(ws, "auth_response")


async def drop(ws):
    await ws.close()
    OPEN.remove(ws)


async def close_all():
    await asyncio.gather(*(ws.close() for ws in OPEN))
    OPEN.clear()


async def sub(ws, *tags, qos=1):
    await ws.send(json.dumps({"type": "subscribe", "id": "s", "tags": list(tags), "qos": qos}))
    assert (await recv(ws))["type"] == "subscribed"


async def publish_acked(pub, tag, payload):
    await publish(pub, tag, payload, qos=1)
    await recv_type(pub, "ack")


def test_a_resumed_session_gets_what_it_missed_in_order_and_keeps_its_subscriptions(agent):
    async def go():
        sub_ws, r = await session(agent, "dash-1")
        assert r["session"] == "persistent" and r["resumed"] is False
        await sub(sub_ws, "plant/#")
        await drop(sub_ws)
        pub, _ = await session(agent, "pub", persistent=False)
        for i in range(5):
            await publish_acked(pub, "plant/t", i)
        await publish(pub, "plant/t", "qos0-while-away")  # QoS 0: not kept
        back, r = await session(agent, "dash-1")
        assert r["resumed"] is True
        got = [await recv_type(back, "message") for _ in range(5)]
        assert [m["payload"] for m in got] == [0, 1, 2, 3, 4]
        for m in got:
            await back.send(json.dumps({"type": "ack", "seq": m["seq"]}))
        await nothing_for(back, 0.3)
        # Still subscribed: no subscribe needed after the resume.
        await publish_acked(pub, "plant/t", "live")
        assert (await recv_type(back, "message"))["payload"] == "live"
        await close_all()
    run(go())


def test_unacknowledged_deliveries_come_again_flagged_dup(agent):
    async def go():
        s, _ = await session(agent, "dev-2")
        await sub(s, "cmd/#")
        pub, _ = await session(agent, "pub", persistent=False)
        await publish_acked(pub, "cmd/x", "reboot")
        first = await recv_type(s, "message")
        await drop(s)  # never acknowledged
        back, r = await session(agent, "dev-2")
        assert r["resumed"] is True
        again = await recv_type(back, "message")
        assert again["seq"] == first["seq"] and again["dup"] is True
        assert again["payload"] == "reboot"
        await close_all()
    run(go())


def test_a_clean_session_forgets_the_persistent_one(agent):
    async def go():
        s, _ = await session(agent, "dev-3")
        await sub(s, "x/#")
        await drop(s)
        pub, _ = await session(agent, "pub", persistent=False)
        await publish_acked(pub, "x/1", 1)
        clean, r = await session(agent, "dev-3", persistent=False)
        assert "resumed" not in r
        await nothing_for(clean, 0.3)
        await drop(clean)
        again, r = await session(agent, "dev-3")
        assert r["resumed"] is False
        await publish_acked(pub, "x/1", 2)
        await nothing_for(again, 0.3)  # its subscriptions went with the clean session
        await close_all()
    run(go())


def test_an_expired_session_is_gone(agent):
    async def go():
        s, _ = await session(agent, "dev-4", expiry=1)
        await sub(s, "y/#")
        await drop(s)
        time.sleep(2.5)  # expiry 1 s, checked every second
        back, r = await session(agent, "dev-4", expiry=1)
        assert r["resumed"] is False
        await close_all()
    run(go())


def test_a_takeover_of_a_live_persistent_session_keeps_its_messages(agent):
    async def go():
        old, _ = await session(agent, "dev-5")
        await sub(old, "z/#")
        pub, _ = await session(agent, "pub", persistent=False)
        await publish_acked(pub, "z/1", "a")
        first = await recv_type(old, "message")
        new, r = await session(agent, "dev-5")  # the same device, on a new connection
        assert r["resumed"] is True
        again = await recv_type(new, "message")
        assert again["seq"] == first["seq"] and again["dup"] is True
        await publish_acked(pub, "z/1", "b")
        assert (await recv_type(new, "message"))["payload"] == "b"
        await close_all()
    run(go())


def test_the_query_asks_for_a_persistent_session_too_and_an_unnamed_client_gets_a_clean_one(agent):
    async def go():
        s, r = await session(agent, "dev-6", persistent=False,
                             query="clientId=dev-6&session=persistent&expiry=60")
        assert r["session"] == "persistent"
        anon = await connect(agent)
        OPEN.append(anon)
        await anon.send(json.dumps({"type": "auth", "session": "persistent"}))
        r = await recv_type(anon, "auth_response")
        assert r["clientId"].startswith("anon-") and "session" not in r
        await anon.send(json.dumps({"type": "auth", "session": "forever", "id": "bad"}))
        e = await recv_type(anon, "error")
        assert e["code"] == "bad_request" and e["id"] == "bad"
        await close_all()
    run(go())
