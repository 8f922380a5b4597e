"""Several agents sharing one real redis-server (docs/cluster.md): messages cross nodes with
the same wildcards and protocols, each node receives only what its clients subscribed to and
once, the route table follows subscriptions, nodes that die or leave are dropped, and a Redis
that goes away and comes back empty is survived."""

import asyncio
import json
import queue
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request

import paho.mqtt.client as paho
import pytest
import websockets

from conftest import (BIN, OPEN, close_all, closed_with, client, connect, nothing_for, publish, recv,
                      recv_type, run, serve_file, session, subscribe)
from redis_procs import RedisServer, Sentinel
from test_mqtt import read_until_closed
from test_mqtt5 import connect5

FAST = ["--cluster.heartbeat_ms", "200", "--cluster.node_timeout_ms", "1500",
        "--cluster.reconcile_ms", "500"]


@pytest.fixture
def redis(tmp_path):
    r = RedisServer(tmp_path / "redis")
    yield r
    r.stop()


@pytest.fixture
def nodes(agent_factory, redis):
    """make(n): n agents on one Redis, named n0, n1...; each waits until it joined."""
    def make(n, extra=()):
        out = []
        for i in range(n):
            a = agent_factory(name=f"n{i}", args=["--store.kind", "memory", "--cluster.redis",
                                                  redis.url, "--cluster.node_id", f"n{i}",
                                                  *FAST, *extra])
            a.wait_log(r"cluster: node n\d+ joined")
            out.append(a)
        for a in out:  # every node sees every other
            a.wait_metric("wsagent_cluster_nodes", lambda v: v == n - 1)
        return out
    return make


def ready(agent):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{agent.port}/readyz", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_filters(agent, n):
    """Waits until `agent`'s route table holds `n` filters of other nodes."""
    agent.wait_metric("wsagent_cluster_route_filters", lambda v: v == n)


def test_wildcard_fan_out_across_nodes_without_gap_or_duplicate(nodes):
    a, b, c = nodes(3)
    count = 200

    async def go():
        subs = []
        for i, (node, flt) in enumerate([(b, "plant/+/temp"), (b, "plant/#"), (c, "#"),
                                         (c, "plant/l1/temp"), (a, "plant/#")]):
            ws = await client(node, f"s{i}")
            await subscribe(ws, flt)
            subs.append(ws)
        other = await client(c, "other")
        await subscribe(other, "elsewhere/#")  # matches nothing published here
        wait_filters(a, 5)  # b's 2 filters and c's 3
        pub = await client(a, "sensor")
        for i in range(count):
            await publish(pub, "plant/l1/temp", i, msgid=f"m{i}")
        for ws in subs:
            got = []
            while len(got) < count:
                m = await recv_type(ws, "message")
                assert m["tag"] == "plant/l1/temp" and m["from"] == "sensor"
                got.append(m["payload"])
            assert got == list(range(count))  # in order, none missing, none twice
            await nothing_for(ws, 0.2)
        await nothing_for(other, 0.2)
        await close_all()
    run(go())
    # One copy per interested node, however many of its filters match.
    assert b.metric("wsagent_cluster_messages_received_total") == count
    assert c.metric("wsagent_cluster_messages_received_total") == count
    assert a.metric("wsagent_cluster_messages_sent_total") == 2 * count


def test_redis_carries_one_publish_per_interested_node(nodes, redis):
    a, b, c = nodes(3)

    async def go():
        s = await client(b, "only-b")
        await subscribe(s, "x/#")
        pub = await client(a, "p")
        wait_filters(a, 1)
        wait_filters(c, 1)
        # every node knows every client (their claims are PUBLISHes on the routes channel)
        for node, others in ((a, 1), (b, 1), (c, 2)):
            node.wait_metric("wsagent_cluster_remote_clients", lambda v, n=others: v == n)
        redis.cli("CONFIG", "RESETSTAT")
        for i in range(50):
            await publish(pub, "x/y", i)
        for i in range(50):
            assert (await recv_type(s, "message"))["payload"] == i
        # A tag nobody outside a subscribed to costs Redis nothing.
        for i in range(50):
            await publish(pub, "not/subscribed", i)
        await asyncio.sleep(0.3)
        # (before close_all: the filter's removal is a PUBLISH on the routes channel)
        assert redis.command_calls("publish") == 50
        await close_all()
    run(go())
    assert c.metric("wsagent_cluster_messages_received_total") == 0  # c has no subscriber


