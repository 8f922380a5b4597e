"""MQTT 3.1.1 and 5.0 over TCP with independent clients (mosquitto_pub/sub, python3-paho-mqtt),
against native clients on the same tags, both ways."""
import asyncio
import base64
import json
import queue
import socket
import struct
import subprocess
import time

import paho.mqtt.client as paho
import pytest

from conftest import (OPEN, client, close_all, closed_with, connect, nothing_for, publish, recv,
                      recv_type, run, still_serves, sub)


def mqtt_client(agent, client_id, version=paho.MQTTv311, clean=True, username=None,
                password=None, will=None, properties=None):
    """A connected paho client; its messages go to `c.inbox`."""
    kw = {"protocol": version}
    if version == paho.MQTTv5:
        c = paho.Client(client_id=client_id, **kw)
    else:
        c = paho.Client(client_id=client_id, clean_session=clean, **kw)
    c.inbox = queue.Queue()
    c.connack = queue.Queue()
    c.on_message = lambda cl, ud, m: c.inbox.put(m)

    def on_connect(cl, ud, flags, rc, props=None):
        c.connack.put((flags, rc))
    c.on_connect = on_connect
    if username is not None:
        c.username_pw_set(username, password)
    if will:
        c.will_set(*will)
    if version == paho.MQTTv5:
        c.connect("127.0.0.1", agent.mqtt_port, keepalive=30, clean_start=clean,
                  properties=properties)
    else:
        c.connect("127.0.0.1", agent.mqtt_port, keepalive=30)
    c.loop_start()
    c.flags, c.rc = c.connack.get(timeout=5)
    return c


def take(c, timeout=5):
    return c.inbox.get(timeout=timeout)


def subscribe_mqtt(c, topic, qos):
    done = queue.Queue()
    c.on_subscribe = lambda *a: done.put(a)
    c.subscribe(topic, qos)
    done.get(timeout=5)


def stop(c):
    c.disconnect()
    c.loop_stop()


@pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])
def test_mosquitto_clients_and_native_clients_share_tags(agent, version):
    port = str(agent.mqtt_port)
    msub = subprocess.Popen(["mosquitto_sub", "-p", port, "-V", version, "-t", "plant/+/temp",
                             "-C", "2", "-W", "10", "-v"], stdout=subprocess.PIPE, text=True)

    async def go():
        ws = await client(agent, "dash")
        await sub(ws, "plant/#", qos=0)
        # MQTT -> native: JSON stays JSON, other text becomes a JSON string.
        for payload in ['{"c": 21.5}', "21.5 C"]:
            r = subprocess.run(["mosquitto_pub", "-p", port, "-V", version, "-t", "plant/l1/hum",
                                "-m", payload], capture_output=True, text=True, timeout=10)
            assert r.returncode == 0, r.stderr
        got = [await recv_type(ws, "message") for _ in range(2)]
        assert [m["payload"] for m in got] == [{"c": 21.5}, "21.5 C"]
        assert got[0]["from"].startswith("auto-") or got[0]["from"]  # assigned id
        # native -> MQTT: its JSON text.
        await asyncio.get_running_loop().run_in_executor(None, agent.wait_subscriptions, 2)
        await publish(ws, "plant/l2/temp", {"c": 19})
        await publish(ws, "plant/l3/temp", "text")
        await close_all()
    run(go())
    out, _ = msub.communicate(timeout=15)
    assert out.splitlines() == ['plant/l2/temp {"c":19}', 'plant/l3/temp "text"']


def test_binary_mqtt_payloads_reach_native_clients_as_base64(agent):
    async def go():
        ws = await client(agent, "dash")
        await sub(ws, "raw/#", qos=0)
        c = mqtt_client(agent, "cam")
        c.publish("raw/frame", bytes([0, 1, 0xFF]), qos=1).wait_for_publish(5)
        m = await recv_type(ws, "message")
        assert m["encoding"] == "base64" and base64.b64decode(m["payload"]) == b"\x00\x01\xff"
        stop(c)
        await close_all()
    run(go())


