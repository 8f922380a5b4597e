"""A takeover storm: for a bounded time, many clients take the same client ids over again and
again, on both protocols (native and MQTT 3.1.1 / 5.0), with clean and persistent sessions,
while others publish, subscribe, unsubscribe and resume. CI runs it under ThreadSanitizer too
(the `tsan` preset). It passes when the agent reports nothing (the fixture fails a test whose
agent logged a sanitizer report), is still serving, and every QoS 1 message the agent
acknowledged for a persistent session reached that session's client."""
import asyncio
import json
import os
import random
import time

import websockets

from conftest import connect, run, still_serves
from mqtt_async import Client

SECONDS = float(os.environ.get("WSAGENT_STORM_SECONDS", "8"))
KEEP = [f"keep-{i}" for i in range(3)]  # persistent sessions only: their messages are counted
LOOSE = [f"storm-{i}" for i in range(4)]  # any kind of session, any protocol
FILTERS = ["storm/#", "storm/+/x", "$share/g/storm/#", "other/+"]


class Tally:
    def __init__(self):
        self.received = {k: set() for k in KEEP}
        self.acked = {k: set() for k in KEEP}
        self.visits = {"native": 0, "mqtt4": 0, "mqtt5": 0}

    def got(self, tag, payload):
        if tag.startswith("check/"):
            self.received[tag[len("check/"):]].add(json.loads(payload)["n"])


async def native_visit(agent, cid, persistent, rng, tally):
    try:
        # Reads everything the agent sends, even while closing (max_queue: no backpressure).
        ws = await connect(agent, max_queue=None)
    except (OSError, asyncio.TimeoutError):
        return
    tally.visits["native"] += 1
    try:
        frame = {"type": "auth", "deviceId": cid}
        if persistent:
            frame["session"] = "persistent"
        await ws.send(json.dumps(frame))
        filters = rng.sample(FILTERS, rng.randint(1, 3))
        if cid in KEEP:
            filters.append(f"check/{cid}")
        await ws.send(json.dumps({"type": "subscribe", "id": "s", "tags": filters, "qos": 1}))
        if rng.random() < 0.4:
            gone = [f for f in filters if not f.startswith("check/")][:1]
            await ws.send(json.dumps({"type": "unsubscribe", "id": "u", "tags": gone}))
        end = time.monotonic() + rng.uniform(0.0, 0.3)
        while (left := end - time.monotonic()) > 0:
            try:
                raw = await asyncio.wait_for(ws.recv(), left)
            except asyncio.TimeoutError:
                break
            m = json.loads(raw)
            if m.get("type") != "message":
                continue
            # Counted before it is acknowledged: what is acknowledged is never sent again.
            tally.got(m["tag"], json.dumps(m["payload"]))
            if m.get("qos"):
                await ws.send(json.dumps({"type": "ack", "seq": m["seq"]}))
    except websockets.ConnectionClosed:
        return  # taken over
    finally:
        if rng.random() < 0.5:
            await ws.close()
        else:
            ws.transport.abort()
            await ws.wait_closed()


async def mqtt_visit(agent, cid, persistent, rng, tally):
    version = rng.choice([4, 5])
    try:
        c = await Client.connect(agent.mqtt_port, cid, version, clean=not persistent,
                                 expiry=3600 if persistent else 0)
    except (OSError, ConnectionError, asyncio.TimeoutError):
        return
    tally.visits[f"mqtt{version}"] += 1
    try:
        filters = rng.sample(FILTERS, rng.randint(1, 3))
        if cid in KEEP:
            filters.append(f"check/{cid}")
        c.subscribe(filters, qos=1)
        if rng.random() < 0.4:
            c.unsubscribe([f for f in filters if not f.startswith("check/")][:1])
        end = time.monotonic() + rng.uniform(0.0, 0.3)
        while (left := end - time.monotonic()) > 0:
            try:
                kind, body = await asyncio.wait_for(c.read(), left)
            except asyncio.TimeoutError:
                break
            if kind is None:
                return  # taken over
            if kind >> 4 == 3:
                topic, pid, payload = c.parse_publish(kind, body)
                tally.got(topic, payload)
                if pid:
                    c.ack(0x40, pid)
    finally:
        if rng.random() < 0.5:
            c.disconnect()
            await c.close()
        else:
            c.abort()


