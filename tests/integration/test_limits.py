"""Configured limits are enforced: connections, subscriptions, tags, batches, slow consumers,
heartbeats. Each refusal is clear and leaves other clients alone."""

import asyncio
import json
import time

import pytest
import websockets

from conftest import (RawWs, auth, closed_with, connect, nothing_for, publish, recv, recv_type,
                      run, still_serves, subscribe)


def test_global_connection_limit(agent_factory):
    a = agent_factory("[limits]\nmax_connections = 3\n")

    async def go():
        held = [await connect(a) for _ in range(3)]
        with pytest.raises(websockets.InvalidStatusCode) as e:
            await connect(a)
        assert e.value.status_code == 503
        await held[0].close()
        await asyncio.sleep(0.2)
        again = await connect(a)  # a freed place is reused
        await subscribe(again, "x")
        for ws in held[1:] + [again]:
            await ws.close()
    run(go())
    a.wait_log("connection limit reached")


def test_per_address_connection_limit(agent_factory):
    a = agent_factory("[limits]\nmax_connections_per_ip = 2\n")

    async def go():
        held = [await connect(a) for _ in range(2)]
        with pytest.raises(websockets.InvalidStatusCode) as e:
            await connect(a)
        assert e.value.status_code == 503
        for ws in held:
            await ws.close()
        await asyncio.sleep(0.2)
        await still_serves(a)
    run(go())


def test_subscription_limit(agent_factory):
    a = agent_factory("[limits]\nmax_subscriptions = 3\n")

    async def go():
        ws = await connect(a)
        await subscribe(ws, "a", "b")
        await ws.send(json.dumps({"type": "subscribe", "id": "s2", "tags": ["c", "d"]}))
        e = await recv_type(ws, "error")
        assert e["code"] == "limit_exceeded" and e["id"] == "s2"
        await subscribe(ws, "a", "c")  # 'a' is not new: 3 in all
        await ws.close()
    run(go())


def test_tag_length_and_depth(agent_factory):
    a = agent_factory("[limits]\nmax_tag_length = 32\nmax_tag_depth = 3\n")

    async def go():
        ws = await connect(a)
        await publish(ws, "a/b/c/d", 1)
        e = await recv_type(ws, "error")
        assert e["code"] == "invalid_tag" and "too many levels" in e["message"]
        await publish(ws, "x" * 33, 1)
        e = await recv_type(ws, "error")
        assert e["code"] == "invalid_tag" and "too long" in e["message"]
        await ws.send(json.dumps({"type": "subscribe", "tags": ["a/b/c/#"]}))
        assert (await recv_type(ws, "error"))["code"] == "invalid_tag"
        await subscribe(ws, "a/b/#")
        await ws.close()
    run(go())


def test_batch_limit(agent_factory):
    a = agent_factory("[limits]\nmax_batch = 2\n")

    async def go():
        ws = await connect(a)
        await subscribe(ws, "b")
        msgs = [{"type": "publish", "tag": "b", "payload": i} for i in range(3)]
        await ws.send(json.dumps({"type": "batch", "id": "big", "messages": msgs}))
        e = await recv_type(ws, "error")
        assert e["code"] == "limit_exceeded" and e["id"] == "big"
        await nothing_for(ws, 0.2)  # refused whole: nothing was routed
        await ws.close()
    run(go())


SLOW = """
[limits]
outbound_queue = 16
slow_consumer_timeout_ms = 500
"""


def test_slow_consumer_does_not_delay_a_fast_one_and_is_closed_4008(agent_factory):
    a = agent_factory(SLOW)
    slow = RawWs(a.port)
    slow.send_frame(0x1, b'{"type":"subscribe","id":"s","tags":["flood"]}')
    assert json.loads(slow.recv_frame()[1])["type"] == "subscribed"
    # From here on the slow client reads nothing until the agent gives up on it; then it
    # drains its socket (what was in flight) and must find the close frame.
    import threading
    result = {}

    def drain_after_verdict():
        try:
            a.wait_log("closing slow consumer", timeout=20)
            result["code"] = slow.recv_close()
        except Exception as e:  # reported by the assertion below
            result["error"] = repr(e)

    t = threading.Thread(target=drain_after_verdict)
    t.start()

    async def go():
        fast = await connect(a)
        await subscribe(fast, "flood")
        pub = await connect(a)
        payload = "x" * 60000
        n = 300  # ~18 MB: far more than the socket buffers of the slow client hold
        start = time.monotonic()
        for i in range(n):
            # Lockstep: each message must reach the fast consumer while the slow one is stuck.
            await publish(pub, "flood", payload, msgid=str(i))
            m = await recv_type(fast, "message", timeout=5)
            assert m["msgid"] == str(i) and m["payload"] == payload
        elapsed = time.monotonic() - start
        await pub.close()
        await fast.close()
        return elapsed

    elapsed = run(go())
    t.join(25)
    assert result.get("code") == 4008, result
    health = a.health()
    assert health["dropped"] > 0 and health["slow_consumer_closes"] == 1
    slow.close()
    assert elapsed < 15
    run(still_serves(a))


