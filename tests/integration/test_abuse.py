"""Password guessing is bounded: after limits.max_auth_failures failed authentications from
one address, that address is refused for limits.auth_penalty_s whatever it presents (native
4429, MQTT 5 CONNACK 0x9F), audited once and counted; another address, and clients already
connected, are not affected; after the penalty the address may try again."""
import json
import socket
import struct
import time
import urllib.request

import websockets

import asyncio

from conftest import closed_with, connect, publish, recv_type, run, subscribe
from test_mqtt5 import packet, read_packet, utf8, varint

CONFIG = """
[limits]
max_auth_failures = 4
auth_failure_window_s = 60
auth_penalty_s = 2

[[auth.tokens]]
token = "right"
user = "u"
roles = ["all"]

[auth.roles.all]
publish = ["#"]
subscribe = ["#"]
"""


async def attempt(agent, token, source="127.0.0.1"):
    """A native auth from `source`: the auth_response's connection, or the close code."""
    ws = await websockets.connect(f"ws://127.0.0.1:{agent.port}/ws", open_timeout=5,
                                  local_addr=(source, 0))
    await ws.send(json.dumps({"type": "auth", "token": token}))
    try:
        await recv_type(ws, "auth_response")
        return ws
    except websockets.ConnectionClosed:
        return ws.close_code


def mqtt5_connect(agent, password):
    body = (utf8("MQTT") + bytes([5, 0xC2]) + struct.pack("!H", 30) + varint(0) +
            utf8("guesser") + utf8("u") + utf8(password))
    s = socket.create_connection(("127.0.0.1", agent.mqtt_port), timeout=5)
    s.sendall(packet(0x10, body))
    kind, ack = read_packet(s)
    s.close()
    assert kind == 0x20
    return ack[1]


def test_failed_authentications_earn_a_penalty_for_that_address_only(agent_factory):
    a = agent_factory(CONFIG)

    async def go():
        # Connected before the guessing starts: never affected.
        resident = await attempt(a, "right")
        await subscribe(resident, "r/#")
        for n in range(4):
            assert await attempt(a, f"guess-{n}") == 4403
        a.wait_log(r'"audit":"auth_failure","clientId":"","remote":"127.0.0.1",'
                   r'"detail":"4 failed authentications: refused for 2 s')
        # Now even the right token is refused from this address, natively and over MQTT...
        assert await attempt(a, "right") == 4429
        assert mqtt5_connect(a, "right") == 0x9F
        # ...while another address gets in, and the resident client is served.
        other = await attempt(a, "right", source="127.0.0.2")
        assert not isinstance(other, int), other
        await publish(other, "r/1", {"from": "elsewhere"})
        assert (await recv_type(resident, "message"))["payload"] == {"from": "elsewhere"}
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{a.port}/metrics").read().decode()
        assert 'wsagent_authentications_total{result="throttled"} 2' in metrics, metrics
        assert "wsagent_auth_penalties_total 1" in metrics
        # After the penalty the address may try again.
        time.sleep(2.1)
        again = await attempt(a, "right")
        assert not isinstance(again, int), again
        for ws in (resident, other, again):
            await ws.close()

    run(go())


def test_admission_control_tells_refused_clients_when_to_retry(agent_factory):
    """limits.max_auth_rate: past it a native client is closed with 1013 and an MQTT 5 one
    gets CONNACK 0x9F, both saying after how long to come back; then they are let in."""
    import re
    import socket as so
    a = agent_factory(args=["--limits.max_auth_rate", "1"])

    def connect5_raw(cid):
        body = utf8("MQTT") + bytes([5, 0x02]) + (30).to_bytes(2, "big") + b"\x00" + utf8(cid)
        s = so.create_connection(("127.0.0.1", a.mqtt_port), timeout=5)
        s.sendall(packet(0x10, body))
        kind, ack = read_packet(s)
        s.close()
        return kind, ack

    kind, ack = connect5_raw("first")  # the one of this second
    assert kind == 0x20 and ack[1] == 0
    kind, ack = connect5_raw("second")
    assert kind == 0x20 and ack[1] == 0x9F, ack  # Connection rate exceeded
    hint = re.search(rb"retry in (\d+) ms", ack)
    assert hint, ack  # in the Reason String

    async def go():
        ws = await connect(a)
        code, reason = await closed_with(ws)
        told = re.search(r"retry in (\d+) ms", reason)
        assert code == 1013 and told, (code, reason)
        # Never sooner than the next free place (this agent takes one a second).
        assert int(told.group(1)) >= 500 and int(hint.group(1)) >= 500
        await asyncio.sleep(int(told.group(1)) / 1000 + 0.05)
        ws = await connect(a)  # after the hint: in
        await ws.send(json.dumps({"type": "auth", "deviceId": "patient"}))
        assert (await recv_type(ws, "auth_response"))["type"] == "auth_response"
        await ws.close()
    run(go())
    assert a.metric("wsagent_authentications_total", '{result="busy"}') == 2