@pytest.mark.parametrize("version", [paho.MQTTv311, paho.MQTTv5])
def test_qos1_and_qos2_both_ways_with_paho(agent, version):
    async def go():
        ws = await client(agent, "native")
        await sub(ws, "q/from-mqtt", qos=2)
        c = mqtt_client(agent, "paho", version)
        subscribe_mqtt(c, "q/#", 2)
        # paho at QoS 2 -> native at QoS 2 (and paho itself, subscribed too).
        c.publish("q/from-mqtt", "two", qos=2).wait_for_publish(5)
        m = await recv_type(ws, "message")
        assert m["payload"] == "two" and m["qos"] == 2
        await ws.send(json.dumps({"type": "pubrec", "seq": m["seq"]}))
        await recv_type(ws, "pubrel")
        await ws.send(json.dumps({"type": "pubcomp", "seq": m["seq"]}))
        await nothing_for(ws, 0.3)  # once, and the handshake is complete
        echo = take(c)
        assert echo.payload == b"two" and echo.qos == 2
        # native QoS 1 and 2 -> paho at the same QoS.
        pub = await client(agent, "native-pub")
        await publish(pub, "q/from-native", {"n": 1}, qos=1)
        await recv_type(pub, "ack")
        await pub.send(json.dumps({"type": "publish", "tag": "q/from-native", "payload": 2,
                                   "qos": 2, "msgid": "n-2"}))
        await recv_type(pub, "pubrec")
        await pub.send(json.dumps({"type": "pubrel", "msgid": "n-2"}))
        await recv_type(pub, "pubcomp")
        got = sorted([take(c), take(c)], key=lambda x: x.qos)
        assert [(g.payload, g.qos) for g in got] == [(b'{"n":1}', 1), (b"2", 2)]
        time.sleep(0.3)
        assert c.inbox.empty()  # each once
        # A large one over TCP: its payload goes out from the message's shared bytes.
        await publish(pub, "q/from-native", "z" * 5000, qos=1)
        await recv_type(pub, "ack")
        big = take(c)
        assert big.qos == 1 and big.payload == b'"' + b"z" * 5000 + b'"'
        stop(c)
        await close_all()
    run(go())


def test_a_persistent_mqtt_session_gets_what_it_missed(agent):
    async def go():
        c = mqtt_client(agent, "meter-9", clean=False)
        subscribe_mqtt(c, "cmd/meter-9/#", 1)
        stop(c)
        time.sleep(0.2)
        ws = await client(agent, "ctl")
        for i in range(3):
            await publish(ws, "cmd/meter-9/set", i, qos=1)
            await recv_type(ws, "ack")
        back = mqtt_client(agent, "meter-9", clean=False)
        assert back.flags["session present"] == 1
        assert [take(back).payload for _ in range(3)] == [b"0", b"1", b"2"]
        stop(back)
        # A clean session forgets it.
        fresh = mqtt_client(agent, "meter-9", clean=True)
        assert fresh.flags["session present"] == 0
        stop(fresh)
        await close_all()
    run(go())


def test_will_on_a_dropped_connection_not_on_disconnect(agent):
    async def go():
        ws = await client(agent, "watch")
        await sub(ws, "status/#", qos=0)
        gone = mqtt_client(agent, "dev-1", will=("status/dev-1", "offline", 1, False))
        gone._sock.close()  # no DISCONNECT: the connection just drops
        m = await recv_type(ws, "message")
        assert m["tag"] == "status/dev-1" and m["payload"] == "offline"
        gone.loop_stop()
        polite = mqtt_client(agent, "dev-2", will=("status/dev-2", "offline", 1, False))
        stop(polite)
        await nothing_for(ws, 0.5)
        await close_all()
    run(go())


def test_a_native_client_and_an_mqtt_client_take_over_each_other(agent):
    async def go():
        ws = await client(agent, "same-id")
        c = mqtt_client(agent, "same-id")
        code, _ = await closed_with(ws)
        assert code == 4409
        OPEN.remove(ws)
        lost = queue.Queue()
        c.on_disconnect = lambda *a: lost.put(a)
        await client(agent, "same-id")  # takes the id back
        lost.get(timeout=5)  # the MQTT connection was closed
        c.loop_stop()
        await close_all()
    run(go())