def test_native_and_mqtt_clients_on_different_nodes(nodes):
    a, b = nodes(2)
    inbox = queue.Queue()
    m = paho.Client(client_id="mqtt-sub", protocol=paho.MQTTv5)
    m.on_message = lambda cl, ud, msg: inbox.put(msg)
    subscribed = queue.Queue()
    m.on_subscribe = lambda *args: subscribed.put(True)
    m.connect("127.0.0.1", b.mqtt_port)
    m.loop_start()
    try:
        m.subscribe("dev/+/status", qos=0)
        subscribed.get(timeout=5)
        wait_filters(a, 1)

        async def go():
            pub = await client(a, "native-pub")
            await publish(pub, "dev/d1/status", {"online": True})
            await close_all()
        run(go())
        msg = inbox.get(timeout=5)
        assert msg.topic == "dev/d1/status" and msg.payload == b'{"online":true}'

        # and back: an MQTT publisher on b, a native subscriber on a
        async def back():
            s = await client(a, "native-sub")
            await subscribe(s, "cmd/#")
            wait_filters(b, 1)
            m.publish("cmd/d1", b"reboot", qos=0)
            got = await recv_type(s, "message")
            assert got["tag"] == "cmd/d1" and got["from"] == "mqtt-sub"
            await close_all()
        run(back())
    finally:
        m.loop_stop()
        m.disconnect()


def test_presence_events_are_cluster_wide(nodes):
    a, b = nodes(2)

    async def go():
        watcher = await client(a, "watcher")
        await subscribe(watcher, "$sys/clients/#")
        wait_filters(b, 1)
        dev = await client(b, "device-7")
        m = await recv_type(watcher, "message")
        assert m["tag"] == "$sys/clients/device-7/connected"
        await dev.close()
        m = await recv_type(watcher, "message")
        assert m["tag"] == "$sys/clients/device-7/disconnected"
        await close_all()
    run(go())


def test_route_table_follows_unsubscribe_and_disconnect(nodes):
    a, b = nodes(2)

    async def go():
        s1 = await client(b, "s1")
        s2 = await client(b, "s2")
        await subscribe(s1, "t/#")
        await subscribe(s2, "t/#")  # the same filter: b records it once
        wait_filters(a, 1)
        await s1.send('{"type":"unsubscribe","tags":["t/#"]}')
        await recv_type(s1, "unsubscribed")
        time.sleep(0.3)
        assert a.metric("wsagent_cluster_route_filters") == 1  # s2 still holds it
        await s2.close()
        wait_filters(a, 0)
        pub = await client(a, "p")
        before = a.metric("wsagent_cluster_messages_sent_total")
        await publish(pub, "t/1", 1)
        await asyncio.sleep(0.2)
        assert a.metric("wsagent_cluster_messages_sent_total") == before  # nobody to send to
        await close_all()
    run(go())


def test_a_node_that_joins_late_learns_the_table_and_is_learnt(nodes, agent_factory, redis):
    a, b = nodes(2)

    async def go():
        s = await client(b, "early")
        await subscribe(s, "late/#")
        c = agent_factory(name="late", args=["--store.kind", "memory", "--cluster.redis",
                                             redis.url, "--cluster.node_id", "late", *FAST])
        c.wait_log("cluster: node late joined")
        wait_filters(c, 1)  # b's filter, read when c joined
        pub = await client(c, "late-pub")
        await publish(pub, "late/x", "hello")
        assert (await recv_type(s, "message"))["payload"] == "hello"
        s2 = await client(c, "late-sub")
        await subscribe(s2, "late/#")
        wait_filters(a, 2)  # a learns of c's filter by the routes channel
        await publish(await client(a, "a-pub"), "late/y", "both")
        assert (await recv_type(s, "message"))["payload"] == "both"
        assert (await recv_type(s2, "message"))["payload"] == "both"
        await close_all()
    run(go())


def test_a_killed_node_is_dropped_and_a_stopped_one_leaves_at_once(nodes):
    a, b, c = nodes(3)

    async def go():
        for node, name in ((b, "on-b"), (c, "on-c")):
            ws = await client(node, name)
            await subscribe(ws, "k/#")
        wait_filters(a, 2)
        b.proc.kill()  # kill -9: no goodbye; its heartbeat stops
        a.wait_metric("wsagent_cluster_nodes", lambda v: v == 1, timeout=5)
        assert a.metric("wsagent_cluster_route_filters") == 1
        assert "node n1 is gone" in a.log()
        c.stop()  # SIGTERM: it leaves, the others drop it without waiting for the timeout
        a.wait_metric("wsagent_cluster_nodes", lambda v: v == 0, timeout=1.0)
        assert "node n2 left" in a.log()
        await close_all()
    run(go())


