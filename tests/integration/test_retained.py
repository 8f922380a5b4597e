"""Retained messages on the native protocol: kept per tag, sent to new subscriptions flagged
`retained`, cleared by an empty payload, bounded, and kept across a restart by the store."""
import json
import subprocess

from conftest import (BIN, client, close_all, nothing_for, publish, recv, recv_type, run, sub,
                      subscribe)


async def sync(ws):
    """A ping round trip: what the agent received before it has been handled."""
    await ws.send('{"type":"ping","id":"sync"}')
    await recv_type(ws, "pong")


def test_a_new_subscription_gets_the_retained_message_flagged_and_live_ones_do_not(agent):
    async def go():
        pub = await client(agent, "pub")
        live = await client(agent, "live")
        await subscribe(live, "plant/#")
        await publish(pub, "plant/line1/temp", {"c": 20}, retain=True)
        m = await recv_type(live, "message")
        assert m["payload"] == {"c": 20} and "retained" not in m  # live: as published
        await publish(pub, "plant/line1/temp", {"c": 21}, retain=True)  # replaces
        await recv_type(live, "message")
        await sync(pub)

        late = await client(agent, "late")
        await subscribe(late, "plant/+/temp")
        m = await recv(late)
        assert m["type"] == "message" and m["retained"] is True
        assert m["tag"] == "plant/line1/temp" and m["payload"] == {"c": 21}
        assert m["from"] == "pub"
        await nothing_for(late, 0.3)  # one per tag
        # Subscribing again sends it again (as MQTT does).
        await subscribe(late, "plant/+/temp", id="again")
        m = await recv_type(late, "message")
        assert m["retained"] is True
        await close_all()
    run(go())


def test_an_empty_payload_clears_and_is_still_delivered_live(agent):
    async def go():
        pub = await client(agent, "pub")
        live = await client(agent, "live")
        await subscribe(live, "a/#")
        for tag in ("a/1", "a/2", "a/3"):
            await publish(pub, tag, {"v": tag}, retain=True)
        await publish(pub, "a/2", "", retain=True)
        await publish(pub, "a/3", None, retain=True)
        got = [await recv_type(live, "message") for _ in range(5)]
        assert got[3]["tag"] == "a/2" and got[3]["payload"] == ""
        await sync(pub)
        late = await client(agent, "late")
        await subscribe(late, "a/#")
        m = await recv_type(late, "message")
        assert m["tag"] == "a/1" and m["retained"] is True
        await nothing_for(late, 0.3)
        assert agent.health()["retained"] == 1
        await close_all()
    run(go())


def test_overlapping_filters_get_each_retained_tag_once_in_tag_order(agent):
    async def go():
        pub = await client(agent, "pub")
        for tag in ("s/b", "s/a", "s/c/d", "$sys/never"):
            await publish(pub, tag, 1, retain=True)
        await sync(pub)
        late = await client(agent, "late")
        await late.send('{"type":"subscribe","id":"s","tags":["s/#","s/+","#"]}')
        assert (await recv(late))["type"] == "subscribed"
        tags = [(await recv_type(late, "message"))["tag"] for _ in range(3)]
        assert tags == ["s/a", "s/b", "s/c/d"]
        await nothing_for(late, 0.3)
        await close_all()
    run(go())


def test_binary_publish_can_retain(agent):
    async def go():
        pub = await client(agent, "pub")
        tag = b"cam/1"
        # kind 1 (publish), flags 1 (retain), tag, no msgid, payload
        frame = bytes([1, 1]) + len(tag).to_bytes(2, "big") + tag + bytes([0]) + b"\x00\x01\xff"
        await pub.send(frame)
        await sync(pub)
        late = await client(agent, "late")
        await subscribe(late, "cam/#")
        m = await recv_type(late, "message")
        assert m["retained"] is True and m["encoding"] == "base64" and m["payload"] == "AAH/"
        await close_all()
    run(go())


def test_the_retained_limit_refuses_new_tags_not_replacements(agent_factory):
    agent = agent_factory(args=["--limits.max_retained", "2"])

    async def go():
        pub = await client(agent, "pub")
        await publish(pub, "r/1", 1, retain=True)
        await publish(pub, "r/2", 2, retain=True)
        await publish(pub, "r/3", 3, retain=True, id="third")
        e = await recv_type(pub, "error")
        assert e["code"] == "limit_exceeded" and e["id"] == "third", e
        await publish(pub, "r/1", 11, retain=True)  # a replacement is fine
        await sync(pub)
        late = await client(agent, "late")
        await subscribe(late, "r/#")
        got = {(m := await recv_type(late, "message"))["tag"]: m["payload"] for _ in range(2)}
        assert got == {"r/1": 11, "r/2": 2}
        await close_all()
    run(go())


