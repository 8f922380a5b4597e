"""QoS 2, exactly once: the pubrec / pubrel / pubcomp handshake in both directions, a
publisher's resend never delivers twice, released deliveries are never sent again, and the
whole survives kill -9."""
import asyncio
import collections
import json
import random
import signal
import time

from conftest import (OPEN, client, close_all, drop, nothing_for, recv, recv_type, run, session,
                      sub)



async def publish2(ws, tag, payload, msgid, **extra):
    await ws.send(json.dumps({"type": "publish", "tag": tag, "payload": payload, "qos": 2,
                              "msgid": msgid, **extra}))


def test_both_handshakes_end_to_end(agent):
    async def go():
        s2 = await client(agent, "sub2")
        await sub(s2, "q/#", qos=2)
        s1 = await client(agent, "sub1")
        await sub(s1, "q/#", qos=1)
        s0 = await client(agent, "sub0")
        await sub(s0, "q/#", qos=0)
        pub = await client(agent, "pub")
        await publish2(pub, "q/a", {"v": 1}, "m-1", id="p1")
        rec = await recv_type(pub, "pubrec")
        assert rec == {"type": "pubrec", "msgid": "m-1", "id": "p1"}
        # Each subscriber at the lower of the two QoS.
        m2 = await recv_type(s2, "message")
        assert m2["qos"] == 2 and m2["payload"] == {"v": 1} and "dup" not in m2
        m1 = await recv_type(s1, "message")
        assert m1["qos"] == 1 and m1["seq"] == m2["seq"]
        m0 = await recv_type(s0, "message")
        assert "qos" not in m0
        # Publisher releases, agent completes.
        await pub.send(json.dumps({"type": "pubrel", "msgid": "m-1", "id": "r1"}))
        assert await recv_type(pub, "pubcomp") == {"type": "pubcomp", "msgid": "m-1", "id": "r1"}
        # Subscriber: pubrec -> pubrel -> pubcomp, then nothing more.
        await s2.send(json.dumps({"type": "pubrec", "seq": m2["seq"]}))
        assert await recv_type(s2, "pubrel") == {"type": "pubrel", "seq": m2["seq"]}
        await s2.send(json.dumps({"type": "pubcomp", "seq": m2["seq"]}))
        await s1.send(json.dumps({"type": "ack", "seq": m1["seq"]}))
        await nothing_for(s2, 0.3)
        await close_all()
    run(go())


def test_a_publish_sent_again_before_pubrel_is_not_delivered_twice(agent):
    async def go():
        s = await client(agent, "sub")
        await sub(s, "q/#", qos=2)
        pub = await client(agent, "pub")
        await publish2(pub, "q/a", 1, "same")
        await recv_type(pub, "pubrec")
        await publish2(pub, "q/a", 1, "same")  # as after a lost pubrec
        await recv_type(pub, "pubrec")
        m = await recv_type(s, "message")
        await s.send(json.dumps({"type": "pubrec", "seq": m["seq"]}))
        await recv_type(s, "pubrel")
        await s.send(json.dumps({"type": "pubcomp", "seq": m["seq"]}))
        await nothing_for(s, 0.3)  # no second copy
        # Released: the same msgid is a new message now.
        await pub.send(json.dumps({"type": "pubrel", "msgid": "same"}))
        await recv_type(pub, "pubcomp")
        await pub.send(json.dumps({"type": "pubrel", "msgid": "same"}))  # again: completed again
        await recv_type(pub, "pubcomp")
        await publish2(pub, "q/a", 2, "same")
        assert (await recv_type(s, "message"))["payload"] == 2
        await close_all()
    run(go())


