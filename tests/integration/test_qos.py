"""QoS 1 on the native protocol: the publisher's ack, the subscriber's window of
unacknowledged deliveries, resends flagged dup, and the bounded waiting queue."""
import json

from conftest import client, close_all, nothing_for, publish, recv, recv_type, run, sub


def test_qos1_publish_is_acknowledged_and_delivered_at_the_lower_qos(agent):
    async def go():
        pub = await client(agent, "pub")
        s1 = await client(agent, "s1")
        s0 = await client(agent, "s0")
        await sub(s1, "q/#", qos=1)
        await sub(s0, "q/#", qos=0)
        await publish(pub, "q/a", {"n": 1}, qos=1, msgid="m-1", id="p1")
        ack = await recv(pub)
        assert ack == {"type": "ack", "msgid": "m-1", "id": "p1"}
        m1 = await recv_type(s1, "message")
        assert m1["qos"] == 1 and isinstance(m1["seq"], int) and m1["seq"] > 0
        assert m1["msgid"] == "m-1" and "dup" not in m1
        m0 = await recv_type(s0, "message")
        assert "qos" not in m0 and "seq" not in m0
        # A QoS 0 publish is not acknowledged and reaches the QoS 1 subscriber at QoS 0.
        await publish(pub, "q/b", 2)
        m = await recv_type(s1, "message")
        assert "qos" not in m
        await nothing_for(pub, 0.2)
        await close_all()
    run(go())


def test_unacknowledged_deliveries_are_resent_flagged_dup_until_acknowledged(agent_factory):
    agent = agent_factory(args=["--delivery.retry_ms", "300"])

    async def go():
        pub = await client(agent, "pub")
        s = await client(agent, "s")
        await sub(s, "r/x", qos=1)
        await publish(pub, "r/x", "hello", qos=1)
        first = await recv_type(s, "message")
        again = await recv_type(s, "message", timeout=3)
        assert again["seq"] == first["seq"] and again["dup"] is True
        assert again["payload"] == "hello"
        await s.send(json.dumps({"type": "ack", "seq": first["seq"]}))
        await nothing_for(s, 1.0)  # no more resends
        await close_all()
    run(go())


def test_the_window_holds_max_inflight_and_the_rest_waits_in_order(agent_factory):
    agent = agent_factory(args=["--limits.max_inflight", "2", "--limits.max_queued", "3"])

    async def go():
        pub = await client(agent, "pub")
        s = await client(agent, "s")
        await sub(s, "w", qos=1)
        for i in range(7):
            await publish(pub, "w", i, qos=1)
        for _ in range(7):
            await recv_type(pub, "ack")  # every publish is routed
        got = [await recv_type(s, "message") for _ in range(2)]
        assert [m["payload"] for m in got] == [0, 1]
        await nothing_for(s, 0.3)  # the window is full
        # 5 waited for a queue of 3: the two oldest waiting (2 and 3) were dropped.
        assert agent.health()["qos1_dropped"] == 2
        for m in got:
            await s.send(json.dumps({"type": "ack", "seq": m["seq"]}))
        got = [await recv_type(s, "message") for _ in range(2)]
        assert [m["payload"] for m in got] == [4, 5]
        await s.send(json.dumps({"type": "ack", "seq": got[0]["seq"]}))
        assert (await recv_type(s, "message"))["payload"] == 6
        await close_all()
    run(go())


def test_acks_are_checked_and_a_stray_ack_is_harmless(agent):
    async def go():
        s = await client(agent, "s")
        await s.send('{"type":"ack","id":"a1"}')
        e = await recv_type(s, "error")
        assert e["code"] == "bad_request" and "seq" in e["message"] and e["id"] == "a1"
        await s.send('{"type":"ack","id":"a2","seq":-3}')
        assert (await recv_type(s, "error"))["id"] == "a2"
        await s.send('{"type":"ack","seq":123456}')  # nothing in flight has it
        await nothing_for(s, 0.3)
        await s.send('{"type":"pubcomp","seq":123456}')  # nor this
        await nothing_for(s, 0.3)
        await close_all()
    run(go())


def test_binary_publish_and_delivery_at_qos1(agent):
    async def go():
        pub = await client(agent, "pub")
        s = await client(agent, "s", query="binary=1")
        await sub(s, "b/#", qos=1)
        tag, msgid = b"b/1", b"bin-1"
        # publish envelope: kind 1, flags 2 (QoS 1), tag, msgid, payload
        await pub.send(bytes([1, 2]) + len(tag).to_bytes(2, "big") + tag + bytes([len(msgid)])
                       + msgid + b"\x00\xff")
        assert await recv(pub) == {"type": "ack", "msgid": "bin-1"}
        m = await recv(s)
        assert isinstance(m, bytes) and m[0] == 2 and m[1] == 2  # message, flags: QoS 1
        n = 2
        tag_len = int.from_bytes(m[n:n + 2], "big"); n += 2 + tag_len
        n += 1 + m[n]  # from
        n += 1 + m[n]  # msgid
        n += 8  # timestamp
        seq = int.from_bytes(m[n:n + 8], "big"); n += 8
        assert seq > 0 and m[n:] == b"\x00\xff"
        await s.send(json.dumps({"type": "ack", "seq": seq}))
        await nothing_for(s, 0.3)
        await close_all()
    run(go())
