"""Persistent sessions on the native protocol: subscriptions and QoS 1 messages kept while the
client is away, resumed in order, forgotten by a clean session or after the expiry."""
import asyncio
import json
import time

from conftest import (OPEN, close_all, connect, drop, nothing_for, publish, recv, recv_type, run,
                      session, sub)



async def publish_acked(pub, tag, payload):
    await publish(pub, tag, payload, qos=1)
    await recv_type(pub, "ack")


def test_a_resumed_session_gets_what_it_missed_in_order_and_keeps_its_subscriptions(agent):
    async def go():
        sub_ws, r = await session(agent, "dash-1")
        assert r["session"] == "persistent" and r["resumed"] is False
        await sub(sub_ws, "plant/#", qos=1)
        await drop(sub_ws)
        pub, _ = await session(agent, "pub", persistent=False)
        for i in range(5):
            await publish_acked(pub, "plant/t", i)
        await publish(pub, "plant/t", "qos0-while-away")  # QoS 0: not kept
        back, r = await session(agent, "dash-1")
        assert r["resumed"] is True
        got = [await recv_type(back, "message") for _ in range(5)]
        assert [m["payload"] for m in got] == [0, 1, 2, 3, 4]
        # Queued while it was away: a first delivery, not flagged dup (MQTT's rule too).
        assert not any(m.get("dup") for m in got), got
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
        await sub(s, "cmd/#", qos=1)
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
        await sub(s, "x/#", qos=1)
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
        await sub(s, "y/#", qos=1)
        await drop(s)
        time.sleep(2.5)  # expiry 1 s, checked every second
        back, r = await session(agent, "dev-4", expiry=1)
        assert r["resumed"] is False
        await close_all()
    run(go())


def test_a_takeover_of_a_live_persistent_session_keeps_its_messages(agent):
    async def go():
        old, _ = await session(agent, "dev-5")
        await sub(old, "z/#", qos=1)
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


def test_persistent_sessions_and_their_messages_survive_a_restart(agent_factory, tmp_path):
    data = tmp_path / "data"
    first = agent_factory(data_dir=data, name="first")

    async def before():
        s, _ = await session(first, "dash-r")
        await sub(s, "r/#", qos=1)
        await drop(s)
        pub, _ = await session(first, "pub", persistent=False)
        for i in range(20):
            await publish_acked(pub, "r/n", i)
        await close_all()
    run(before())
    assert first.stop() == 0

    second = agent_factory(data_dir=data, name="second")
    second.wait_log(r"1 persistent session\(s\), 20 queued message\(s\)")

    async def after():
        back, r = await session(second, "dash-r")
        assert r["resumed"] is True
        got = []
        while len(got) < 20:
            m = await recv_type(back, "message")
            got.append(m["payload"])
            await back.send(json.dumps({"type": "ack", "seq": m["seq"]}))
        assert got == list(range(20))
        # Still subscribed after the restart; numbering goes on (no seq reused).
        pub, _ = await session(second, "pub", persistent=False)
        await publish_acked(pub, "r/n", "new")
        m = await recv_type(back, "message")
        assert m["payload"] == "new"
        await close_all()
    run(after())


def test_no_acknowledged_message_is_lost_when_the_agent_is_killed(agent_factory, tmp_path):
    """Publishers send numbered QoS 1 messages while the agent is killed with SIGKILL at
    random moments and restarted; the persistent subscriber must end with every number the
    agent acknowledged."""
    import random
    import signal as sig
    data = tmp_path / "data"
    rng = random.Random(11)
    acked = set()
    counter = [0]

    # Room for everything: what is measured is durability, not the queue's overflow policy.
    room = ["--limits.max_queued", "1000000"]
    a = agent_factory(data_dir=data, name="a0", args=room)

    async def setup():
        s, _ = await session(a, "collector")
        await sub(s, "crash/#", qos=1)
        await drop(s)
    run(setup())

    for cycle in range(4):
        async def load():
            pub, _ = await session(a, f"pub{cycle}", persistent=False)
            deadline = time.monotonic() + rng.uniform(0.2, 0.6)
            pending = {}
            try:
                while time.monotonic() < deadline:
                    n = counter[0]
                    counter[0] += 1
                    msgid = f"n-{n}"
                    pending[msgid] = n
                    await pub.send(json.dumps({"type": "publish", "tag": "crash/n", "payload": n,
                                               "qos": 1, "msgid": msgid}))
                    # Read whatever acks came back meanwhile.
                    while True:
                        try:
                            m = json.loads(await asyncio.wait_for(pub.recv(), 0.001))
                        except asyncio.TimeoutError:
                            break
                        if m.get("type") == "ack":
                            acked.add(pending.pop(m["msgid"]))
                a.proc.send_signal(sig.SIGKILL)  # mid-stream, acks in flight
                while True:
                    m = json.loads(await asyncio.wait_for(pub.recv(), 2))
                    if m.get("type") == "ack":
                        acked.add(pending.pop(m["msgid"]))
            except Exception:
                pass  # the connection died with the agent
            OPEN.clear()
        run(load())
        a.proc.wait()
        a = agent_factory(data_dir=data, name=f"a{cycle + 1}", args=room)

    async def collect():
        s, r = await session(a, "collector")
        assert r["resumed"] is True
        got = set()
        while True:
            try:
                m = await recv(s, timeout=3)
            except asyncio.TimeoutError:
                break
            assert m["type"] == "message", m
            got.add(m["payload"])
            await s.send(json.dumps({"type": "ack", "seq": m["seq"]}))
        missing = acked - got
        assert not missing, f"{len(missing)} acknowledged messages lost: {sorted(missing)[:10]}"
        assert len(acked) > 20
        await close_all()
    run(collect())


def test_messages_older_than_the_age_limit_are_not_delivered_on_resume(agent_factory):
    agent = agent_factory(args=["--limits.max_queued_age_s", "1"])

    async def go():
        s, _ = await session(agent, "dev-old")
        await sub(s, "a/#", qos=1)
        await drop(s)
        pub, _ = await session(agent, "pub", persistent=False)
        await publish_acked(pub, "a/1", "stale")
        time.sleep(1.5)
        await publish_acked(pub, "a/1", "fresh")
        back, r = await session(agent, "dev-old")
        assert r["resumed"] is True
        m = await recv_type(back, "message")
        assert m["payload"] == "fresh"
        await nothing_for(back, 0.3)
        await close_all()
    run(go())


def test_an_offline_sessions_full_queue_drops_its_oldest_and_counts_them(agent_factory):
    agent = agent_factory(args=["--limits.max_inflight", "1", "--limits.max_queued", "2"])

    async def go():
        s, _ = await session(agent, "dev-full")
        await sub(s, "f/#", qos=1)
        await drop(s)
        pub, _ = await session(agent, "pub", persistent=False)
        for i in range(5):
            await publish_acked(pub, "f/1", i)
        assert agent.health()["qos1_dropped"] == 2  # 1 in flight, 2 waiting, 1 and 2 dropped
        back, _ = await session(agent, "dev-full")
        got = []
        for _ in range(3):
            m = await recv_type(back, "message")
            got.append(m["payload"])
            await back.send(json.dumps({"type": "ack", "seq": m["seq"]}))
        assert got == [0, 3, 4]
        await nothing_for(back, 0.3)
        await close_all()
    run(go())