def test_tokens_authenticate_mqtt_clients(agent_factory):
    cfg = """
[[auth.tokens]]
token = "s3cret"
identity = "sensor-1"
roles = ["dev"]

[auth.roles.dev]
publish = ["sensors/%c/#"]
subscribe = ["sensors/%c/#"]
"""
    agent = agent_factory(config=cfg)
    for version, refused in [(paho.MQTTv311, 4), (paho.MQTTv5, 134)]:
        c = mqtt_client(agent, "sensor-1", version, username="x", password="wrong")
        assert c.rc == refused, c.rc
        c.loop_stop()
    ok = mqtt_client(agent, "", paho.MQTTv311, username="sensor-1", password="s3cret")
    assert ok.rc == 0
    subscribe_mqtt(ok, "sensors/sensor-1/#", 1)
    ok.publish("sensors/sensor-1/t", "1", qos=1).wait_for_publish(5)
    assert take(ok).payload == b"1"
    stop(ok)


def raw_mqtt(agent):
    s = socket.create_connection(("127.0.0.1", agent.mqtt_port), timeout=5)
    return s


def read_until_closed(s, timeout=5):
    s.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return data
            data += chunk
    except (ConnectionResetError, socket.timeout):
        return data


def connect_packet(client_id, keep_alive=30, level=4):
    body = struct.pack("!H", 4) + b"MQTT" + bytes([level, 0x02]) + struct.pack("!H", keep_alive)
    if level == 5:
        body += b"\x00"
    body += struct.pack("!H", len(client_id)) + client_id.encode()
    return bytes([0x10, len(body)]) + body


def test_protocol_violations_close_only_the_offender(agent):
    # A packet before CONNECT, a malformed CONNECT, a second CONNECT: each closes that
    # connection (5.0 after a DISCONNECT naming the reason); the agent serves on.
    s = raw_mqtt(agent)
    s.sendall(b"\x30\x05\x00\x01ax")  # PUBLISH first
    assert read_until_closed(s) == b""
    s = raw_mqtt(agent)
    s.sendall(b"\x10\x03\x00\x01X")  # truncated CONNECT
    assert read_until_closed(s) == b""
    s = raw_mqtt(agent)
    s.sendall(connect_packet("v5-twice", level=5))
    s.sendall(connect_packet("v5-twice", level=5))
    data = read_until_closed(s)
    assert data.startswith(b"\x20")  # CONNACK
    assert data.endswith(b"\xe0\x01\x82")  # DISCONNECT, Protocol Error
    s = raw_mqtt(agent)
    s.sendall(bytes([0x10, 0x0A]) + struct.pack("!H", 4) + b"MQTT" + bytes([3, 2, 0, 30]))
    assert read_until_closed(s) == b"\x20\x02\x00\x01"  # unacceptable protocol version
    s = raw_mqtt(agent)
    s.sendall(connect_packet("v5-long-zero", level=5))
    s.sendall(b"\xc0\x80\x00")  # PINGREQ with its length 0 in two bytes
    data = read_until_closed(s)
    assert data.startswith(b"\x20")  # CONNACK
    assert data.endswith(b"\xe0\x01\x81")  # DISCONNECT, Malformed Packet
    run(still_serves(agent))


def test_a_silent_client_is_closed_after_one_and_a_half_keep_alives(agent):
    s = raw_mqtt(agent)
    s.sendall(connect_packet("sleepy", keep_alive=1))
    start = time.monotonic()
    data = read_until_closed(s, timeout=5)
    took = time.monotonic() - start
    assert data == b"\x20\x02\x00\x00"  # CONNACK, then nothing but the close
    assert 1.2 < took < 3.5, took


def test_nothing_larger_than_a_v5_clients_maximum_packet_size_is_sent_to_it(agent):
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    props = Properties(PacketTypes.CONNECT)
    props.MaximumPacketSize = 200

    async def go():
        c = mqtt_client(agent, "small", paho.MQTTv5, properties=props)
        subscribe_mqtt(c, "big/#", 1)
        ws = await client(agent, "pub")
        for qos in (0, 1):
            await publish(ws, "big/x", "y" * 500, qos=qos)
            await publish(ws, "big/x", f"small-{qos}", qos=qos)
        got = [take(c).payload for _ in range(2)]
        assert got == [b'"small-0"', b'"small-1"']
        time.sleep(0.3)
        assert c.inbox.empty()
        stop(c)
        await close_all()
    run(go())


