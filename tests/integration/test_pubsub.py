"""Routing: wildcards, fan-out, duplicates, device messages, batches, binary payloads, and the
project's own `wsagent pub` / `wsagent sub` against an independent client."""

import asyncio
import base64
import json
import os
import struct
import subprocess

from conftest import (BIN, auth, connect, nothing_for, publish, recv, recv_type, run, subscribe)


def test_wildcard_fan_out_to_many_subscribers(agent):
    async def go():
        subs = []
        filters = ["plant1/+/temp", "plant1/#", "+/line3/temp", "#"]
        for i in range(40):
            ws = await connect(agent)
            await auth(ws, client_id=f"s{i}")
            await subscribe(ws, filters[i % len(filters)])
            subs.append(ws)
        other = await connect(agent)
        await subscribe(other, "plant2/#")  # must not receive
        pub = await connect(agent)
        await auth(pub, client_id="sensor")
        await publish(pub, "plant1/line3/temp", 21.5, msgid="m-1")
        for ws in subs:
            m = await recv_type(ws, "message")
            assert m["tag"] == "plant1/line3/temp" and m["payload"] == 21.5
            assert m["from"] == "sensor" and m["msgid"] == "m-1"
            assert isinstance(m["timestamp"], int)
        await nothing_for(other, 0.3)
        for ws in subs + [other, pub]:
            await ws.close()
    run(go())


def test_overlapping_subscriptions_deliver_once(agent):
    async def go():
        ws = await connect(agent)
        await subscribe(ws, "a/+/c", "a/#", "#", "a/b/c")
        await publish(ws, "a/b/c", "once")
        m = await recv_type(ws, "message")
        assert m["payload"] == "once"
        await nothing_for(ws, 0.3)
        await ws.close()
    run(go())


def test_agent_assigns_msgid(agent):
    async def go():
        ws = await connect(agent)
        await subscribe(ws, "t")
        await publish(ws, "t", 1)
        await publish(ws, "t", 2)
        a = await recv_type(ws, "message")
        b = await recv_type(ws, "message")
        assert a["msgid"] and b["msgid"] and a["msgid"] != b["msgid"]
        assert (a["payload"], b["payload"]) == (1, 2)  # order is kept
        await ws.close()
    run(go())


def test_unsubscribe(agent):
    async def go():
        ws = await connect(agent)
        await subscribe(ws, "t/#")
        await ws.send(json.dumps({"type": "unsubscribe", "id": "u1", "tags": ["t/#"]}))
        r = await recv(ws)
        assert r == {"type": "unsubscribed", "id": "u1", "tags": ["t/#"]}
        await publish(ws, "t/x", 1)
        await nothing_for(ws, 0.3)
        await ws.close()
    run(go())


def test_typed_device_messages_as_in_the_iot_lesson(agent):
    """A device authenticates, sends status reports and obeys control frames; a dashboard
    sees its reports and commands it."""
    async def go():
        dash = await connect(agent)
        await auth(dash, client_id="dashboard")
        await subscribe(dash, "devices/+/status")
        dev = await connect(agent)
        r = await auth(dev, token="t", client_id="sensor-001")
        assert r["clientId"] == "sensor-001"
        report = {"type": "status", "deviceId": "sensor-001", "timestamp": 1700000000000,
                  "data": {"temp": 21.5, "battery": 87}}
        await dev.send(json.dumps(report))
        m = await recv_type(dash, "status")
        # The same object, with from, msgid and tag added; the device's timestamp is kept.
        assert m["deviceId"] == "sensor-001" and m["data"] == report["data"]
        assert m["timestamp"] == 1700000000000
        assert m["from"] == "sensor-001" and m["tag"] == "devices/sensor-001/status"
        assert m["msgid"]
        # A control frame 'to' the device reaches it without any subscription of its own.
        await dash.send(json.dumps({"type": "control", "to": "sensor-001",
                                    "command": "set_interval", "value": 5}))
        c = await recv_type(dev, "control")
        assert c["command"] == "set_interval" and c["value"] == 5
        assert c["from"] == "dashboard" and c["tag"] == "devices/sensor-001/control"
        assert isinstance(c["timestamp"], int)
        # An explicit tag wins over the devices/<id>/<type> default.
        await subscribe(dash, "alerts/#")
        await dev.send(json.dumps({"type": "alert", "tag": "alerts/plant1", "level": "high",
                                   "from": "someone-else"}))
        a = await recv_type(dash, "alert")
        assert a["tag"] == "alerts/plant1" and a["from"] == "sensor-001"  # no spoofing
        await dash.close()
        await dev.close()
    run(go())


def test_message_to_a_subscribed_client_arrives_once(agent):
    async def go():
        dev = await connect(agent)
        await auth(dev, client_id="d1")
        await subscribe(dev, "devices/d1/#")
        other = await connect(agent)
        await other.send(json.dumps({"type": "command", "to": "d1", "n": 1}))
        m = await recv_type(dev, "command")
        assert m["n"] == 1
        await nothing_for(dev, 0.3)
        await dev.close()
        await other.close()
    run(go())


def test_batch_routes_each_message(agent):
    async def go():
        ws = await connect(agent)
        await auth(ws, client_id="batcher")
        await subscribe(ws, "b/#", "devices/batcher/#")
        await ws.send(json.dumps({"type": "batch", "id": "b1", "messages": [
            {"type": "publish", "tag": "b/1", "payload": 1},
            {"type": "reading", "value": 2},
            {"type": "publish", "tag": "b/3", "payload": {"v": 3}},
        ]}))
        got = [await recv(ws) for _ in range(3)]
        assert [g.get("tag") for g in got] == ["b/1", "devices/batcher/reading", "b/3"]
        assert got[1]["value"] == 2 and got[2]["payload"] == {"v": 3}
        await ws.close()
    run(go())


