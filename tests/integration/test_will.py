"""Last will, presence events and message expiry on the native protocol."""
import json
import time

from conftest import (OPEN, RawWs, client, close_all, connect, nothing_for, publish, recv,
                      recv_type, run, sub)


def raw_client(agent, name, will):
    """A device on a raw socket, so that the test can drop it without a close frame."""
    raw = RawWs(agent.port)
    assert raw.status == 101
    raw.send_frame(0x1, json.dumps({"type": "auth", "deviceId": name, "will": will}).encode())
    op, payload = raw.recv_frame()
    assert json.loads(payload)["type"] == "auth_response"
    return raw


WILL = {"tag": "devices/d1/status", "payload": {"online": False}, "retain": True}


def test_the_will_is_published_when_the_connection_drops(agent):
    async def go():
        watcher = await client(agent, "watcher")
        await sub(watcher, "devices/#", qos=0)
        raw = raw_client(agent, "d1", WILL)
        raw.sock.close()  # no close frame: the device vanished
        m = await recv_type(watcher, "message")
        assert m["tag"] == "devices/d1/status" and m["payload"] == {"online": False}
        assert m["from"] == "d1"
        # Retained: a dashboard opened later sees the device offline.
        late = await client(agent, "late")
        await sub(late, "devices/+/status", qos=0)
        m = await recv_type(late, "message")
        assert m["retained"] is True and m["payload"] == {"online": False}
        await close_all()
    run(go())


def test_no_will_after_a_clean_goodbye_or_a_takeover(agent):
    async def go():
        watcher = await client(agent, "watcher")
        await sub(watcher, "devices/#", qos=0)
        raw = raw_client(agent, "d1", WILL)
        raw.send_frame(0x8, (1000).to_bytes(2, "big"))  # close 1000: goodbye
        raw.recv_frame()
        raw.sock.close()
        await nothing_for(watcher, 0.5)
        old = raw_client(agent, "d1", WILL)
        new = raw_client(agent, "d1", {"tag": "devices/d1/x", "payload": 1})  # takes over
        await nothing_for(watcher, 0.5)
        old.sock.close()
        new.sock.close()  # now the new one's will goes
        m = await recv_type(watcher, "message")
        assert m["tag"] == "devices/d1/x"
        await close_all()
    run(go())


def test_a_will_must_be_a_valid_tag_the_client_may_publish(agent_factory, tmp_path):
    tokens = tmp_path / "tokens.toml"
    tokens.write_text('''
[[tokens]]
token = "dev-token"
identity = "d1"
roles = ["device"]

[roles.device]
publish = ["devices/%c/#"]
subscribe = ["devices/%c/#"]
''')
    agent = agent_factory(config=f'[auth]\ntokens_file = "{tokens}"\n')

    async def go():
        ws = await connect(agent)
        OPEN.append(ws)
        await ws.send(json.dumps({"type": "auth", "token": "dev-token", "id": "a1",
                                  "will": {"tag": "a/+", "payload": 1}}))
        e = await recv_type(ws, "error")
        assert e["code"] == "invalid_tag" and e["id"] == "a1"
        await ws.send(json.dumps({"type": "auth", "token": "dev-token", "id": "a2",
                                  "will": {"tag": "devices/d2/status", "payload": 1}}))
        e = await recv(ws)
        assert e["type"] == "error" and e["code"] == "forbidden" and "will" in e["message"]
        assert (await recv(ws))["type"] == "auth_response"  # authenticated, without a will
        await close_all()
    run(go())


def test_presence_events_for_connect_and_disconnect(agent):
    async def go():
        dash = await client(agent, "dash")
        await sub(dash, "$sys/clients/#", qos=0)
        dev = await client(agent, "dev-7")
        m = await recv_type(dash, "message")
        assert m["tag"] == "$sys/clients/dev-7/connected"
        assert m["payload"]["clientId"] == "dev-7" and ":" in m["payload"]["remote"]
        await dev.close()
        OPEN.remove(dev)
        m = await recv_type(dash, "message")
        assert m["tag"] == "$sys/clients/dev-7/disconnected"
        assert m["payload"] == {"clientId": "dev-7", "clean": True,
                                "timestamp": m["payload"]["timestamp"]}
        await close_all()
    run(go())


def test_expired_messages_are_never_delivered(agent_factory):
    agent = agent_factory(args=["--limits.max_inflight", "1"])

    async def go():
        pub = await client(agent, "pub")
        s = await client(agent, "s")
        await sub(s, "e/#", qos=1)
        await publish(pub, "e/1", "first", qos=1)
        await publish(pub, "e/1", "short-lived", qos=1, expiry=1)
        await publish(pub, "e/1", "last", qos=1)
        await publish(pub, "e/r", "gone soon", retain=True, expiry=1)
        first = await recv_type(s, "message")
        assert first["payload"] == "first"
        await recv_type(s, "message")  # the retained one, live
        time.sleep(1.2)
        await s.send(json.dumps({"type": "ack", "seq": first["seq"]}))
        m = await recv_type(s, "message")
        assert m["payload"] == "last"  # the expired one was skipped
        late = await client(agent, "late")
        await sub(late, "e/#", qos=0)
        await nothing_for(late, 0.3)  # the retained one expired too
        await close_all()
    run(go())