def test_before_pubrec_the_message_is_resent_after_it_only_the_pubrel(agent_factory):
    agent = agent_factory(args=["--delivery.retry_ms", "300"])

    async def go():
        s = await client(agent, "slow")
        await sub(s, "q/#", qos=2)
        pub = await client(agent, "pub")
        await publish2(pub, "q/a", "x", "m")
        first = await recv_type(s, "message")
        again = await recv_type(s, "message", timeout=3)  # no pubrec: sent again
        assert again["dup"] is True and again["seq"] == first["seq"]
        await s.send(json.dumps({"type": "pubrec", "seq": first["seq"]}))
        assert (await recv_type(s, "pubrel"))["seq"] == first["seq"]
        # No pubcomp: the pubrel comes again, never the message.
        frame = await recv(s, timeout=3)
        assert frame == {"type": "pubrel", "seq": first["seq"]}, frame
        await s.send(json.dumps({"type": "pubcomp", "seq": first["seq"]}))
        await nothing_for(s, 0.6)
        await close_all()
    run(go())


def test_a_persistent_publisher_that_lost_its_pubrec_resends_without_a_duplicate(agent):
    async def go():
        s = await client(agent, "sub")
        await sub(s, "q/#", qos=2)
        pub, _ = await session(agent, "dev-pub")
        await publish2(pub, "q/a", "once", "m-7")
        await drop(pub)  # before reading the pubrec
        back, r = await session(agent, "dev-pub")
        assert r["resumed"] is True
        await publish2(back, "q/a", "once", "m-7")
        assert (await recv_type(back, "pubrec"))["msgid"] == "m-7"
        await back.send(json.dumps({"type": "pubrel", "msgid": "m-7"}))
        await recv_type(back, "pubcomp")
        m = await recv_type(s, "message")
        assert m["payload"] == "once"
        await s.send(json.dumps({"type": "pubrec", "seq": m["seq"]}))
        assert await recv(s) == {"type": "pubrel", "seq": m["seq"]}
        await nothing_for(s, 0.5)  # and no second message
        await close_all()
    run(go())


def test_a_released_delivery_survives_a_restart_as_its_pubrel(agent_factory, tmp_path):
    data = tmp_path / "data"
    first = agent_factory(data_dir=data, name="first")

    async def put():
        s, _ = await session(first, "dev-sub")
        await sub(s, "q/#", qos=2)
        pub = await client(first, "pub")
        await publish2(pub, "q/a", "one", "m-1")
        m = await recv_type(s, "message")
        await s.send(json.dumps({"type": "pubrec", "seq": m["seq"]}))
        await recv_type(s, "pubrel")  # sent once the release is on disk
        first.proc.send_signal(signal.SIGKILL)
        await close_all()
        return m["seq"]
    seq = run(put())
    first.proc.wait()
    second = agent_factory(data_dir=data, name="second")

    async def get():
        s, r = await session(second, "dev-sub")
        assert r["resumed"] is True
        assert await recv(s) == {"type": "pubrel", "seq": seq}
        await s.send(json.dumps({"type": "pubcomp", "seq": seq}))
        await nothing_for(s, 0.3)
        await close_all()
    run(get())