def binary_publish(tag, payload, msgid=b""):
    t = tag.encode()
    return bytes([1, 0]) + struct.pack("!H", len(t)) + t + bytes([len(msgid)]) + msgid + payload


def test_binary_payload_to_json_and_binary_subscribers(agent):
    blob = bytes(range(256)) + b"\x00protobuf\xff"

    async def go():
        json_sub = await connect(agent)
        await subscribe(json_sub, "cam/#")
        bin_sub = await connect(agent, query="binary=1")
        await subscribe(bin_sub, "cam/#")
        pub = await connect(agent)
        await auth(pub, client_id="cam-1")
        await pub.send(binary_publish("cam/frame", blob, b"f-1"))
        m = await recv_type(json_sub, "message")
        assert m["encoding"] == "base64" and base64.b64decode(m["payload"]) == blob
        assert m["msgid"] == "f-1" and m["from"] == "cam-1"
        frame = await recv(bin_sub)
        assert isinstance(frame, bytes) and frame[0] == 2
        tag_len = struct.unpack("!H", frame[2:4])[0]
        pos = 4 + tag_len
        assert frame[4:pos] == b"cam/frame"
        from_len = frame[pos]; pos += 1
        assert frame[pos:pos + from_len] == b"cam-1"; pos += from_len
        id_len = frame[pos]; pos += 1
        assert frame[pos:pos + id_len] == b"f-1"; pos += id_len
        pos += 8  # timestamp
        assert frame[pos:] == blob
        # A malformed envelope gets an error, not a crash.
        await pub.send(b"\x09garbage")
        e = await recv_type(pub, "error")
        assert e["code"] == "bad_request"
        for w in (json_sub, bin_sub, pub):
            await w.close()
    run(go())


def cli(*args, timeout=15, input=None):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout, input=input)


def test_cli_sub_and_pub(agent):
    port = str(agent.port)
    sub = subprocess.Popen([BIN, "sub", "-p", port, "-t", "cli/+", "-v", "-C", "3", "-W", "10"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    agent.wait_subscriptions(1)  # the subscriber is in before we publish
    assert cli("pub", "-p", port, "-t", "cli/a", "-m", "hello").returncode == 0
    assert cli("pub", "-p", port, "-t", "cli/b", "-m", '{"t":1}').returncode == 0
    assert cli("pub", "--url", f"ws://127.0.0.1:{port}/ws", "-t", "cli/c", "-m", "42",
               "--string").returncode == 0
    out, err = sub.communicate(timeout=15)
    assert sub.returncode == 0, err
    assert out.splitlines() == ["cli/a hello", 'cli/b {"t":1}', "cli/c 42"]


def test_cli_sub_times_out_with_27(agent):
    r = cli("sub", "-p", str(agent.port), "-t", "nothing/here", "-W", "1")
    assert r.returncode == 27


def test_cli_pub_reports_refusals(agent):
    r = cli("pub", "-p", str(agent.port), "-t", "bad/#", "-m", "x")
    assert r.returncode == 1 and "invalid_tag" in r.stderr


def test_cli_and_python_clients_interoperate(agent):
    """The project's own client and python3-websockets, both ways."""
    port = str(agent.port)

    async def go():
        ws = await connect(agent)
        await subscribe(ws, "mix/#")
        r = cli("pub", "-p", port, "-t", "mix/from-cli", "-m", '{"n":[1,2,3]}', "-i", "cli-pub")
        assert r.returncode == 0, r.stderr
        m = await recv_type(ws, "message")
        assert m["payload"] == {"n": [1, 2, 3]} and m["from"] == "cli-pub"
        sub = subprocess.Popen([BIN, "sub", "-p", port, "-t", "mix/to-cli", "--json", "-C", "1",
                                "-W", "10"], stdout=subprocess.PIPE, text=True)
        await asyncio.get_running_loop().run_in_executor(None, agent.wait_subscriptions, 2)
        await publish(ws, "mix/to-cli", {"k": "v"})
        out, _ = sub.communicate(timeout=15)
        frame = json.loads(out)
        assert frame["type"] == "message" and frame["payload"] == {"k": "v"}
        await ws.close()
    run(go())


def test_cli_binary_publish_reaches_binary_subscriber(agent):
    port = str(agent.port)
    sub = subprocess.Popen([BIN, "sub", "-p", port, "-t", "raw", "--binary", "-C", "1", "-W", "10"],
                           stdout=subprocess.PIPE, text=True)
    agent.wait_subscriptions(1)
    assert cli("pub", "-p", port, "-t", "raw", "-m", "bytes as they are", "--binary").returncode == 0
    out, _ = sub.communicate(timeout=15)
    assert out == "bytes as they are\n"


def test_writes_are_batched(agent_factory):
    """Frames queued for a connection since its last write leave in one gather write."""
    a = agent_factory("[server]\nthreads = 1\n")

    async def go():
        sub = await connect(a)
        await subscribe(sub, "burst")
        pub = await connect(a)
        before = a.health()
        n = 200
        await pub.send(json.dumps({"type": "batch", "messages": [
            {"type": "publish", "tag": "burst", "payload": i} for i in range(n)]}))
        got = [(await recv_type(sub, "message"))["payload"] for _ in range(n)]
        assert got == list(range(n))
        after = a.health()
        frames = after["frames_out"] - before["frames_out"]
        writes = after["writes"] - before["writes"]
        assert frames >= n
        # One write per frame would be 200; batching needs a handful (at most 64 per write).
        assert writes <= frames // 10, (writes, frames)
        await sub.close()
        await pub.close()
    run(go())
