"""MQTT 5.0 features with python3-paho-mqtt and a raw socket, against native clients on the
same tags: shared subscriptions, subscription identifiers, no local, retain as published,
message properties across protocols (request/response), topic aliases both ways, will delay
and the session expiry a DISCONNECT sets."""
import base64
import socket
import struct
import time

import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from conftest import client, close_all, nothing_for, publish, recv_type, run, still_serves, sub
from test_mqtt import (mqtt_client, read_until_closed, session_props, stop, subscribe_mqtt,
                       take)


def subscribe5(c, topic, qos=0, sub_id=None, **options):
    """SUBSCRIBE with 5.0 options; returns the SUBACK's reason codes."""
    import queue
    done = queue.Queue()
    c.on_subscribe = lambda cl, ud, mid, codes, props=None: done.put(codes)
    props = None
    if sub_id is not None:
        props = Properties(PacketTypes.SUBSCRIBE)
        props.SubscriptionIdentifier = sub_id
    c.subscribe(topic, options=SubscribeOptions(qos=qos, **options), properties=props)
    return [getattr(code, "value", code) for code in done.get(timeout=5)]


def drain(c, settle=0.3):
    got = []
    while True:
        try:
            got.append(take(c, timeout=settle))
        except Exception:
            return got


def test_shared_subscriptions_spread_load_across_protocols(agent):
    async def go():
        members = [mqtt_client(agent, f"worker-{i}", paho.MQTTv5) for i in range(3)]
        for m in members:
            assert subscribe5(m, "$share/workers/jobs/#", qos=1) == [1]
        native = await client(agent, "worker-native")
        await sub(native, "$share/workers/jobs/#", qos=1)
        watcher = await client(agent, "watcher")  # a plain subscription sees everything
        await sub(watcher, "jobs/#", qos=0)
        boss = await client(agent, "boss")
        for n in range(80):
            await publish(boss, f"jobs/{n % 4}", n, qos=1)
            await recv_type(boss, "ack")
        seen = {}
        for m in members:
            seen[m._client_id.decode()] = [int(x.payload) for x in drain(m)]
        got = []
        while True:
            try:
                frame = await recv_type(native, "message", timeout=0.5)
            except Exception:
                break
            got.append(frame["payload"])
            await native.send(f'{{"type":"ack","seq":{frame["seq"]}}}')
        seen["worker-native"] = got
        everything = sorted(n for ns in seen.values() for n in ns)
        assert everything == list(range(80)), seen  # each job once, to one member
        for who, ns in seen.items():
            assert len(ns) == 20, (who, len(ns))  # in turn: an even spread
        for n in range(80):
            assert (await recv_type(watcher, "message"))["payload"] == n
        # A member that leaves stops getting work; the others share it.
        stop(members[0])
        time.sleep(0.2)
        for n in range(100, 110):
            await publish(boss, "jobs/x", n, qos=1)
            await recv_type(boss, "ack")
        rest = [int(x.payload) for m in members[1:] for x in drain(m)]
        while True:
            try:
                frame = await recv_type(native, "message", timeout=0.5)
            except Exception:
                break
            rest.append(frame["payload"])
        assert sorted(rest) == list(range(100, 110))
        for m in members[1:]:
            stop(m)
        await close_all()
    run(go())


def test_a_shared_subscription_gets_no_retained_message_and_checks_its_group(agent):
    async def go():
        pub = await client(agent, "keeper")
        await publish(pub, "kept/t", "old", retain=True)
        await pub.send('{"type":"ping"}')
        await recv_type(pub, "pong")  # the retained publish is in
        c = mqtt_client(agent, "sharer", paho.MQTTv5)
        assert subscribe5(c, "kept/t", qos=0) == [0]
        assert take(c).retain  # a plain subscription gets it
        assert subscribe5(c, "$share/g/kept/#", qos=0) == [0]
        assert nothing_for_paho(c, 0.3)
        stop(c)
        # A group with a wildcard, or no filter after it: Topic Filter Invalid (paho will
        # not send these: a raw client does).
        raw, _ = connect5(agent, "sharer-raw")
        for pid, flt in enumerate(["$share/g+/kept/#", "$share/g", "$share//kept"], 1):
            raw.sendall(packet(0x82, struct.pack("!H", pid) + b"\x00" + utf8(flt) + b"\x00"))
            kind, body = read_packet(raw)
            assert (kind, body[-1]) == (0x90, 0x8F), (flt, body)
        raw.close()
        await close_all()
    run(go())