def test_exactly_once_while_the_agent_is_killed(agent_factory, tmp_path):
    """A persistent publisher sends numbered QoS 2 messages to a persistent QoS 2 subscriber
    while the agent is killed with SIGKILL at random moments and restarted. Both clients
    follow the handshake (the publisher resends what got no pubrec and releases what did;
    the subscriber keeps the seqs it has until their pubrel). At the end every number was
    delivered to the subscriber's application exactly once."""
    data = tmp_path / "data"
    rng = random.Random(7)
    room = ["--limits.max_queued", "1000000", "--delivery.retry_ms", "500"]
    a = agent_factory(data_dir=data, name="a0", args=room)
    sent = {}         # msgid -> number, every publish made
    unrec = {}        # msgid -> number: no pubrec yet (resent after a reconnect)
    unrel = set()     # msgids with a pubrec and no pubcomp yet (pubrel sent again)
    held = set()      # the subscriber's seqs received and not yet released
    delivered = []    # what the subscriber's application got
    counter = [0]

    async def subscriber(agent, quiet=None):
        s, r = await session(agent, "collector")
        assert r["resumed"] is True
        while True:
            try:
                m = await recv(s, timeout=quiet or 30)
            except asyncio.TimeoutError:
                return
            if m["type"] == "message":
                assert m["qos"] == 2, m
                if m["seq"] not in held:
                    held.add(m["seq"])
                    delivered.append(m["payload"])
                await s.send(json.dumps({"type": "pubrec", "seq": m["seq"]}))
            elif m["type"] == "pubrel":
                held.discard(m["seq"])
                await s.send(json.dumps({"type": "pubcomp", "seq": m["seq"]}))

    def on_publisher_frame(pub, m):
        if m["type"] == "pubrec":
            unrec.pop(m["msgid"], None)
            unrel.add(m["msgid"])
            return pub.send(json.dumps({"type": "pubrel", "msgid": m["msgid"]}))
        if m["type"] == "pubcomp":
            unrel.discard(m["msgid"])
        return None

    async def publisher(agent, seconds, new=True):
        pub, _ = await session(agent, "producer")
        for msgid, n in sorted(unrec.items(), key=lambda kv: kv[1]):
            await publish2(pub, "x/n", n, msgid)
        for msgid in sorted(unrel):
            await pub.send(json.dumps({"type": "pubrel", "msgid": msgid}))
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if new:
                n = counter[0]
                counter[0] += 1
                msgid = f"n-{n}"
                sent[msgid] = unrec[msgid] = n
                await publish2(pub, "x/n", n, msgid)
            try:
                m = json.loads(await asyncio.wait_for(pub.recv(), 0.002 if new else 0.5))
            except asyncio.TimeoutError:
                if not new and not unrec and not unrel:
                    return
                continue
            reply = on_publisher_frame(pub, m)
            if reply:
                await reply

    async def setup():  # subscribed before the first publish
        s, _ = await session(a, "collector")
        await sub(s, "x/#", qos=2)
        await close_all()
    run(setup())

    for cycle in range(5):
        async def load():
            tasks = [asyncio.create_task(subscriber(a)),
                     asyncio.create_task(publisher(a, 5))]
            await asyncio.sleep(rng.uniform(0.3, 0.8))
            a.proc.send_signal(signal.SIGKILL)  # mid-stream, both handshakes under way
            await asyncio.gather(*tasks, return_exceptions=True)
            OPEN.clear()
        run(load())
        a.proc.wait()
        a = agent_factory(data_dir=data, name=f"a{cycle + 1}", args=room)

    async def finish():
        sub_task = asyncio.create_task(subscriber(a, quiet=3))
        await publisher(a, 30, new=False)
        assert not unrec and not unrel, (len(unrec), len(unrel))
        await sub_task
        await close_all()
    run(finish())
    counts = collections.Counter(delivered)
    twice = [n for n, c in counts.items() if c > 1]
    assert not twice, f"{len(twice)} numbers delivered twice: {sorted(twice)[:10]}"
    missing = set(sent.values()) - set(counts)
    assert not missing, f"{len(missing)} numbers never delivered: {sorted(missing)[:10]}"
    assert len(sent) > 50


def test_the_cli_completes_qos1_and_qos2_both_ways(agent):
    import subprocess
    from conftest import BIN
    port = str(agent.port)
    sub_cli = subprocess.Popen([BIN, "sub", "-p", port, "-t", "c/#", "-q", "2", "-v", "-C", "4",
                                "-W", "10"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    agent.wait_subscriptions(1)

    def pub(*args, input=None):
        r = subprocess.run([BIN, "pub", "-p", port, *args], capture_output=True, text=True,
                           timeout=15, input=input)
        assert r.returncode == 0, r.stderr

    async def go():
        watcher = await client(agent, "watcher")
        await sub(watcher, "c/#", qos=2)
        pub("-t", "c/two", "-q", "2", "-l", input="a\nb\n")  # returns once both are complete
        pub("-t", "c/one", "-q", "1", "-m", "x")
        # The CLI's publishes arrived at QoS 2 and 1, each once.
        got = [await recv_type(watcher, "message") for _ in range(3)]
        assert [(m["payload"], m["qos"]) for m in got] == [("a", 2), ("b", 2), ("x", 1)]
        await publish2(watcher, "c/back", "y", "w-1")
        await recv_type(watcher, "pubrec")
        await close_all()
    run(go())
    out, err = sub_cli.communicate(timeout=15)
    assert sub_cli.returncode == 0, err
    assert out.splitlines() == ["c/two a", "c/two b", "c/one x", "c/back y"]