@pytest.mark.parametrize("version", [paho.MQTTv311, paho.MQTTv5])
def test_mqtt_over_websocket_on_the_same_port(agent, version):
    async def go():
        ws = await client(agent, "native")
        await sub(ws, "w/#", qos=1)
        c = paho.Client(client_id="paho-ws", protocol=version, transport="websockets")
        c.ws_set_options(path="/mqtt")
        c.inbox = queue.Queue()
        c.on_message = lambda cl, ud, m: c.inbox.put(m)
        connected = queue.Queue()
        c.on_connect = lambda *a: connected.put(a)
        c.connect("127.0.0.1", agent.port, keepalive=30)
        c.loop_start()
        connected.get(timeout=5)
        subscribe_mqtt(c, "w/#", 1)
        c.publish("w/from-ws", '{"v": 1}', qos=1).wait_for_publish(5)
        m = await recv_type(ws, "message")
        assert m["payload"] == {"v": 1} and m["qos"] == 1
        await ws.send(json.dumps({"type": "ack", "seq": m["seq"]}))
        got = take(c)  # MQTT to MQTT: the payload's bytes unaltered (native readers got JSON)
        assert got.topic == "w/from-ws" and got.payload == b'{"v": 1}'
        await publish(ws, "w/from-native", "hello", qos=1)
        await recv_type(ws, "ack")
        assert take(c).payload == b'"hello"'
        # Larger QoS 1 deliveries: the header is the connection's, the payload written from
        # the message's shared bytes (past the 1 KiB copy limit, and past a 64 KiB frame).
        for size in (3000, 70000):
            await publish(ws, "w/big", "x" * size, qos=1)
            await recv_type(ws, "ack")
            big = take(c)
            assert big.qos == 1 and big.payload == b'"' + b"x" * size + b'"'
        stop(c)
        await close_all()
    run(go())


def test_websocket_frames_may_split_or_join_mqtt_packets(agent):
    async def go():
        ws = await connect(agent, path="/mqtt", subprotocols=["mqtt"])
        OPEN.append(ws)
        assert ws.subprotocol == "mqtt"
        packet = connect_packet("framer")
        await ws.send(packet[:5])  # a CONNECT in two frames
        await ws.send(packet[5:])
        assert await recv(ws) == b"\x20\x02\x00\x00"
        subscribe = b"\x82\x08\x00\x01\x00\x03a/b\x01"
        await ws.send(subscribe + b"\xc0\x00")  # SUBSCRIBE and PINGREQ in one frame
        assert await recv(ws) == b"\x90\x03\x00\x01\x01"  # SUBACK, QoS 1 granted
        assert await recv(ws) == b"\xd0\x00"  # PINGRESP
        # MQTT over WebSocket is binary: a text frame is a violation that ends the connection.
        await ws.send("hello")
        code, _ = await closed_with(ws)
        assert code == 4400
        OPEN.remove(ws)
        await close_all()
    run(go())


def test_a_persistent_mqtt_session_survives_an_agent_restart(agent_factory, tmp_path):
    import signal
    data = tmp_path / "data"
    first = agent_factory(data_dir=data, name="first")

    async def before():
        c = mqtt_client(first, "meter-restart", paho.MQTTv5, clean=False,
                        properties=session_props(3600))
        subscribe_mqtt(c, "cmd/#", 1)
        stop(c)
        time.sleep(0.2)
        ws = await client(first, "ctl")
        for i in range(3):
            await publish(ws, "cmd/set", i, qos=1)
            await recv_type(ws, "ack")  # on disk: the session is persistent
        first.proc.send_signal(signal.SIGKILL)
        await close_all()
    run(before())
    first.proc.wait()
    second = agent_factory(data_dir=data, name="second")
    back = mqtt_client(second, "meter-restart", paho.MQTTv5, clean=False,
                       properties=session_props(3600))
    assert back.flags["session present"] == 1
    assert [take(back).payload for _ in range(3)] == [b"0", b"1", b"2"]
    stop(back)


