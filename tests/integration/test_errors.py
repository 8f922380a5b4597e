"""Bad input: every malformed frame gets its documented answer, and the agent keeps serving
everyone else (each test ends by checking that a well-behaved client still works)."""

import asyncio
import json

import pytest
import websockets

from conftest import (RawWs, auth, closed_with, connect, publish, recv, recv_type, run,
                      still_serves, subscribe)

BAD_FRAMES = [
    ("not json at all", "bad_request", "not JSON"),
    ("[1,2,3]", "bad_request", "must be a JSON object"),
    ('{"tag":"a"}', "bad_request", "missing field 'type'"),
    ('{"type":"publish","id":"p1","payload":1}', "bad_request", "needs a 'tag'"),
    ('{"type":"publish","id":"p2","tag":5,"payload":1}', "bad_request", "must be a string"),
    ('{"type":"publish","tag":"a","payload":{"x":1,}}', "bad_request", "invalid JSON in 'payload'"),
    ('{"type":"subscribe","id":"s1","tags":"a"}', "bad_request", "array of strings"),
    ('{"type":"message","tag":"a","payload":1}', "bad_request", "protocol word"),
    ('{"type":"publish","tag":"a/+/b","payload":1}', "invalid_tag", "may not contain"),
    ('{"type":"subscribe","tags":["a/#/b"]}', "invalid_tag", "'#' only the last level"),
    ('{"type":"publish","tag":"$sys/x","payload":1}', "forbidden", "not allowed to publish"),
    ('{"type":"publish","tag":"a","payload":1,"qos":2}', "bad_request", "QoS 2 publish needs a msgid"),
    ('{"type":"pubrel","seq":3}', "bad_request", "pubrel needs 'msgid'"),
    ('{"type":"ack","id":"a1"}', "bad_request", "ack needs 'seq'"),
]


@pytest.mark.parametrize("frame,code,fragment", BAD_FRAMES)
def test_bad_frame_gets_error_and_connection_stays(agent, frame, code, fragment):
    async def go():
        ws = await connect(agent)
        await ws.send(frame)
        e = await recv_type(ws, "error")
        assert e["code"] == code and fragment in e["message"], e
        try:
            sent = json.loads(frame)
        except ValueError:
            sent = None
        if isinstance(sent, dict) and "id" in sent:
            assert e["id"] == sent["id"]
        # Same connection, still working.
        await subscribe(ws, "after/error")
        await publish(ws, "after/error", "fine")
        assert (await recv_type(ws, "message"))["payload"] == "fine"
        await ws.close()
        await still_serves(agent)
    run(go())


def test_protocol_abuse_closes_4400(agent_factory):
    a = agent_factory("[limits]\nmax_protocol_errors = 5\n")

    async def go():
        ws = await connect(a)
        for _ in range(6):
            await ws.send("garbage")
        assert await closed_with(ws) == (4400, "Too many protocol errors")
        await still_serves(a)
    run(go())


def test_frame_over_the_size_limit_closes_1009(agent_factory):
    a = agent_factory("[limits]\nmax_message_size = 4096\n")

    async def go():
        ws = await connect(a)
        await publish(ws, "t", "x" * 3000)  # under the limit: fine
        await ws.send(json.dumps({"type": "publish", "tag": "t", "payload": "x" * 5000}))
        code, _ = await closed_with(ws)
        assert code == 1009
        await still_serves(a)
    run(go())


def test_size_limit_is_checked_before_the_payload_arrives(agent_factory):
    a = agent_factory("[limits]\nmax_message_size = 4096\n")
    raw = RawWs(a.port)
    assert raw.status == 101
    # Announce 1 GiB and send nothing more: the agent must close at once, not wait or allocate.
    import struct, os
    raw.sock.sendall(struct.pack("!BBQ", 0x81, 0x80 | 127, 1 << 30) + os.urandom(4))
    assert raw.recv_close() == 1009
    raw.close()
    run(still_serves(a))


def test_invalid_utf8_text_closes_1007(agent):
    raw = RawWs(agent.port)
    raw.send_frame(0x1, b'{"type":"ping","id":"\xff"}')
    assert raw.recv_close() == 1007
    raw.close()
    run(still_serves(agent))


def test_unmasked_client_frame_closes_1002(agent):
    raw = RawWs(agent.port)
    raw.send_frame(0x1, b'{"type":"ping"}', mask=False)
    assert raw.recv_close() == 1002
    raw.close()
    run(still_serves(agent))