HEARTBEAT = """
[heartbeat]
ping_interval_ms = 200
idle_timeout_ms = 700
"""


def test_silent_connection_closes_4001(agent_factory):
    a = agent_factory(HEARTBEAT)
    raw = RawWs(a.port)
    pings = 0
    while True:
        op, payload = raw.recv_frame()  # never answered
        if op == 0x9:
            pings += 1
            continue
        assert op == 0x8
        assert int.from_bytes(payload[:2], "big") == 4001
        assert payload[2:] == b"Heartbeat timeout"
        break
    assert pings >= 2
    raw.close()
    run(still_serves(a))


def test_client_answering_pings_stays_connected(agent_factory):
    a = agent_factory(HEARTBEAT)

    async def go():
        ws = await connect(a)  # python3-websockets answers pings by itself
        await subscribe(ws, "hb")
        await asyncio.sleep(1.5)  # twice the idle limit, no application traffic
        await publish(ws, "hb", 1)
        assert (await recv_type(ws, "message"))["payload"] == 1
        await ws.send(json.dumps({"type": "ping", "id": "p1"}))
        pong = await recv_type(ws, "pong")
        assert pong["id"] == "p1" and isinstance(pong["timestamp"], int)
        await ws.close()
    run(go())


def test_client_that_never_reads_its_replies_is_paused_not_buffered(agent):
    """Replies are never dropped; a client that does not read them stops being read."""
    raw = RawWs(agent.port)
    n = 20000
    pad = "p" * 1000  # ~20 MB of pongs: more than the kernel's socket buffers hold
    frames = [f'{{"type":"ping","id":"{i}-{pad}"}}'.encode() for i in range(n)]
    import threading
    sender = threading.Thread(target=lambda: [raw.send_frame(0x1, f) for f in frames])
    sender.start()
    deadline = time.monotonic() + 10
    while agent.health()["read_pauses"] == 0:  # the agent stops reading this client
        assert time.monotonic() < deadline, "the agent never paused reading"
        time.sleep(0.05)
    for i in range(n):  # now read: every pong arrives, in order
        op, payload = raw.recv_frame()
        while op == 0x9:
            op, payload = raw.recv_frame()
        pong = json.loads(payload)
        assert pong["type"] == "pong" and pong["id"] == f"{i}-{pad}"
    sender.join(10)
    raw.close()
    run(still_serves(agent))


def masked(payload, opcode=0x1):
    """A client text frame (masked with a zero key: XOR with it changes nothing)."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload


def test_a_burst_costs_a_fast_consumer_nothing(agent):
    """100 publishers each send 200 messages at once (20,000 in a burst, about 2 MB): a
    subscriber that reads as fast as it can gets every one. The outbound queue is bounded
    in bytes (limits.outbound_queue_bytes, 8 MiB), not in frames: a burst smaller than that
    drops nothing, whatever the speeds."""
    sub = RawWs(agent.port)
    sub.send_frame(0x1, b'{"type":"subscribe","id":"s","tags":["burst"]}')
    assert json.loads(sub.recv_frame()[1])["type"] == "subscribed"
    pubs = [RawWs(agent.port) for _ in range(100)]
    per = 200
    for k, p in enumerate(pubs):
        frames = b"".join(masked(json.dumps({"type": "publish", "tag": "burst",
                                             "payload": [k, i]}).encode())
                          for i in range(per))
        p.frames = frames
    import threading
    threads = [threading.Thread(target=p.sock.sendall, args=(p.frames,)) for p in pubs]
    for t in threads:
        t.start()
    got = set()
    while len(got) < 100 * per:
        op, payload = sub.recv_frame()
        m = json.loads(payload)
        if m.get("type") == "message":
            got.add(tuple(m["payload"]))
    for t in threads:
        t.join()
    assert len(got) == 100 * per
    assert agent.health()["dropped"] == 0
    for p in pubs:
        p.close()
    sub.close()
