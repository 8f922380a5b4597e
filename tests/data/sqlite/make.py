#!/usr/bin/python3
"""Writes a store file the way a given wsagent binary writes it, for the golden files of
tests/data/sqlite (opened by tests/unit/store_test.cpp, "GoldenFiles"):

    make.py BINARY OUT.db [--will]

The agent (on free loopback ports, a fresh data directory) is given:
  - a persistent session `keeper` (expiry 86400 s) subscribed to `golden/#` at QoS 1, gone
    offline, with two QoS 1 messages queued for it (`golden/q1`, `golden/q2`);
  - a retained message on `golden/retained` (payload {"v":1});
  - three messages in the history of `hist/a` (history.tags = ["hist/#"]);
  - a persistent publisher `sender` whose QoS 2 publish (msgid "in-flight-1") is received and
    not yet released (its incoming record);
  - with --will (schema 3 and later): an MQTT 5 client `willer` (session expiry 3600 s) whose
    will on `golden/will` waits 3600 s, its connection dropped.
then stopped with SIGTERM, and its wsagent.db copied to OUT.db.

Made by: schema-1.db with commit f9e7792 (before message properties), schema-2.db with
commit 79dcc60 (before delayed wills), schema-3.db with the commit that added this script.
"""

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

import websockets


def start(binary, data_dir):
    cmd = [binary, "serve", "--listen", "127.0.0.1:0", "--mqtt.listen", "127.0.0.1:0",
           "--store.data_dir", data_dir, "--history.tags", "hist/#"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ws_port = mqtt_port = None
    deadline = time.monotonic() + 10
    while (ws_port is None or mqtt_port is None) and time.monotonic() < deadline:
        line = proc.stdout.readline()
        m = re.search(r"listening on ws://[^ ]+:(\d+)/ws", line)
        if m:
            ws_port = int(m.group(1))
        m = re.search(r"MQTT .*listening on mqtt://[^ ]+:(\d+)", line)
        if m:
            mqtt_port = int(m.group(1))
    if ws_port is None or mqtt_port is None:
        raise SystemExit("the agent did not start")
    return proc, ws_port, mqtt_port


async def recv_type(ws, kind):
    while True:
        m = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if m.get("type") == kind:
            return m
        if m.get("type") == "error":
            raise SystemExit(f"error: {m}")


async def fill(port):
    url = f"ws://127.0.0.1:{port}/ws"
    keeper = await websockets.connect(url)
    await keeper.send(json.dumps({"type": "auth", "deviceId": "keeper", "session": "persistent",
                                  "expiry": 86400}))
    await recv_type(keeper, "auth_response")
    await keeper.send(json.dumps({"type": "subscribe", "id": "s", "tags": ["golden/#"],
                                  "qos": 1}))
    await recv_type(keeper, "subscribed")
    await keeper.close()

    pub = await websockets.connect(url)
    await pub.send(json.dumps({"type": "auth", "deviceId": "sender", "session": "persistent"}))
    await recv_type(pub, "auth_response")
    await pub.send(json.dumps({"type": "publish", "tag": "golden/retained", "payload": {"v": 1},
                               "retain": True, "qos": 1, "msgid": "r1", "id": "p0"}))
    await recv_type(pub, "ack")
    for i in (1, 2):
        await pub.send(json.dumps({"type": "publish", "tag": f"golden/q{i}",
                                   "payload": {"n": i}, "qos": 1, "msgid": f"q{i}",
                                   "id": f"p{i}"}))
        await recv_type(pub, "ack")
    for i in (1, 2, 3):
        await pub.send(json.dumps({"type": "publish", "tag": "hist/a", "payload": {"h": i},
                                   "qos": 1, "msgid": f"h{i}", "id": f"h{i}"}))
        await recv_type(pub, "ack")
    await pub.send(json.dumps({"type": "publish", "tag": "other/x", "payload": {"x": 1},
                               "qos": 2, "msgid": "in-flight-1", "id": "p9"}))
    await recv_type(pub, "pubrec")  # and no pubrel: the incoming record stays
    await pub.close()


def utf8(s):
    s = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(s)) + s


def varint(n):
    out = b""
    while True:
        b, n = n % 128, n // 128
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def will_client(port):
    """An MQTT 5 CONNECT with a delayed will, then the connection dropped."""
    props = b"\x11" + struct.pack("!I", 3600)  # Session Expiry Interval
    will_props = b"\x18" + struct.pack("!I", 3600)  # Will Delay Interval
    flags = 0x04 | 0x08  # will, will QoS 1
    body = utf8("MQTT") + bytes([5, flags]) + struct.pack("!H", 60)
    body += varint(len(props)) + props + utf8("willer")
    body += varint(len(will_props)) + will_props + utf8("golden/will") + utf8("gone")
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"\x10" + varint(len(body)) + body)
    ack = s.recv(64)
    assert ack[0] == 0x20 and ack[3] == 0, ack
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()  # reset: no DISCONNECT, so the will waits for its delay


def main():
    binary, out = sys.argv[1], sys.argv[2]
    data = tempfile.mkdtemp()
    proc, ws_port, mqtt_port = start(binary, data)
    try:
        asyncio.run(fill(ws_port))
        if "--will" in sys.argv:
            will_client(mqtt_port)
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    shutil.copy(os.path.join(data, "wsagent.db"), out)
    shutil.rmtree(data)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