def session_props(expiry):
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    p = Properties(PacketTypes.CONNECT)
    p.SessionExpiryInterval = expiry
    return p


def test_over_websocket_the_will_goes_unless_disconnect_and_keep_alive_holds(agent):
    async def go():
        watch = await client(agent, "watch")
        await sub(watch, "status/#", qos=0)
        # CONNECT with a will (3.1.1), then the WebSocket closes cleanly without DISCONNECT:
        # MQTT's goodbye is the DISCONNECT packet, so the will goes.
        will_topic, will_msg = b"status/ws-1", b"gone"
        body = (struct.pack("!H", 4) + b"MQTT" + bytes([4, 0x02 | 0x04 | 0x08]) +
                struct.pack("!H", 1) + struct.pack("!H", 4) + b"ws-1" +
                struct.pack("!H", len(will_topic)) + will_topic +
                struct.pack("!H", len(will_msg)) + will_msg)
        w = await connect(agent, path="/mqtt", subprotocols=["mqtt"])
        await w.send(bytes([0x10, len(body)]) + body)
        assert await recv(w) == b"\x20\x02\x00\x00"
        await w.close()
        m = await recv_type(watch, "message")
        assert (m["tag"], m["payload"]) == ("status/ws-1", "gone")
        # Keep alive 1 s, then silence: closed (WebSocket close 4001) after about 1.5 s.
        k = await connect(agent, path="/mqtt", subprotocols=["mqtt"])
        OPEN.append(k)
        await k.send(connect_packet("ws-sleepy", keep_alive=1))
        assert await recv(k) == b"\x20\x02\x00\x00"
        start = time.monotonic()
        code, _ = await closed_with(k, timeout=5)
        assert code == 4001 and 1.2 < time.monotonic() - start < 3.5
        OPEN.remove(k)
        await close_all()
    run(go())


def test_the_mqtt_websocket_subprotocol_is_negotiated(agent):
    import websockets

    async def go():
        old = await connect(agent, path="/mqtt", subprotocols=["mqttv3.1"])
        assert old.subprotocol == "mqttv3.1"  # older clients' name
        await old.close()
        both = await connect(agent, path="/mqtt", subprotocols=["mqttv3.1", "mqtt"])
        assert both.subprotocol == "mqtt"  # preferred
        await both.close()
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as refused:
            await connect(agent, path="/mqtt", subprotocols=["stomp"])
        assert refused.value.status_code == 400
    run(go())


@pytest.mark.parametrize("asked", [0, 120])
def test_mqtt_max_keepalive_tells_a_v5_client_and_refuses_a_v311_one(agent_factory, asked):
    """mqtt.max_keepalive, as Mosquitto's max_keepalive: a 5.0 client asking more (or 0) gets
    the ceiling as Server Keep Alive and is held to it; 3.1.1 cannot be told: CONNACK 2."""
    agent = agent_factory(args=["--mqtt.max_keepalive", "1"])
    from test_mqtt5 import parse_props, read_varint
    s = raw_mqtt(agent)
    s.sendall(connect_packet("v5-keeper", keep_alive=asked, level=5))
    start = time.monotonic()
    data = read_until_closed(s, timeout=5)
    took = time.monotonic() - start
    assert data[0] == 0x20 and data[3] == 0x00, data  # CONNACK, success
    n, at = read_varint(data, 4)
    assert parse_props(data[at:at + n])[0x13] == [1]  # Server Keep Alive: the ceiling
    assert data.endswith(b"\xe0\x01\x8d")  # held to it: DISCONNECT Keep Alive timeout
    assert 1.2 < took < 3.5, took
    s = raw_mqtt(agent)
    s.sendall(connect_packet("v311-keeper", keep_alive=asked))
    assert read_until_closed(s) == b"\x20\x02\x00\x02"  # identifier rejected, then closed
    s = raw_mqtt(agent)
    s.sendall(connect_packet("v311-within", keep_alive=1))
    assert read_until_closed(s, timeout=5) == b"\x20\x02\x00\x00"  # within it: served
    run(still_serves(agent))