def test_retained_messages_survive_a_restart(agent_factory, tmp_path):
    data = tmp_path / "shared-data"
    first = agent_factory(data_dir=data, name="first")

    async def put():
        pub = await client(first, "pub")
        await publish(pub, "keep/me", {"n": 1}, retain=True)
        await publish(pub, "keep/gone", {"n": 2}, retain=True)
        await publish(pub, "keep/gone", "", retain=True)
        await sync(pub)
        await close_all()
    run(put())
    assert first.stop() == 0

    second = agent_factory(data_dir=data, name="second")
    second.wait_log(r"1 retained message")

    async def get():
        late = await client(second, "late")
        await subscribe(late, "keep/#")
        m = await recv_type(late, "message")
        assert m["tag"] == "keep/me" and m["payload"] == {"n": 1} and m["retained"] is True
        assert m["from"] == "pub"
        await nothing_for(late, 0.3)
        await close_all()
    run(get())


def test_a_busy_or_damaged_data_directory_stops_the_agent_with_its_path(agent_factory, tmp_path):
    data = tmp_path / "data-dir"
    agent_factory(data_dir=data, name="owner")
    r = subprocess.run([BIN, "serve", "--listen", "127.0.0.1:0", "--store.data_dir", str(data)],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 1
    assert str(data / "wsagent.db") in r.stderr and "in use by another process" in r.stderr

    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "wsagent.db").write_bytes(b"this is not a database" * 200)
    r = subprocess.run([BIN, "serve", "--listen", "127.0.0.1:0", "--store.data_dir", str(damaged)],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 1
    assert str(damaged / "wsagent.db") in r.stderr, r.stderr
    assert (damaged / "wsagent.db").read_bytes() == b"this is not a database" * 200


def test_the_memory_store_keeps_nothing_and_says_so(agent_factory, tmp_path):
    agent = agent_factory(args=["--store.kind", "memory"])
    agent.wait_log(r"store: memory: retained messages are lost")
    assert not (agent.dir / "data").exists()


def test_the_command_line_clients_retain_and_receive(agent):
    port = str(agent.port)
    r = subprocess.run([BIN, "pub", "-p", port, "-t", "cli/state", "-m", '{"on":true}', "-r"],
                       capture_output=True, text=True, timeout=15)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([BIN, "sub", "-p", port, "-t", "cli/#", "-v", "-C", "1", "-W", "5"],
                       capture_output=True, text=True, timeout=15)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == 'cli/state {"on":true}'


def test_an_acknowledged_retained_publish_survives_kill_9(agent_factory, tmp_path):
    import signal
    data = tmp_path / "data"
    first = agent_factory(data_dir=data, name="first")

    async def put():
        pub = await client(first, "pub")
        for i in range(20):
            await publish(pub, f"k/{i}", i, retain=True, qos=1)
            assert (await recv_type(pub, "ack"))["type"] == "ack"
        first.proc.send_signal(signal.SIGKILL)  # right after the last ack
        await close_all()
    run(put())
    first.proc.wait()
    second = agent_factory(data_dir=data, name="second")
    second.wait_log(r"20 retained message")


def test_retained_messages_come_at_the_lower_of_their_qos_and_the_subscriptions(agent_factory):
    agent = agent_factory(args=["--delivery.retry_ms", "300"])

    async def go():
        pub = await client(agent, "pub")
        await publish(pub, "r/one", "q1", retain=True, qos=1)
        await recv_type(pub, "ack")
        await publish(pub, "r/zero", "q0", retain=True)
        s = await client(agent, "s")
        await sub(s, "r/#", qos=1)
        one = await recv_type(s, "message")
        zero = await recv_type(s, "message")
        assert (one["tag"], one["retained"], one["qos"]) == ("r/one", True, 1), one
        assert zero["tag"] == "r/zero" and "qos" not in zero, zero
        # Acknowledged like any QoS 1 delivery: resent, flagged dup, until it is.
        again = await recv_type(s, "message", timeout=3)
        assert again["seq"] == one["seq"] and again["dup"] is True and again["retained"] is True
        await s.send(json.dumps({"type": "ack", "seq": one["seq"]}))
        await nothing_for(s, 0.8)
        # A QoS 0 subscription gets it at QoS 0.
        s0 = await client(agent, "s0")
        await sub(s0, "r/one", qos=0)
        assert "qos" not in await recv_type(s0, "message")
        await close_all()
    run(go())