def nothing_for_paho(c, seconds):
    return drain(c, settle=seconds) == []


def test_no_local_on_a_shared_subscription_is_a_protocol_error(agent):
    s, _ = connect5(agent, "nl-shared")
    s.sendall(packet(0x82, struct.pack("!H", 1) + b"\x00" + utf8("$share/g/x") + b"\x04"))
    assert read_until_closed(s).endswith(b"\xe0\x01\x82")  # DISCONNECT, Protocol Error
    run(still_serves(agent))


def test_subscription_identifiers_no_local_and_retain_as_published(agent):
    async def go():
        c = mqtt_client(agent, "options", paho.MQTTv5)
        other = mqtt_client(agent, "other", paho.MQTTv5)
        assert subscribe5(c, "o/#", sub_id=7) == [0]
        assert subscribe5(c, "o/b", sub_id=9) == [0]
        assert subscribe5(c, "nl/#", noLocal=True) == [0]
        assert subscribe5(other, "nl/#") == [0]
        assert subscribe5(c, "rap/#", retainAsPublished=True) == [0]
        assert subscribe5(other, "rap/#") == [0]
        native = await client(agent, "opt-pub")
        await publish(native, "o/b", 1)
        await publish(native, "o/c", 2)
        m1, m2 = take(c), take(c)
        assert sorted(m1.properties.SubscriptionIdentifier) == [7, 9]  # both filters matched
        assert m2.properties.SubscriptionIdentifier == [7]
        # No local: not its own publishes, while others get them.
        c.publish("nl/x", b"mine", qos=1).wait_for_publish(5)
        assert take(other).payload == b"mine"
        assert nothing_for_paho(c, 0.3)
        # Retain as published: the live copy of a retained publish keeps RETAIN for `c`.
        await publish(native, "rap/x", "kept", retain=True)
        assert take(c).retain == 1
        assert take(other).retain == 0
        stop(c)
        stop(other)
        await close_all()
    run(go())


def test_message_properties_cross_protocols_for_request_response(agent):
    async def go():
        responder = await client(agent, "responder")
        await sub(responder, "svc/time/req", qos=0)
        requester = mqtt_client(agent, "requester", paho.MQTTv5)
        assert subscribe5(requester, "svc/time/reply/requester", qos=1) == [1]
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = "svc/time/reply/requester"
        props.CorrelationData = b"\x00\xffreq-1"
        props.ContentType = "application/json"
        props.UserProperty = [("trace", "a"), ("trace", "b"), ("unit", "ms")]
        requester.publish("svc/time/req", b'{"tz":"UTC"}', qos=1,
                          properties=props).wait_for_publish(5)
        req = await recv_type(responder, "message")
        assert req["payload"] == {"tz": "UTC"}
        assert req["content_type"] == "application/json"
        assert req["response_tag"] == "svc/time/reply/requester"
        assert req["correlation_encoding"] == "base64"
        assert base64.b64decode(req["correlation"]) == b"\x00\xffreq-1"
        assert req["user_properties"] == [["trace", "a"], ["trace", "b"], ["unit", "ms"]]
        # The native responder answers on the response tag with the same correlation data.
        await responder.send(
            '{"type":"publish","tag":"%s","payload":{"now":1},"qos":1,'
            '"correlation":"%s","correlation_encoding":"base64","content_type":"application/json",'
            '"user_properties":[["served-by","native"]]}'
            % (req["response_tag"], req["correlation"]))
        await recv_type(responder, "ack")
        reply = take(requester)
        assert reply.topic == "svc/time/reply/requester"
        assert reply.payload == b'{"now":1}'
        assert reply.properties.CorrelationData == b"\x00\xffreq-1"
        assert reply.properties.ContentType == "application/json"
        assert reply.properties.UserProperty == [("served-by", "native")]
        # Bad property fields are refused with an error frame.
        await responder.send('{"type":"publish","tag":"x","payload":1,"user_properties":{"a":1}}')
        assert (await recv_type(responder, "error"))["code"] == "bad_request"
        await responder.send('{"type":"publish","tag":"x","payload":1,"response_tag":"a/#"}')
        assert (await recv_type(responder, "error"))["code"] == "invalid_tag"
        stop(requester)
        await close_all()
    run(go())


# --- a raw MQTT 5 client, for what paho 1.6 cannot show (topic aliases) -----------------------

def varint(n):
    out = b""
    while True:
        b, n = n % 128, n // 128
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def packet(first, body):
    return bytes([first]) + varint(len(body)) + body


