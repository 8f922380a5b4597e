"""The cluster's faults under load (docs/cluster.md, "When things fail"), each ending with a
check that nothing acknowledged was lost: an agent stopped with SIGSTOP, Redis unreachable
for 30 seconds, and a fourth node joining while messages flow. Real redis-server, real
agents, QoS 1 publishers whose every acknowledgement is counted."""

import asyncio
import json
import signal
import time

from conftest import client, close_all, recv, run, subscribe, publish
from test_cluster import FAST, nodes, ready, redis, wait_filters  # noqa: F401 (fixtures)


class Load:
    """A QoS 1 publisher on `ws` sending `tag` payloads 0, 1, 2... every `period` seconds
    until stop(); acked and refused (native `unavailable`) msgids are collected."""

    def __init__(self, ws, tag, period):
        self.ws, self.tag, self.period = ws, tag, period
        self.sent, self.acked, self.refused = 0, [], []
        self.running = True

    async def send(self):
        while self.running:
            await publish(self.ws, self.tag, self.sent, qos=1, msgid=f"m{self.sent}")
            self.sent += 1
            await asyncio.sleep(self.period)

    async def answers(self):
        while self.running or len(self.acked) + len(self.refused) < self.sent:
            try:
                m = await recv(self.ws, timeout=1)
            except asyncio.TimeoutError:
                continue
            if m.get("type") == "ack":
                self.acked.append(int(m["msgid"][1:]))
            elif m.get("type") == "error" and m.get("code") == "unavailable":
                self.refused.append(int(m["msgid"][1:]))
            else:
                raise AssertionError(f"unexpected answer {m}")

    def start(self):
        self.tasks = [asyncio.create_task(self.send()), asyncio.create_task(self.answers())]

    async def stop(self, timeout=30):
        self.running = False
        await asyncio.wait_for(asyncio.gather(*self.tasks), timeout)


class Receiver:
    """A QoS 1 subscriber that acknowledges what it gets and records the payloads."""

    def __init__(self, ws):
        self.ws, self.got = ws, []
        self.task = asyncio.create_task(self.run())

    @classmethod
    async def on(cls, node, name, tag):
        """`name` on `node`, subscribed to `tag` at QoS 1."""
        ws = await client(node, name)
        await subscribe(ws, tag, qos=1)
        return cls(ws)

    async def run(self):
        while True:
            m = await recv(self.ws, timeout=120)
            if m.get("type") == "message":
                self.got.append(m["payload"])
                if "seq" in m:
                    await self.ws.send(json.dumps({"type": "ack", "seq": m["seq"]}))

    async def until(self, check, timeout=20):
        deadline = time.monotonic() + timeout
        while not check(self.got):
            if self.task.done():
                self.task.result()  # its error
            assert time.monotonic() < deadline, f"got {len(self.got)}: {self.got[-5:]}"
            await asyncio.sleep(0.05)

    def stop(self):
        self.task.cancel()


def no_duplicates(xs):
    return len(xs) == len(set(xs))


def test_a_stopped_node_holds_nobody_up_and_its_queues_stay_bounded(nodes, redis):  # noqa: F811
    """SIGSTOP of c under QoS 1 and QoS 0 load from a: a's publisher is acknowledged all
    along and b gets everything; c's inbox stream stays within inbox_max and Redis cuts its
    overflowing pub/sub connection; after SIGCONT c reconnects, gets the newest QoS 1
    messages its inbox kept, in order and once, and new messages again."""
    a, b, c = nodes(3, extra=["--cluster.inbox_max", "100", "--cluster.node_timeout_ms", "8000"])
    redis.cli("CONFIG", "SET", "stream-node-max-entries", "10")  # MAXLEN ~ trims close
    redis.cli("CONFIG", "SET", "client-output-buffer-limit", "pubsub 256kb 128kb 1")

    async def go():
        rb = await Receiver.on(b, "qb", "q/#")
        rc = await Receiver.on(c, "qc", "q/#")
        bulk = await client(c, "bulk-c")
        await subscribe(bulk, "bulk/#")
        wait_filters(a, 3)
        load = Load(await client(a, "qa"), "q/x", 0.01)
        blaster = await client(a, "blaster")
        connects = c.metric("wsagent_cluster_connects_total")
        load.start()
        await rb.until(lambda g: len(g) >= 20)
        c.signal(signal.SIGSTOP)
        try:
            stopped_at = load.sent
            # 12 MB of QoS 0 for c: past what the kernel's socket buffers hold, and then past
            # Redis's pub/sub output buffer bound.
            for i in range(3000):
                await publish(blaster, "bulk/x", {"i": i, "pad": "x" * 4000})
            await asyncio.sleep(4)
            # a and b do not wait for c: everything sent while it is stopped is acknowledged
            assert load.sent - stopped_at > 200
            await rb.until(lambda g: len(g) >= load.sent - 5)
            assert set(load.acked) >= set(range(load.sent - 20)) and not load.refused
            inbox = int(redis.cli("XLEN", "wsagent:inbox:n2"))
            assert 0 < inbox <= 100 + 10, inbox  # bounded by inbox_max, not by what was sent
        finally:
            c.signal(signal.SIGCONT)
        assert "client_output_buffer_limit_disconnections:0" not in redis.cli("INFO", "stats")
        c.wait_metric("wsagent_cluster_connects_total", lambda v: v > connects, timeout=15)
        await load.stop()
        assert sorted(load.acked) == list(range(load.sent)), "every publish acknowledged"
        await rb.until(lambda g: set(g) >= set(load.acked))
        assert rb.got == sorted(rb.got) and no_duplicates(rb.got)
        # c: the newest messages its inbox kept, then everything after, in order and once.
        await rc.until(lambda g: g and g[-1] == load.sent - 1)
        assert rc.got == sorted(rc.got) and no_duplicates(rc.got), rc.got
        assert len(rc.got) < load.sent  # the oldest went with the inbox's bound
        # QoS 0 flows to c again.
        wait_filters(a, 3)
        await publish(blaster, "bulk/y", "after")
        deadline = time.monotonic() + 10
        while True:
            m = await recv(bulk, timeout=10)
            if m.get("type") == "message" and m["payload"] == "after":
                break
            assert time.monotonic() < deadline
        rb.stop()
        rc.stop()
        await close_all()
    run(go())
    assert a.metric("wsagent_cluster_nodes") == 2 and b.metric("wsagent_cluster_nodes") == 2