def test_redis_restarted_empty_is_survived(nodes, redis):
    a, b = nodes(2)

    async def go():
        s = await client(b, "s")
        await subscribe(s, "r/#")
        wait_filters(a, 1)
        redis.kill()
        a.wait_metric("wsagent_cluster_up", lambda v: v == 0)
        status, body = ready(a)
        assert status == 503 and '"cluster":"connecting"' in body
        pub = await client(a, "p")
        await publish(pub, "r/1", "lost")  # QoS 0 with Redis down: dropped, and counted
        a.wait_metric("wsagent_cluster_messages_dropped_total", lambda v: v >= 1,
                      labels='{reason="redis_down"}')
        # Local clients are served meanwhile.
        local = await client(a, "local")
        await subscribe(local, "r/#")
        await publish(pub, "r/2", "local")
        assert (await recv_type(local, "message"))["payload"] == "local"
        redis.start()  # empty: every node writes its filters again
        a.wait_metric("wsagent_cluster_up", lambda v: v == 1, timeout=10)
        b.wait_metric("wsagent_cluster_up", lambda v: v == 1, timeout=10)
        wait_filters(a, 1)
        wait_filters(b, 1)
        assert ready(a)[0] == 200
        await publish(pub, "r/3", "after")
        m = await recv_type(s, "message")
        assert m["payload"] == "after"  # r/1 was dropped, never delivered late
        await close_all()
    run(go())
    assert "Redis lost its data" in a.log() or "Redis lost its data" in b.log()


def test_malformed_messages_on_a_node_channel_hurt_nobody(nodes, redis):
    a, b = nodes(2)

    async def go():
        s = await client(b, "s")
        await subscribe(s, "m/#")
        wait_filters(a, 1)
        for junk in [b"", b"x", b"\x01\x00\x00", b"\x01" + b"\xff" * 40,
                     b"\x01\x00\x00\x00\x00" + b"\x00" * 30]:
            assert redis.send_raw(b"PUBLISH", b"wsagent:node:n1", junk) == b":1"
        redis.cli("PUBLISH", "wsagent:routes", "garbage")
        b.wait_metric("wsagent_cluster_malformed_total", lambda v: v == 6)
        pub = await client(a, "p")
        await publish(pub, "m/1", "fine")
        assert (await recv_type(s, "message"))["payload"] == "fine"
        await close_all()
    run(go())


def wait_clients(agent, n):
    """Waits until `agent` knows of `n` clients on other nodes."""
    agent.wait_metric("wsagent_cluster_remote_clients", lambda v: v == n)


def test_a_direct_message_reaches_its_recipient_on_another_node(nodes):
    a, b, c = nodes(3)

    async def go():
        device = await client(b, "sensor-001")  # subscribed to nothing
        dash = await client(a, "dashboard")
        wait_clients(a, 1)
        await dash.send('{"type":"control","to":"sensor-001","command":"reboot","qos":1}')
        ack = await recv(dash)
        assert ack["type"] == "ack", ack  # not unknown_client: it is on b
        m = await recv_type(device, "control")
        assert m["command"] == "reboot" and m["from"] == "dashboard"
        assert c.metric("wsagent_cluster_messages_received_total") == 0  # only b got it
        # Nobody anywhere: still refused.
        await dash.send('{"type":"control","to":"nobody","command":"x","qos":1}')
        err = await recv(dash)
        assert err["type"] == "error" and err["code"] == "unknown_client"
        await nothing_for(device, 0.2)
        await close_all()
    run(go())


def test_a_client_id_taken_on_another_node_closes_the_old_connection(nodes):
    a, b = nodes(2)

    async def go():
        old = await client(a, "dev-1")
        wait_clients(b, 1)
        started = time.monotonic()
        new = await client(b, "dev-1")
        code, _ = await closed_with(old, timeout=2)
        took = time.monotonic() - started
        assert code == 4409
        OPEN.remove(old)
        assert took < 0.5, took  # the connection migration of the IoT design
        a.wait_metric("wsagent_cluster_evictions_total", lambda v: v == 1)
        # The id is b's now, for direct messages too.
        wait_clients(a, 1)
        dash = await client(a, "dash")
        await dash.send('{"type":"control","to":"dev-1","command":"ping"}')
        assert (await recv_type(new, "control"))["command"] == "ping"
        await close_all()
    run(go())