def utf8(s):
    s = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(s)) + s


def read_packet(s):
    first = s.recv(1)
    if not first:
        return None, b""
    n, shift = 0, 0
    while True:
        b = s.recv(1)[0]
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    body = b""
    while len(body) < n:
        body += s.recv(n - len(body))
    return first[0], body


def read_varint(b, at):
    n, shift = 0, 0
    while True:
        n |= (b[at] & 0x7F) << shift
        shift += 7
        at += 1
        if not b[at - 1] & 0x80:
            return n, at


def parse_props(b):
    """The properties of a block as {id: [values]} (only the kinds these tests meet)."""
    out, at = {}, 0
    while at < len(b):
        pid = b[at]
        at += 1
        if pid in (0x01, 0x24, 0x25, 0x28, 0x29, 0x2A):
            v, at = b[at], at + 1
        elif pid in (0x13, 0x21, 0x22, 0x23):
            v, at = struct.unpack("!H", b[at:at + 2])[0], at + 2
        elif pid in (0x02, 0x11, 0x27):
            v, at = struct.unpack("!I", b[at:at + 4])[0], at + 4
        elif pid == 0x0B:
            v, at = read_varint(b, at)
        elif pid == 0x26:
            k = struct.unpack("!H", b[at:at + 2])[0]
            key = b[at + 2:at + 2 + k]
            at += 2 + k
            n = struct.unpack("!H", b[at:at + 2])[0]
            v, at = (key, b[at + 2:at + 2 + n]), at + 2 + n
        else:
            n = struct.unpack("!H", b[at:at + 2])[0]
            v, at = b[at + 2:at + 2 + n], at + 2 + n
        out.setdefault(pid, []).append(v)
    return out


def connect5(agent, client_id, props=b"", expiry=None, clean=True, with_present=False):
    """A raw 5.0 connection; returns it and the CONNACK's properties (and, with
    `with_present`, its session present flag)."""
    if expiry is not None:
        props += b"\x11" + struct.pack("!I", expiry)
    body = (utf8("MQTT") + bytes([5, 0x02 if clean else 0x00]) + struct.pack("!H", 30) +
            varint(len(props)) + props)
    body += utf8(client_id)
    s = socket.create_connection(("127.0.0.1", agent.mqtt_port), timeout=5)
    s.sendall(packet(0x10, body))
    kind, ack = read_packet(s)
    assert kind == 0x20 and ack[1] == 0, ack
    n, at = read_varint(ack, 2)
    props = parse_props(ack[at:at + n])
    return (s, props, ack[0]) if with_present else (s, props)


def publish5(topic, payload, props=b""):
    return packet(0x30, utf8(topic) + varint(len(props)) + props + payload)


def parse_publish(first, body):
    n = struct.unpack("!H", body[:2])[0]
    topic, at = body[2:2 + n].decode(), 2 + n
    if first & 0x06:
        at += 2
    plen, at = read_varint(body, at)
    return topic, parse_props(body[at:at + plen]), body[at + plen:]


def test_topic_aliases_both_ways(agent):
    async def go():
        native = await client(agent, "alias-watch")
        await sub(native, "al/#", qos=0)
        s, connack = connect5(agent, "aliaser", props=b"\x22" + struct.pack("!H", 4))
        assert connack[0x22] == [64]  # the agent's Topic Alias Maximum
        # In: set alias 1 with the topic, then use it alone.
        s.sendall(publish5("al/in", b"1", b"\x23\x00\x01"))
        s.sendall(publish5("", b"2", b"\x23\x00\x01"))
        for n in (1, 2):
            m = await recv_type(native, "message")
            assert (m["tag"], m["payload"]) == ("al/in", n)
        # Out: the client allows 4 aliases; the agent sets one per topic, then uses it.
        s.sendall(packet(0x82, struct.pack("!H", 1) + b"\x00" + utf8("out/#") + b"\x00"))
        assert read_packet(s)[0] == 0x90  # SUBACK
        for n in range(7):
            await publish(native, f"out/{n % 5}", n)
        got = [parse_publish(*read_packet(s)) for _ in range(7)]
        first_seen = {}
        for n, (topic, props, payload) in enumerate(got):
            assert payload == str(n).encode()
            alias = props.get(0x23, [None])[0]
            name = f"out/{n % 5}"
            if n < 5:  # a new topic: its name, and an alias while the client allows more
                assert topic == name
                assert alias == (n + 1 if n < 4 else None), (n, props)
                first_seen[name] = alias
            else:  # known: the alias alone
                assert (topic, alias) == ("", first_seen[name])
        # Alias 0 and an alias past the maximum are invalid (0x94); an unknown one is 0x82.
        s.sendall(publish5("", b"x", b"\x23\x00\x07"))
        assert read_until_closed(s).endswith(b"\xe0\x01\x82")
        s, _ = connect5(agent, "aliaser-2")
        s.sendall(publish5("al/x", b"x", b"\x23\x00\x00"))
        assert read_until_closed(s).endswith(b"\xe0\x01\x94")
        s, _ = connect5(agent, "aliaser-3")
        s.sendall(publish5("al/x", b"x", b"\x23\x00\x41"))  # 65 > 64
        assert read_until_closed(s).endswith(b"\xe0\x01\x94")
        await close_all()
        await still_serves(agent)
    run(go())