def test_a_30_second_redis_outage_under_load(nodes, redis):  # noqa: F811
    """Redis stopped (SIGSTOP: connections hang, as in a network partition) for 30 s under
    QoS 1 load across two nodes: local clients are served all along, publishes that cannot
    reach Redis in publish_timeout_ms are refused with `unavailable`, /readyz says 503; after
    Redis is back every acknowledged message reaches the other node and publishes are
    acknowledged again."""
    a, b = nodes(2, extra=["--cluster.publish_timeout_ms", "3000"])

    async def go():
        remote = await Receiver.on(b, "far", "o/#")
        local = await Receiver.on(a, "near", "o/#")
        wait_filters(a, 1)
        load = Load(await client(a, "src"), "o/x", 0.05)
        load.start()
        await remote.until(lambda g: len(g) >= 20)
        redis.proc.send_signal(signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            seen = len(local.got)
            await asyncio.sleep(10)
            assert len(local.got) > seen + 100  # a's own subscriber is served meanwhile
            assert ready(a)[0] == 503 and ready(b)[0] == 503  # the cluster is not up
            assert load.refused  # held 3 s, then refused
            await asyncio.sleep(30 - (time.monotonic() - t0))
        finally:
            redis.proc.send_signal(signal.SIGCONT)
        for x in (a, b):
            x.wait_metric("wsagent_cluster_up", lambda v: v == 1, timeout=30)
        await asyncio.sleep(2)
        before = len(load.acked)
        await asyncio.sleep(2)
        assert len(load.acked) > before  # acknowledged again
        await load.stop()
        assert no_duplicates(load.acked + load.refused)
        assert sorted(load.acked + load.refused) == list(range(load.sent))
        # Nothing acknowledged is lost on either node, and each gets it once.
        await remote.until(lambda g: set(g) >= set(load.acked), timeout=30)
        # The refused ones reached the local subscriber all the same (at least once: the
        # client publishes them again).
        await local.until(lambda g: set(g) >= set(load.acked) | set(load.refused))
        assert no_duplicates(remote.got), "a message reached b twice"
        assert ready(a)[0] == 200 and ready(b)[0] == 200
        remote.stop()
        local.stop()
        await close_all()
    run(go())
    assert a.metric("wsagent_cluster_publishes_refused_total") > 0


def test_a_fourth_node_joins_under_load_and_serves(nodes, agent_factory, redis):  # noqa: F811
    """Three nodes under QoS 1 load; a fourth starts: the others' subscribers see no gap and
    no duplicate, its own subscriber gets everything from the moment the publisher's node
    knows its filter, and its clients' messages reach the others."""
    a, b, c = nodes(3)

    async def go():
        subs = []
        for node, name in ((b, "jb"), (c, "jc")):
            subs.append(await Receiver.on(node, name, "j/#"))
        wait_filters(a, 2)
        load = Load(await client(a, "ja"), "j/x", 0.01)
        load.start()
        await subs[0].until(lambda g: len(g) >= 50)
        d = agent_factory(name="n3", args=["--store.kind", "memory", "--cluster.redis",
                                           redis.url, "--cluster.node_id", "n3", *FAST])
        d.wait_log(r"cluster: node n3 joined")
        for x in (a, b, c):
            x.wait_metric("wsagent_cluster_nodes", lambda v: v == 3)
        rd = await Receiver.on(d, "jd", "j/#")
        wait_filters(a, 3)
        mark = load.sent  # published from here on: a knows d's filter
        await rd.until(lambda g: len(g) >= 100)
        # d serves new clients: one of its publishers reaches b.
        mine = await client(d, "jd-pub")
        await publish(mine, "j/from-d", "hello", qos=1, msgid="d1")
        assert (await recv(mine))["type"] == "ack"
        await subs[0].until(lambda g: "hello" in g)
        await load.stop()
        assert sorted(load.acked) == list(range(load.sent)) and not load.refused
        for r in subs:
            await r.until(lambda g: len(g) >= load.sent + 1)
            nums = [x for x in r.got if x != "hello"]
            assert nums == list(range(load.sent)), "a gap or a duplicate on an old node"
        await rd.until(lambda g: load.sent - 1 in g)  # ("hello" may come last)
        nums = [x for x in rd.got if x != "hello"]
        assert set(nums) >= set(range(mark, load.sent))
        assert nums == sorted(nums) and no_duplicates(nums)
        for r in subs + [rd]:
            r.stop()
        await close_all()
    run(go())