async def stormer(agent, seed, deadline, tally):
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        cid = rng.choice(KEEP + LOOSE)
        persistent = cid in KEEP or rng.random() < 0.5
        visit = native_visit if rng.random() < 0.5 else mqtt_visit
        await visit(agent, cid, persistent, rng, tally)


async def native_publisher(agent, deadline, tally):
    """QoS 1 to the kept sessions (counted once acknowledged) and QoS 0 to the rest."""
    ws = await connect(agent)
    await ws.send(json.dumps({"type": "auth", "deviceId": "storm-pub"}))
    pending = {}
    window = asyncio.Semaphore(32)

    async def acks():
        async for raw in ws:
            m = json.loads(raw)
            if m.get("type") == "ack" and m.get("msgid") in pending:
                k, n = pending.pop(m["msgid"])
                tally.acked[k].add(n)
                window.release()
    reader = asyncio.create_task(acks())
    n = 0
    while time.monotonic() < deadline:
        await window.acquire()
        k = KEEP[n % len(KEEP)]
        pending[f"p{n}"] = (k, n)
        await ws.send(json.dumps({"type": "publish", "tag": f"check/{k}", "payload": {"n": n},
                                  "qos": 1, "msgid": f"p{n}"}))
        await ws.send(json.dumps({"type": "publish", "tag": f"storm/{n % 3}/x", "payload": n}))
        n += 1
    await asyncio.sleep(0.5)  # the last acknowledgements
    reader.cancel()
    await ws.close()
    return n


async def mqtt_publisher(agent, deadline, tally):
    c = await Client.connect(agent.mqtt_port, "storm-mqtt-pub", 5)
    pending = {}
    n = 1_000_000
    while time.monotonic() < deadline:
        k = KEEP[n % len(KEEP)]
        pid = c.publish(f"check/{k}", json.dumps({"n": n}).encode(), qos=1)
        pending[pid] = (k, n)
        n += 1
        while True:  # one in flight at a time: a PUBACK names its packet id
            kind, body = await c.read()
            assert kind is not None, "the agent closed the MQTT publisher"
            if kind >> 4 == 4:
                k2, n2 = pending.pop(int.from_bytes(body[:2], "big"))
                tally.acked[k2].add(n2)
                break
    c.disconnect()
    await c.close()


async def collect(agent, cid, tally):
    """Resumes `cid`'s session and takes what is still waiting, until it is quiet."""
    ws = await connect(agent)
    await ws.send(json.dumps({"type": "auth", "deviceId": cid, "session": "persistent"}))
    while True:
        try:
            raw = await asyncio.wait_for(ws.recv(), 2.0)
        except asyncio.TimeoutError:
            break
        m = json.loads(raw)
        if m.get("type") == "message":
            tally.got(m["tag"], json.dumps(m["payload"]))
            if m.get("qos"):
                await ws.send(json.dumps({"type": "ack", "seq": m["seq"]}))
    await ws.close()


def test_a_takeover_storm_loses_no_acknowledged_message(agent_factory):
    # Queues large enough that nothing is dropped by design (limits.max_queued): what is
    # acknowledged must then arrive.
    agent = agent_factory(args=["--limits.max_queued", "1000000", "--limits.max_queued_bytes", "0"])
    tally = Tally()

    async def go():
        # The kept sessions exist and are subscribed before anything is published to them.
        for k in KEEP:
            ws = await connect(agent)
            await ws.send(json.dumps({"type": "auth", "deviceId": k, "session": "persistent"}))
            await ws.send(json.dumps({"type": "subscribe", "id": "s", "tags": [f"check/{k}"],
                                      "qos": 1}))
            while json.loads(await ws.recv()).get("type") != "subscribed":
                pass
            await ws.close()
        deadline = time.monotonic() + SECONDS
        await asyncio.gather(native_publisher(agent, deadline, tally),
                             mqtt_publisher(agent, deadline, tally),
                             *(stormer(agent, seed, deadline, tally) for seed in range(10)))
        for k in KEEP:
            await collect(agent, k, tally)
        await still_serves(agent)

    run(go())
    assert agent.proc.poll() is None, "the agent died"
    assert agent.health()["qos1_dropped"] == 0
    assert all(tally.visits.values()), tally.visits  # every protocol took part
    for k in KEEP:
        assert tally.acked[k], f"nothing was acknowledged for {k}"
        missing = tally.acked[k] - tally.received[k]
        assert not missing, f"{k}: {len(missing)} acknowledged message(s) never arrived, " \
                            f"e.g. {sorted(missing)[:10]}"