def test_several_subscription_identifiers_reach_a_raw_client(agent):
    async def go():
        s, _ = connect5(agent, "ids")
        for pid, (flt, sid) in enumerate([("i/#", 1), ("i/+", 300), ("i/x", 268435455)], 1):
            props = b"\x0b" + varint(sid)
            s.sendall(packet(0x82, struct.pack("!H", pid) + varint(len(props)) + props +
                             utf8(flt) + b"\x00"))
            assert read_packet(s)[0] == 0x90
        native = await client(agent, "ids-pub")
        await publish(native, "i/x", 1)
        topic, props, _ = parse_publish(*read_packet(s))
        assert topic == "i/x"
        assert sorted(props[0x0B]) == [1, 300, 268435455]
        s.close()
        await close_all()
    run(go())


def will_props(delay):
    p = Properties(PacketTypes.WILLMESSAGE)
    p.WillDelayInterval = delay
    p.UserProperty = [("why", "gone")]
    return p


def drop_with_a_delayed_will(agent, client_id, delay):
    """A 5.0 client with a 60 s session and a will "offline" on wills/<client_id> delayed by
    `delay` s, whose connection then drops without DISCONNECT."""
    c = paho.Client(client_id=client_id, protocol=paho.MQTTv5)
    c.will_set(f"wills/{client_id}", b"offline", qos=1, properties=will_props(delay))
    c.connect("127.0.0.1", agent.mqtt_port, keepalive=30, clean_start=True,
              properties=session_props(60))
    c.loop_start()
    time.sleep(0.3)
    c.loop_stop()
    c.socket().close()


@pytest.mark.parametrize("comes_back", [False, True])
def test_a_delayed_will_waits_and_is_cancelled_by_a_return(agent, comes_back):
    async def go():
        watch = await will_watcher(agent, "will-watch")
        drop_with_a_delayed_will(agent, "delayed", delay=2)
        start = time.monotonic()
        await nothing_for(watch, 1.0)
        if comes_back:
            back = mqtt_client(agent, "delayed", paho.MQTTv5, clean=False,
                               properties=session_props(60))
            await nothing_for(watch, 3.0)  # the return cancelled it
            stop(back)
        else:
            m = await recv_type(watch, "message", timeout=5)
            took = time.monotonic() - start
            assert m["tag"] == "wills/delayed" and m["payload"] == "offline"
            assert m["user_properties"] == [["why", "gone"]]
            assert took >= 1.0, took
        await close_all()
    run(go())


def killed_and_started_again(agent, agent_factory, data, name):
    import signal
    agent.proc.send_signal(signal.SIGKILL)
    agent.proc.wait()
    return agent_factory(data_dir=data, name=name)


async def will_watcher(agent, name):
    watch = await client(agent, name)
    await sub(watch, "wills/#", qos=1)
    return watch


