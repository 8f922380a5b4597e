"""Tag history: offsets per tag, and recovery with `since` / `since_ms` with no gap and no
duplicate while publishing goes on, across restarts and a kill -9."""
import asyncio
import json
import signal
import time

from conftest import client, close_all, drop, nothing_for, publish, recv_type, run, subscribe

HISTORY = ["--history.tags", "plant/#,$sys/#"]



async def messages(ws, n):
    return [await recv_type(ws, "message") for _ in range(n)]


def test_every_message_on_a_history_tag_has_the_next_offset_of_its_tag(agent_factory):
    agent = agent_factory(args=HISTORY)

    async def go():
        s = await client(agent, "dash")
        r = await subscribe(s, "plant/#", "other/#")
        assert "recovered" not in r  # nothing asked
        pub = await client(agent, "pub")
        for tag in ["plant/a", "plant/b", "plant/a", "other/x", "plant/a"]:
            await publish(pub, tag, tag)
        got = await messages(s, 5)
        assert [(m["tag"], m.get("offset")) for m in got] == [
            ("plant/a", 1), ("plant/b", 1), ("plant/a", 2), ("other/x", None), ("plant/a", 3)]
        await close_all()
    run(go())


def test_a_client_back_with_since_gets_what_it_missed_then_live_with_no_gap_or_duplicate(
        agent_factory):
    agent = agent_factory(args=HISTORY)
    total = 600

    async def go():
        pub = await client(agent, "pub")

        async def publisher():
            for i in range(total):
                await publish(pub, "plant/line1/temp", i)
                if i % 10 == 0:
                    await asyncio.sleep(0.002)

        s = await client(agent, "dash")
        await subscribe(s, "plant/+/temp")
        producing = asyncio.create_task(publisher())
        seen = await messages(s, 50)
        last = seen[-1]
        await drop(s)
        await asyncio.sleep(0.05)  # away while publishing goes on
        back = await client(agent, "dash")
        r = await subscribe(back, "plant/+/temp",
                                  since={"plant/line1/temp": last["offset"]})
        assert r["recovered"] is True and "incomplete" not in r, r
        got = []
        while not got or got[-1]["payload"] != total - 1:
            got.append(await recv_type(back, "message"))
        await producing
        # The recovered part and the live part join exactly: each number once, in order.
        assert [m["payload"] for m in got] == list(range(last["payload"] + 1, total))
        assert [m["offset"] for m in got] == list(range(last["offset"] + 1, total + 1))
        await nothing_for(back, 0.2)
        await close_all()
    run(go())


def test_since_ms_recovers_by_time_and_history_replaces_the_retained_message(agent_factory):
    agent = agent_factory(args=HISTORY)

    async def go():
        pub = await client(agent, "pub")
        for i in range(3):
            await publish(pub, "plant/p", i, retain=True, qos=1)
            await recv_type(pub, "ack")
        await asyncio.sleep(0.05)
        mark = int(time.time() * 1000)
        await asyncio.sleep(0.05)
        for i in range(3, 6):
            await publish(pub, "plant/p", i, retain=True, qos=1)
            await recv_type(pub, "ack")
        s = await client(agent, "by-time")
        r = await subscribe(s, "plant/#", since_ms=mark)
        assert r["recovered"] is True, r
        got = await messages(s, 3)
        assert [m["payload"] for m in got] == [3, 4, 5]
        assert not any(m.get("retained") for m in got)  # the history stands for the state
        await nothing_for(s, 0.2)
        # Without a recovery request the retained message comes as usual.
        plain = await client(agent, "plain")
        await subscribe(plain, "plant/#")
        m = await recv_type(plain, "message")
        assert m["retained"] is True and m["payload"] == 5 and m["offset"] == 6
        await close_all()
    run(go())


def test_recovery_says_what_it_could_not_recover(agent_factory):
    agent = agent_factory(args=HISTORY + ["--history.max_count", "3"])

    async def go():
        pub = await client(agent, "pub")
        for i in range(5):
            await publish(pub, "plant/q", i)
        await publish(pub, "nohist/x", "x")
        s = await client(agent, "late")
        # Offsets 1 and 2 are gone (max_count 3): what is kept comes, flagged incomplete.
        r = await subscribe(s, "plant/#", since={"plant/q": 0})
        assert r["recovered"] is False and r["incomplete"] == ["plant/q"], r
        assert [m["offset"] for m in await messages(s, 3)] == [3, 4, 5]
        # An offset this agent never gave (its history was lost), and a tag without history.
        r = await subscribe(s, "plant/q", "nohist/#",
                                  since={"plant/q": 99, "nohist/x": 1})
        assert r["recovered"] is False and r["incomplete"] == ["nohist/x", "plant/q"], r
        await nothing_for(s, 0.2)
        # A since tag the subscription does not match, or that is not a tag, is refused.
        await s.send(json.dumps({"type": "subscribe", "id": "b", "tags": ["plant/#"],
                                 "since": {"elsewhere/t": 1}}))
        e = await recv_type(s, "error")
        assert e["code"] == "bad_request" and "elsewhere/t" in e["message"], e
        await s.send(json.dumps({"type": "subscribe", "id": "c", "tags": ["#"],
                                 "since": {"plant/+": 1}}))
        assert (await recv_type(s, "error"))["code"] == "invalid_tag"
        await s.send(json.dumps({"type": "subscribe", "id": "d", "tags": ["#"],
                                 "since": {"plant/q": -1}}))
        assert (await recv_type(s, "error"))["code"] == "bad_request"
        await close_all()
    run(go())


def test_history_survives_a_kill_9_and_its_numbering_goes_on(agent_factory, tmp_path):
    data = tmp_path / "shared-data"
    only_plant = ["--history.tags", "plant/#"]
    first = agent_factory(args=only_plant, data_dir=data, name="first")

    async def put():
        pub = await client(first, "pub")
        for i in range(1, 6):
            await publish(pub, "plant/k", i, qos=1)
            assert (await recv_type(pub, "ack"))["type"] == "ack"
        first.proc.send_signal(signal.SIGKILL)  # right after the last ack
        await close_all()
    run(put())
    first.proc.wait()
    second = agent_factory(args=only_plant, data_dir=data, name="second")
    second.wait_log(r"history: 1 tag\(s\), 5 message\(s\) kept")

    async def get():
        s = await client(second, "back")
        r = await subscribe(s, "plant/k", since={"plant/k": 2})
        assert r["recovered"] is True, r
        got = await messages(s, 3)
        assert [(m["offset"], m["payload"]) for m in got] == [(3, 3), (4, 4), (5, 5)]
        pub = await client(second, "pub")
        await publish(pub, "plant/k", 6)
        assert (await recv_type(s, "message"))["offset"] == 6
        h = second.health()
        assert h["history_tags"] == 1 and h["history_messages"] == 6
        await close_all()
    run(get())


def test_presence_events_can_keep_a_history(agent_factory):
    agent = agent_factory(args=HISTORY)

    async def go():
        dev = await client(agent, "sensor-9")
        await drop(dev)
        await asyncio.sleep(0.1)
        dash = await client(agent, "dash")
        r = await subscribe(dash, "$sys/clients/sensor-9/#", since_ms=0)
        assert r["recovered"] is True, r
        got = await messages(dash, 2)
        assert [m["tag"].rsplit("/", 1)[1] for m in got] == ["connected", "disconnected"]
        await close_all()
    run(go())