def test_an_mqtt_client_takes_its_id_over_from_a_native_one_on_another_node(nodes):
    a, b = nodes(2)

    async def go():
        ws = await client(a, "same-id")
        wait_clients(b, 1)
        c = paho.Client(client_id="same-id", protocol=paho.MQTTv311)
        connected = queue.Queue()
        c.on_connect = lambda *args: connected.put(True)
        c.connect("127.0.0.1", b.mqtt_port)
        c.loop_start()
        try:
            connected.get(timeout=5)
            code, _ = await closed_with(ws, timeout=2)
            assert code == 4409
            OPEN.remove(ws)
            lost = queue.Queue()
            c.on_disconnect = lambda *args: lost.put(True)
            wait_clients(a, 1)
            await client(a, "same-id")  # and back: the MQTT connection on b is closed
            lost.get(timeout=2)
        finally:
            c.loop_stop()
        await close_all()
    run(go())


async def drain(ws, seconds=0.5):
    """Every message frame's payload that arrives on `ws` until it is quiet for `seconds`."""
    got = []
    while True:
        try:
            m = await recv_type(ws, "message", timeout=seconds)
        except (AssertionError, asyncio.TimeoutError):
            return got
        got.append(m["payload"])


def test_a_shared_subscription_picks_one_member_across_the_cluster(nodes):
    a, b, c = nodes(3)
    count = 60

    async def go():
        workers = []
        for node, name in ((a, "w-a"), (b, "w-b1"), (b, "w-b2"), (c, "w-c")):
            ws = await client(node, name)
            await subscribe(ws, "$share/w/jobs/#")
            workers.append(ws)
        # a group with no member on the publishing node
        far = []
        for node, name in ((b, "f-b"), (c, "f-c")):
            ws = await client(node, name)
            await subscribe(ws, "$share/far/jobs/#")
            far.append(ws)
        wait_filters(a, 4)  # b and c: 2 groups each
        pub = await client(a, "boss")
        for i in range(count):
            await publish(pub, "jobs/build", i)
        per_worker = [await drain(ws) for ws in workers]
        everything = sorted(p for got in per_worker for p in got)
        assert everything == list(range(count))  # each job once, in the whole cluster
        per_node = [len(per_worker[0]), len(per_worker[1]) + len(per_worker[2]),
                    len(per_worker[3])]
        assert per_node == [count // 3] * 3, per_node  # the nodes take turns
        per_far = [await drain(ws) for ws in far]
        assert sorted(p for got in per_far for p in got) == list(range(count))
        assert all(per_far), per_far
        await close_all()
    run(go())


def test_a_group_whose_members_here_cannot_take_a_message_is_served_elsewhere(nodes):
    """The publishing node's only member of a group is offline (a persistent session with a
    QoS 0 subscription: it keeps nothing): the message goes to the group's member on the
    other node instead of nowhere."""
    a, b = nodes(2)

    async def go():
        away, _ = await session(a, "sleeper")
        await subscribe(away, "$share/g/jobs/#")
        await away.close()
        deadline = time.monotonic() + 5
        while a.health()["connections"] != 1:  # (the health request's own) gone; kept offline
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert a.health()["sessions"] == 1
        there = await client(b, "awake")
        await subscribe(there, "$share/g/jobs/#")
        wait_filters(a, 1)
        pub = await client(a, "boss")
        for i in range(5):
            await publish(pub, "jobs/x", i)
        assert await drain(there) == list(range(5))
        await close_all()
    run(go())


def test_qos1_across_nodes_goes_through_the_inbox_streams(nodes, redis):
    a, b, c = nodes(3)
    count = 50

    async def go():
        subs = []
        for node, name in ((b, "q-b"), (c, "q-c")):
            ws = await client(node, name)
            await subscribe(ws, "q/#", qos=1)
            subs.append(ws)
        pub = await client(a, "q-pub")
        wait_filters(a, 2)
        redis.cli("CONFIG", "RESETSTAT")
        for i in range(count):
            await publish(pub, "q/x", i, qos=1, msgid=f"m{i}")
            ack = await recv(pub)
            assert ack["type"] == "ack" and ack["msgid"] == f"m{i}", ack
        assert redis.command_calls("xadd") == 2 * count  # one per interested node
        assert redis.command_calls("publish") == 0       # not through pub/sub
        for ws in subs:
            got = []
            while len(got) < count:
                m = await recv_type(ws, "message")
                assert m["qos"] == 1
                got.append(m["payload"])
                await ws.send(json.dumps({"type": "ack", "seq": m["seq"]}))
            assert got == list(range(count))
        await close_all()
    run(go())
    assert b.metric("wsagent_cluster_inbox_received_total") == count


def test_a_qos1_publish_waits_for_redis_and_is_delivered_when_it_is_back(nodes, redis):
    a, b = nodes(2, extra=["--cluster.publish_timeout_ms", "20000"])

    async def go():
        s = await client(b, "s")
        await subscribe(s, "w/#", qos=1)
        pub = await client(a, "p")
        wait_filters(a, 1)
        redis.kill()
        a.wait_metric("wsagent_cluster_up", lambda v: v == 0)
        await publish(pub, "w/1", "held", qos=1, msgid="h1")
        await nothing_for(pub, 0.5)  # no ack while Redis is away
        redis.start()  # empty
        ack = await recv(pub, timeout=15)
        assert ack["type"] == "ack" and ack["msgid"] == "h1"
        m = await recv_type(s, "message", timeout=15)
        assert m["payload"] == "held"
        await close_all()
    run(go())


def test_a_qos1_publish_is_refused_when_redis_stays_away(nodes, redis):
    a, b = nodes(2, extra=["--cluster.publish_timeout_ms", "600"])

    async def go():
        s = await client(b, "s")
        await subscribe(s, "r/#", qos=1)
        pub = await client(a, "p")
        wait_filters(a, 1)
        redis.kill()
        a.wait_metric("wsagent_cluster_up", lambda v: v == 0)
        await publish(pub, "r/1", "x", qos=1, msgid="r1")
        err = await recv(pub, timeout=5)
        assert err["type"] == "error" and err["code"] == "unavailable", err
        assert "r1" in err["message"]
        await close_all()
    run(go())
    assert a.metric("wsagent_cluster_publishes_refused_total") == 1


# read_first=False: killed before it read any entry, so the only position it has is the one
# it found at the stream's end at its first start (stored before it reads: a restart that took
# the end again would skip what came in while it was down).
@pytest.mark.parametrize("read_first", [True, False])
def test_a_restarted_node_reads_its_inbox_from_where_it_was(agent_factory, redis, read_first):
    common = ["--cluster.redis", redis.url, *FAST, "--cluster.node_timeout_ms", "8000"]
    a = agent_factory(name="pa", args=["--store.kind", "memory", "--cluster.node_id", "pa",
                                       *common])
    bdata = a.dir.parent / "bdata"
    b = agent_factory(name="pb", args=["--store.data_dir", str(bdata), "--cluster.node_id",
                                       "pb", *common])
    a.wait_metric("wsagent_cluster_nodes", lambda v: v == 1)

    async def go():
        ws, _ = await session_on(b, "keeper")
        await subscribe(ws, "k/#", qos=1)
        await ws.close()
        OPEN.remove(ws)
        wait_filters(a, 1)
        pub = await client(a, "p")
        if read_first:
            await publish(pub, "k/0", 0, qos=1, msgid="k0")
            assert (await recv(pub))["type"] == "ack"
            b.wait_metric("wsagent_cluster_inbox_received_total", lambda v: v == 1)
        b.proc.kill()  # kill -9: whatever it read and stored stays read
        b.proc.wait()
        for i in range(1, 21):  # into b's inbox while b is down
            await publish(pub, f"k/{i}", i, qos=1, msgid=f"k{i}")
            assert (await recv(pub, timeout=10))["type"] == "ack"
        again = agent_factory(name="pb2", args=["--store.data_dir", str(bdata),
                                                "--cluster.node_id", "pb", *common])
        again.wait_log("cluster: node pb joined", timeout=15)
        ws, hello = await session_on(again, "keeper")
        got = []
        first = 0 if read_first else 1
        while len(got) < 21 - first:
            m = await recv_type(ws, "message", timeout=10)
            got.append(m["payload"])
            await ws.send(json.dumps({"type": "ack", "seq": m["seq"]}))
        assert sorted(set(got)) == list(range(first, 21))
        assert got[1 - first:] == list(range(1, 21))  # what came while it was down, in order
        await nothing_for(ws, 0.5)
        await close_all()
    run(go())


async def session_on(agent, name):
    """A persistent native session `name` on `agent` (closed by close_all())."""
    ws = await connect(agent)
    OPEN.append(ws)
    await ws.send(json.dumps({"type": "auth", "deviceId": name, "session": "persistent"}))
    return ws, await recv_type(ws, "auth_response")


async def qos1_through_a_failover(a, b, c, fail, recovered):
    """QoS 1 load from `a` to subscribers on `b` and `c` across a Redis failover: 20
    messages, fail(), 20 more while it happens, then `await recovered()` (the new master's
    port). Every publish is acknowledged (held meanwhile, none refused: publish_timeout_ms is
    long), every node rejoins through the new master, and every acknowledged message reaches
    both subscribers."""
    subs = []
    for node, name in ((b, "fb"), (c, "fc")):
        ws = await client(node, name)
        await subscribe(ws, "f/#", qos=1)
        subs.append(ws)
    wait_filters(a, 2)
    pub = await client(a, "fp")
    acked, refused = [], []

    async def acks(n):
        while len(acked) + len(refused) < n:
            m = await recv(pub, timeout=40)
            if m["type"] == "ack":
                acked.append(int(m["msgid"][1:]))
            elif m["type"] == "error" and m["code"] == "unavailable":
                refused.append(m["message"])
    for i in range(20):
        await publish(pub, "f/x", i, qos=1, msgid=f"f{i}")
    await acks(20)
    fail()
    for i in range(20, 40):
        await publish(pub, "f/x", i, qos=1, msgid=f"f{i}")
        await asyncio.sleep(0.05)
    port = await recovered()
    await acks(40)
    for x in (a, b, c):
        x.wait_log(rf"joined through Redis 127.0.0.1:{port}", timeout=30)
    for ws in subs:
        got = set()
        while not set(acked) <= got:
            m = await recv_type(ws, "message", timeout=20)
            got.add(m["payload"])
            await ws.send(json.dumps({"type": "ack", "seq": m["seq"]}))
    assert sorted(acked) == list(range(40)) and not refused, (acked, refused)
    await close_all()


def test_sentinel_failover_under_qos1_load_loses_nothing_acknowledged(agent_factory, tmp_path):
    master = RedisServer(tmp_path / "master")
    replica = RedisServer(tmp_path / "replica", args=["--replicaof", "127.0.0.1",
                                                      str(master.port)])
    sentinels = [Sentinel(tmp_path / f"s{i}", master.port) for i in range(3)]
    try:
        deadline = time.monotonic() + 10  # the replica in sync before the load
        while "master_link_status:up" not in replica.cli("INFO", "replication"):
            assert time.monotonic() < deadline, replica.cli("INFO", "replication")
            time.sleep(0.1)
        args = ["--store.kind", "memory", "--cluster.sentinels",
                ",".join(s.address for s in sentinels), "--cluster.master", "m",
                "--cluster.wait_replicas", "1", "--cluster.publish_timeout_ms", "30000",
                "--cluster.heartbeat_ms", "200", "--cluster.node_timeout_ms", "6000"]
        a, b, c = (agent_factory(name=f"f{i}", args=args + ["--cluster.node_id", f"f{i}"])
                   for i in range(3))
        for x in (a, b, c):
            x.wait_log(rf"joined through Redis 127.0.0.1:{master.port}", timeout=10)
            x.wait_metric("wsagent_cluster_nodes", lambda v: v == 2)

        async def recovered():
            deadline = time.monotonic() + 20
            while sentinels[0].master_port() != replica.port:
                assert time.monotonic() < deadline, "no failover"
                await asyncio.sleep(0.2)
            # The old master back, as the new one's replica: WAIT 1 is satisfied again.
            master.start()
            return replica.port

        async def go():
            await qos1_through_a_failover(a, b, c, master.kill, recovered)
        run(go())
    finally:
        for s in sentinels:
            s.stop()
        replica.stop()
        master.stop()


def test_a_survivor_publishes_the_wills_and_presence_of_a_dead_nodes_clients_once(nodes):
    a, b, c = nodes(3)

    async def go():
        watchers = []
        for node, name in ((a, "watch-a"), (c, "watch-c")):
            ws = await client(node, name)
            await subscribe(ws, "$sys/clients/#", "status/#")
            watchers.append(ws)
        wait_filters(b, 4)
        m = paho.Client(client_id="dev-1", protocol=paho.MQTTv311)
        m.will_set("status/dev-1", b"offline", qos=1, retain=False)
        connected = queue.Queue()
        m.on_connect = lambda *args: connected.put(True)
        m.connect("127.0.0.1", b.mqtt_port)
        m.loop_start()
        connected.get(timeout=5)
        native = await client(b, "nat-1")
        wanted = {"$sys/clients/dev-1/connected", "$sys/clients/nat-1/connected"}
        for ws in watchers:  # both clients' "connected" events (and the other watcher's)
            seen = set()
            while not wanted <= seen:
                seen.add((await recv_type(ws, "message"))["tag"])
        b.proc.kill()  # kill -9: b publishes nothing more
        m.loop_stop()
        OPEN.remove(native)
        for ws in watchers:
            got = []
            while len(got) < 3:
                msg = await recv_type(ws, "message", timeout=10)
                got.append((msg["tag"], msg["payload"] if msg["tag"].startswith("status")
                            else msg["payload"]["clean"]))
            assert sorted(got) == [("$sys/clients/dev-1/disconnected", False),
                                   ("$sys/clients/nat-1/disconnected", False),
                                   ("status/dev-1", "offline")], got
            await nothing_for(ws, 1.0)  # once: not by both survivors
        await close_all()
    run(go())
    assert "published 1 will(s) and 2 disconnected event(s)" in a.log() + c.log()


def wait_retained(agent, n):
    deadline = time.monotonic() + 15  # (after a Redis restart: a reconnect's backoff, too)
    while agent.health()["retained"] != n:
        assert time.monotonic() < deadline, agent.health()
        time.sleep(0.05)


def test_retained_messages_are_one_set_for_the_cluster(nodes, agent_factory, redis):
    a, b, c = nodes(3)

    async def go():
        pub = await client(a, "pub")
        await publish(pub, "plant/l1/temp", {"c": 20}, retain=True)
        await publish(pub, "plant/l2/temp", {"c": 7}, retain=True, qos=1, msgid="r2")
        assert (await recv(pub))["type"] == "ack"
        for node in (a, b, c):
            wait_retained(node, 2)
        late = await client(b, "late")  # on another node, subscribed after the publish
        await subscribe(late, "plant/#")
        got = sorted([(await recv_type(late, "message"))["payload"]["c"] for _ in range(2)])
        assert got == [7, 20]
        # Cleared from a third node (MQTT: an empty retained payload).
        m = paho.Client(client_id="clearer", protocol=paho.MQTTv311)
        m.connect("127.0.0.1", c.mqtt_port)
        m.loop_start()
        m.publish("plant/l1/temp", b"", qos=1, retain=True).wait_for_publish(5)
        m.loop_stop()
        m.disconnect()
        for node in (a, b, c):
            wait_retained(node, 1)
        # A node that joins later has the set at once; so has one after Redis lost its data.
        d = agent_factory(name="late-node", args=["--store.kind", "memory", "--cluster.redis",
                                                  redis.url, "--cluster.node_id", "late",
                                                  *FAST])
        d.wait_log("cluster: node late joined")
        wait_retained(d, 1)
        redis.kill()
        a.wait_metric("wsagent_cluster_up", lambda v: v == 0)
        await publish(pub, "plant/l3/temp", {"c": 3}, retain=True)  # while Redis is away
        redis.start()
        for node in (a, b, c, d):
            node.wait_metric("wsagent_cluster_up", lambda v: v == 1, timeout=10)
        for node in (a, b, c, d):
            wait_retained(node, 2)
        assert "plant/l2/temp" in redis.cli("HKEYS", "wsagent:retained")
        await close_all()
    run(go())


def test_bench_across_nodes_delivers_every_message_through_redis(nodes):
    a, b, c = nodes(3)
    p = subprocess.run([BIN, "bench", "--json", "--quiet", "-s", "fan-out", "--subscribers", "40",
                        "--url", a.url, "--sub-urls", f"{b.url},{c.url}", "--duration", "1",
                        "--warmup", "0.3"], capture_output=True, text=True, timeout=60)
    report = json.loads([l for l in p.stdout.splitlines() if l.startswith("{")][-1])
    assert p.returncode == 0, p.stderr
    assert report["delivered"] == report["expected"] > 0 and report["lost"] == 0, report
    # Every measured message crossed to both other nodes: one PUBLISH each.
    assert a.metric("wsagent_cluster_messages_sent_total") >= 2 * report["sent"]
    for node in (b, c):
        assert node.metric("wsagent_cluster_messages_received_total") >= report["sent"]


def test_a_node_that_leaves_asks_its_clients_to_reconnect_elsewhere(nodes):
    a, b = nodes(2)

    async def go():
        ws = await client(b, "dev-n")
        await subscribe(ws, "d/#")
        raw, _ = connect5(b, "dev-m")  # an MQTT 5 client, raw: to read the DISCONNECT
        wait_filters(a, 1)
        b.signal(signal.SIGTERM)
        code, reason = await closed_with(ws)
        assert code == 1012 and "reconnect in" in reason, (code, reason)
        OPEN.remove(ws)
        assert read_until_closed(raw).endswith(b"\xe0\x01\x9c")  # DISCONNECT, Use another server
        assert b.proc.wait(timeout=10) == 0
        a.wait_metric("wsagent_cluster_nodes", lambda v: v == 0, timeout=2)
        assert "node n1 left" in a.log()
        again = await client(a, "dev-n")  # and the client comes back on the other node
        await subscribe(again, "d/#")
        await close_all()
    run(go())


def test_a_reconnect_storm_is_admitted_at_the_rate_the_survivor_takes(nodes):
    a, b = nodes(2, extra=["--limits.max_auth_rate", "20"])
    count = 60

    async def join(node, i, refused):
        """Connects `storm-<i>` to `node`, waiting each retry delay it is told."""
        while True:
            ws = await connect(node)
            try:
                # (open mode: the connection is let in anonymously at once, or refused)
                await ws.send(json.dumps({"type": "auth", "deviceId": f"storm-{i}"}))
                await recv_type(ws, "auth_response")
                OPEN.append(ws)
                return
            except websockets.ConnectionClosed:
                assert ws.close_code == 1013, ws.close_code
                ms = int(re.search(r"retry in (\d+) ms", ws.close_reason).group(1))
                refused.append(ms)
                await asyncio.sleep(ms / 1000)

    async def go():
        await asyncio.gather(*(join(b, i, []) for i in range(count)))
        b.proc.kill()  # b dies: all of its clients come to a at once
        OPEN.clear()
        refused, started = [], time.monotonic()
        await asyncio.gather(*(join(a, i, refused) for i in range(count)))
        took = time.monotonic() - started
        assert refused, "nobody was refused: the storm was not one"
        # 60 at 20 a second after a second's burst: a few seconds, each refused client
        # waiting the delay it was given rather than spinning.
        assert took < 15, took
        assert a.metric("wsagent_authentications_total", '{result="busy"}') == len(refused)
        await close_all()
    run(go())


def test_cluster_configuration_errors_name_the_key(tmp_path):
    r = serve_file(tmp_path, '[cluster]\nredis = "http://127.0.0.1:6379"\n')
    assert r.returncode == 2
    assert "cluster.redis" in r.stderr and "redis://" in r.stderr
    r = serve_file(tmp_path, '[cluster]\nredis = "redis://127.0.0.1:6379"\nnode_id = "a b"\n')
    assert r.returncode == 2 and "cluster.node_id" in r.stderr
    r = serve_file(tmp_path, '[cluster]\nsentinels = ["127.0.0.1:26379"]\n')
    assert r.returncode == 2 and "cluster.master" in r.stderr
    r = serve_file(tmp_path, '[cluster]\nsentinels = ["127.0.0.1"]\nmaster = "m"\n')
    assert r.returncode == 2 and "cluster.sentinels" in r.stderr and "host:port" in r.stderr


def test_node_id_is_kept_in_the_data_directory(agent_factory, redis, tmp_path):
    data = tmp_path / "keep"
    args = ["--store.kind", "memory", "--store.data_dir", str(data), "--cluster.redis",
            redis.url, *FAST]
    first = agent_factory(name="first", args=args)
    name = first.wait_log(r"cluster: node (\S+) joined").group(1)
    assert name.startswith("wsagent-") and (data / "node_id").read_text().strip() == name
    first.stop()
    again = agent_factory(name="again", args=args)
    assert again.wait_log(r"cluster: node (\S+) joined").group(1) == name