@pytest.mark.parametrize("comes_back", [False, True])
def test_a_delayed_will_survives_a_crash_of_the_agent(agent_factory, tmp_path, comes_back):
    # The will waits on disk with its persistent session: killed (-9) and started again, the
    # agent sends it when it falls due, unless the client is back first.
    data = tmp_path / "data"
    first = agent_factory(data_dir=data, name="first")
    drop_with_a_delayed_will(first, "crash", delay=4)
    dropped = time.monotonic()
    time.sleep(0.5)  # its record committed
    second = killed_and_started_again(first, agent_factory, data, "second")

    async def go():
        watch = await will_watcher(second, "will-watch")
        if comes_back:
            back = mqtt_client(second, "crash", paho.MQTTv5, clean=False,
                               properties=session_props(60))
            await nothing_for(watch, 5.0)  # the return cancelled it, on disk too
            stop(back)
        else:
            m = await recv_type(watch, "message", timeout=8)
            assert m["tag"] == "wills/crash" and m["payload"] == "offline"
            assert m["user_properties"] == [["why", "gone"]]
            assert time.monotonic() - dropped >= 3.5
        await close_all()
    run(go())
    if comes_back:  # and a third start finds no will left to send
        third = killed_and_started_again(second, agent_factory, data, "third")

        async def after():
            watch = await will_watcher(third, "will-watch-3")
            await nothing_for(watch, 1.5)
            await close_all()
        run(after())


def test_disconnect_may_shorten_the_session_expiry_but_not_start_one(agent):
    # Expiry 60 at CONNECT, 0 at DISCONNECT: the session ends with the connection.
    s, _ = connect5(agent, "shortened", expiry=60)
    s.sendall(packet(0x82, struct.pack("!H", 1) + b"\x00" + utf8("sx/#") + b"\x01"))
    assert read_packet(s)[0] == 0x90
    s.sendall(packet(0xE0, b"\x00\x05\x11\x00\x00\x00\x00"))
    assert read_until_closed(s) == b""
    s, _, present = connect5(agent, "shortened", expiry=60, clean=False, with_present=True)
    assert present == 0  # nothing was kept to resume
    s.close()
    # Kept when the DISCONNECT does not shorten it (the control case).
    s, _ = connect5(agent, "kept-on", expiry=60)
    s.sendall(packet(0xE0, b"\x00\x00"))
    read_until_closed(s)
    s, _, present = connect5(agent, "kept-on", expiry=60, clean=False, with_present=True)
    assert present == 1
    s.close()
    # Expiry 0 at CONNECT, then one at DISCONNECT: a protocol error.
    s, _ = connect5(agent, "no-expiry")
    s.sendall(packet(0xE0, b"\x00\x05\x11\x00\x00\x00\x3c"))
    assert read_until_closed(s).endswith(b"\xe0\x01\x82")
    run(still_serves(agent))


def test_mqtt311_clients_may_share_a_subscription_too(agent):
    async def go():
        members = [mqtt_client(agent, f"v311-worker-{i}") for i in range(2)]
        for m in members:
            subscribe_mqtt(m, "$share/pool/w/#", 1)
        boss = await client(agent, "v311-boss")
        for n in range(10):
            await publish(boss, "w/x", n, qos=1)
            await recv_type(boss, "ack")
        got = [sorted(int(x.payload) for x in drain(m)) for m in members]
        assert sorted(got[0] + got[1]) == list(range(10))
        assert len(got[0]) == len(got[1]) == 5, got
        for m in members:
            stop(m)
        await close_all()
    run(go())


def test_a_worker_that_leaves_passes_its_unacknowledged_jobs_to_its_group(agent):
    async def go():
        slacker = await client(agent, "slacker")  # receives, never acknowledges
        await sub(slacker, "$share/crew/task/#", qos=1)
        worker = mqtt_client(agent, "worker", paho.MQTTv5)  # acknowledges (paho does)
        assert subscribe5(worker, "$share/crew/task/#", qos=1) == [1]
        boss = await client(agent, "crew-boss")
        for n in range(10):
            await publish(boss, "task/x", n, qos=1)
            await recv_type(boss, "ack")
        kept = [(await recv_type(slacker, "message"))["payload"] for _ in range(5)]
        done = [int(m.payload) for m in drain(worker)]
        assert sorted(kept + done) == list(range(10)) and len(done) == 5
        await slacker.close()  # leaves without acknowledging: its five go to the worker
        again = sorted(int(m.payload) for m in drain(worker, settle=1.0))
        assert again == sorted(kept)
        stop(worker)
        await close_all()
    run(go())