def test_reserved_bits_and_opcodes_close_1002(agent):
    for kwargs in ({"opcode": 0x1, "rsv": 4}, {"opcode": 0x3}, {"opcode": 0x0}):
        raw = RawWs(agent.port)
        op = kwargs.pop("opcode")
        raw.send_frame(op, b"{}", **kwargs)
        assert raw.recv_close() == 1002, (op, kwargs)
        raw.close()
    run(still_serves(agent))


def test_fragmented_message_and_pings_between_fragments(agent):
    raw = RawWs(agent.port)
    raw.send_frame(0x1, b'{"type":"pi', fin=False)
    raw.send_frame(0x9, b"hb")  # a ping between fragments
    raw.send_frame(0x0, b'ng","id":"frag"}', fin=True)
    op, payload = raw.recv_frame()
    assert (op, payload) == (0xA, b"hb")
    op, payload = raw.recv_frame()
    assert op == 0x1 and json.loads(payload)["id"] == "frag"
    raw.send_frame(0x8, b"\x03\xe8bye")
    assert raw.recv_close() == 1000  # the agent echoes the client's close code
    raw.close()


def test_bad_close_code_closes_1002(agent):
    raw = RawWs(agent.port)
    raw.send_frame(0x8, b"\x03\xed")  # 1005 may not be sent
    assert raw.recv_close() == 1002
    raw.close()


def test_http_errors(agent):
    import urllib.request, urllib.error
    for path, status in (("/nope", 404), ("/ws", 426), ("/echo", 404)):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{agent.port}{path}", timeout=5)
        assert e.value.code == status, path
    raw = RawWs(agent.port, headers="")
    raw.close()
    # A broken upgrade request: bad key.
    import socket
    s = socket.create_connection(("127.0.0.1", agent.port), timeout=5)
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert s.recv(100).startswith(b"HTTP/1.1 400")
    s.close()
    s = socket.create_connection(("127.0.0.1", agent.port), timeout=5)
    s.sendall(b"this is not http\r\n\r\n")
    assert s.recv(100).startswith(b"HTTP/1.1 400")
    s.close()
    run(still_serves(agent))


FORBIDDEN_CONFIG = """
[[auth.tokens]]
token = "dev"
identity = "d1"
roles = ["device"]

[auth.roles.device]
publish = ["devices/%c/#"]
subscribe = ["devices/%c/control"]

[[auth.tokens]]
token = "ok"
user = "ok"
roles = ["all"]

[auth.roles.all]
publish = ["#"]
subscribe = ["#"]
"""


def test_forbidden_publish_and_subscribe(agent_factory):
    a = agent_factory(FORBIDDEN_CONFIG)

    async def go():
        ws = await connect(a, headers={"Authorization": "Bearer dev"})
        await publish(ws, "devices/d2/status", 1, id="p")
        e = await recv_type(ws, "error")
        assert e == {"type": "error", "code": "forbidden",
                     "message": "not allowed to publish to 'devices/d2/status'", "id": "p"}
        await ws.send(json.dumps({"type": "subscribe", "id": "s", "tags": ["devices/+/control"]}))
        e = await recv_type(ws, "error")
        assert e["code"] == "forbidden" and e["id"] == "s"
        # A device message 'to' another device lands on that device's tag: refused too.
        await ws.send(json.dumps({"type": "control", "to": "d2"}))
        assert (await recv_type(ws, "error"))["code"] == "forbidden"
        # What the role allows still works on the same connection.
        await subscribe(ws, "devices/d1/control")
        await publish(ws, "devices/d1/status", 2)
        ok = await connect(a, headers={"Authorization": "Bearer ok"})
        await subscribe(ok, "devices/#")
        await publish(ok, "devices/d1/control", "go")
        assert (await recv_type(ws, "message"))["payload"] == "go"
        await ws.close()
        await ok.close()
    run(go())
    a.wait_log(r'"audit":"forbidden","clientId":"d1".*"detail":"publish devices/d2/status"')
    a.wait_log(r'"audit":"forbidden","clientId":"d1".*"detail":"subscribe devices/\+/control"')


def test_the_close_frame_of_a_broken_stream_arrives_though_the_client_keeps_sending(agent):
    """After a frame error the agent closes (1002) and then reads and discards what the
    client still sends for a while, half-closed, rather than closing with input unread
    (which resets the connection: a client busy sending meets the reset and never reads the
    close frame)."""
    import time
    raw = RawWs(agent.port)
    raw.send_frame(0x1, b'{"type":"ping"}', rsv=4)  # reserved bits: the stream is unusable
    for _ in range(5):
        time.sleep(0.1)
        raw.sock.sendall(b"\x81\x85\0\0\0\0hello" * 200)  # well-formed, and discarded
    assert raw.recv_close() == 1002
    raw.close()
    run(still_serves(agent))