def test_the_payload_format_indicator_is_passed_on_unaltered(agent):
    """5.0 section 3.3.2.3.2: the indicator reaches subscribers as its publisher set it, an
    empty payload included; native readers get JSON as a value, other text as a string."""
    async def go():
        native = await client(agent, "pf-native")
        await sub(native, "pf/#", qos=0)
        s, _ = connect5(agent, "pf-sub")
        s.sendall(packet(0x82, struct.pack("!H", 1) + b"\x00" + utf8("pf/#") + b"\x00"))
        assert read_packet(s)[0] == 0x90
        p, _ = connect5(agent, "pf-pub")
        cases = [("pf/empty", b"", b"\x01\x01", 1, ""),
                 ("pf/text", b"21.5 C", b"", None, "21.5 C"),
                 ("pf/json", b'{"a": 1}', b"", None, {"a": 1}),
                 ("pf/declared", b'{"a": 2}', b"\x01\x01", 1, {"a": 2})]
        for topic, payload, props, _, _ in cases:
            p.sendall(publish5(topic, payload, props))
        for topic, payload, _, indicator, native_payload in cases:
            got_topic, got_props, got_payload = parse_publish(*read_packet(s))
            assert (got_topic, got_payload) == (topic, payload)
            assert got_props.get(0x01, [None])[0] == indicator, (topic, got_props)
            m = await recv_type(native, "message")
            assert (m["tag"], m["payload"]) == (topic, native_payload)
        await publish(native, "pf/from-native", {"b": 3})  # JSON is text: indicator 1
        got_topic, got_props, got_payload = parse_publish(*read_packet(s))
        assert got_props[0x01] == [1] and got_payload == b'{"b":3}'
        s.close()
        p.close()
        await close_all()
    run(go())


def test_clean_start_0_resumes_a_stored_session_whatever_its_expiry(agent):
    """5.0 sections 3.1.2.4 and 3.1.2.11: Clean Start 0 resumes the stored session even when
    the new CONNECT has no Session Expiry Interval (Session Present 1, the queued messages and
    the subscriptions are there); the session then ends with that connection."""
    async def go():
        s, _, present = connect5(agent, "resumer", expiry=3600, clean=False, with_present=True)
        assert present == 0
        s.sendall(packet(0x82, struct.pack("!H", 1) + b"\x00" + utf8("rs/#") + b"\x01"))
        assert read_packet(s)[0] == 0x90
        s.sendall(b"\xe0\x00")  # DISCONNECT: the session stays, for an hour
        s.close()
        native = await client(agent, "rs-pub")
        for n in range(3):
            await publish(native, "rs/x", n, qos=1)
            await recv_type(native, "ack")
        s, _, present = connect5(agent, "resumer", clean=False, with_present=True)  # no expiry
        assert present == 1
        got = []
        for _ in range(3):
            first, body = read_packet(s)
            topic, props, payload = parse_publish(first, body)
            assert first & 0x08 == 0  # queued while away: a first delivery, DUP 0 (3.3.1.1)
            got.append(payload)
            pid = struct.unpack("!H", body[2 + len(topic):4 + len(topic)])[0]
            s.sendall(packet(0x40, struct.pack("!H", pid)))
        assert got == [b"0", b"1", b"2"]
        await publish(native, "rs/x", "live")  # still subscribed, with no SUBSCRIBE
        assert parse_publish(*read_packet(s))[2] == b'"live"'
        s.sendall(b"\xe0\x00")
        s.close()
        # It ended with that connection: nothing to resume any more.
        s, _, present = connect5(agent, "resumer", expiry=60, clean=False, with_present=True)
        assert present == 0
        s.close()
        await close_all()
    run(go())


def test_the_last_words_arrive_though_the_client_keeps_sending(agent_factory):
    """A client past the Receive Maximum (more QoS 2 publishes waiting for PUBREL than the
    agent takes) gets DISCONNECT 0x93 and then the end of the stream, not a reset: the agent
    half-closes and reads (and discards) what still comes for a while before it closes, so
    the reason code is not destroyed by input left unread."""
    agent = agent_factory(args=["--limits.max_queued", "5"])
    s, _ = connect5(agent, "greedy")
    flood = b"".join(packet(0x34, utf8("g/x") + struct.pack("!H", pid) + b"\x00" + b"p" * 200)
                     for pid in range(1, 2000))  # QoS 2, never released; 400 KB of them
    s.settimeout(10)
    s.sendall(flood)
    # The client goes on sending for a while, as a busy publisher does: the agent still reads
    # (and discards), so no send fails (a socket closed with input unread resets the
    # connection, and a client that meets the reset sending sees a broken pipe, never the
    # reason).
    for _ in range(5):
        time.sleep(0.1)
        s.sendall(packet(0x30, utf8("g/y") + b"\x00" + b"q" * 1000))
    data = read_until_closed(s, timeout=10)
    assert data.endswith(b"\xe0\x01\x93"), data[-20:]  # DISCONNECT, Receive Maximum exceeded
    run(still_serves(agent))
