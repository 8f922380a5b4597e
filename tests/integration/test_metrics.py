"""GET /metrics: every module's figures from one registry, in the Prometheus text format,
checked by Prometheus' own `promtool check metrics` (Debian's prometheus package), and the
figures themselves following what clients do: connections by listener and protocol, messages
in and out, bytes, drops, authentications, protocol errors, the store's commits."""

import asyncio
import json
import re
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

from conftest import RawWs, auth, connect, publish, recv_type, run, subscribe
from mqtt_async import Client as MqttClient

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def scrape(agent):
    with urllib.request.urlopen(f"http://127.0.0.1:{agent.port}/metrics", timeout=5) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        return r.read().decode()


def samples(text):
    """{'name{labels}': value} of every sample line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, value = line.rsplit(" ", 1)
        out[key] = float(value)
    return out


def promtool_check(text):
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    return p.returncode, (p.stdout + p.stderr).strip()


def test_metrics_pass_promtool_and_follow_what_clients_do(agent_factory):
    a = agent_factory()  # the default store: sqlite
    mqtt_port = a.mqtt_port

    async def go():
        sub = await connect(a)
        await auth(sub, client_id="m-sub", session="persistent")
        await subscribe(sub, "plant/#", qos=1)
        pub = await connect(a)
        await auth(pub, client_id="m-pub")
        for i in range(5):
            await publish(pub, f"plant/{i}", {"v": i}, qos=1, msgid=f"m{i}", id=f"p{i}")
            await recv_type(pub, "ack")
        for _ in range(5):
            m = await recv_type(sub, "message")
            await sub.send(json.dumps({"type": "ack", "seq": m["seq"]}))
        mq = await MqttClient.connect(mqtt_port, "m-mqtt", version=5)
        # A native protocol error: one error frame.
        await pub.send("not json")
        await recv_type(pub, "error")
        text = scrape(a)
        mq.disconnect()
        await mq.close()
        await sub.close()
        await pub.close()
        return text

    text = run(go())
    code, report = promtool_check(text)
    assert code == 0, report
    assert report == "", report  # no lint findings either

    s = samples(text)
    listener = f"127.0.0.1:{a.port}"
    # Two native clients, the scrape's HTTP request, one MQTT client on the TCP listener.
    assert s[f'wsagent_connections{{listener="{listener}",protocol="ws"}}'] == 2
    assert s[f'wsagent_connections{{listener="{listener}",protocol="http"}}'] == 1
    assert s[f'wsagent_connections{{listener="127.0.0.1:{mqtt_port}",protocol="mqtt"}}'] == 1
    assert s["wsagent_messages_published_total"] >= 5
    assert s["wsagent_messages_delivered_total"] >= 5
    assert s["wsagent_received_bytes_total"] > 0 and s["wsagent_sent_bytes_total"] > 0
    assert s['wsagent_authentications_total{result="accepted"}'] == 3
    assert s['wsagent_authentications_total{result="refused"}'] == 0
    assert s['wsagent_protocol_errors_total{protocol="native"}'] == 1
    assert s['wsagent_messages_dropped_total{reason="outbound_queue"}'] == 0
    assert s['wsagent_messages_dropped_total{reason="session_queue"}'] == 0
    assert s["wsagent_sessions"] == 3
    assert s["wsagent_subscriptions"] == 1
    # The persistent subscriber's QoS 1 messages went through the store.
    assert s["wsagent_store_commits_total"] >= 1
    assert s['wsagent_store_commit_seconds_bucket{le="+Inf"}'] == s["wsagent_store_commit_seconds_count"]
    assert s["wsagent_store_commit_seconds_count"] == s["wsagent_store_commits_total"]
    assert s['wsagent_build_info{version="0.1.0"}'] == 1
    # No per-client or per-tag label anywhere.
    assert "m-sub" not in text and "plant/" not in text


def test_auth_failures_are_counted(agent_factory):
    a = agent_factory(config='[[auth.tokens]]\ntoken = "good"\n')

    async def go():
        ws = await connect(a)
        await ws.send(json.dumps({"type": "auth", "token": "bad"}))
        try:
            await asyncio.wait_for(ws.recv(), 5)
        except Exception:
            pass
        with pytest.raises(ConnectionRefusedError):
            await MqttClient.connect(a.mqtt_port, "x", version=4, username="u", password=b"wrong")

    run(go())
    s = samples(scrape(a))
    assert s['wsagent_authentications_total{result="refused"}'] == 2
    assert s['wsagent_authentications_total{result="accepted"}'] == 0


def test_healthz_reads_the_same_registry(agent):
    async def go():
        ws = await connect(agent)
        await auth(ws, client_id="h-1")
        await subscribe(ws, "a/#", "b/#")
        h = agent.health()
        s = samples(scrape(agent))
        await ws.close()
        return h, s

    h, s = run(go())
    assert h["sessions"] == s["wsagent_sessions"] == 1
    assert h["subscriptions"] == s["wsagent_subscriptions"] == 2
    assert h["connections"] >= 2  # the client and the health request


def test_outbound_queue_bytes_follow_a_consumer_that_does_not_read(agent_factory):
    """The queue-depth gauge rises while a subscriber does not read and falls back to 0 once
    its connection is gone (what its queue held leaves the figure with it)."""
    a = agent_factory(args=["--limits.slow_consumer_timeout_ms", "60000"])
    lazy = RawWs(a.port)
    lazy.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    lazy.send_frame(1, json.dumps({"type": "auth", "deviceId": "lazy"}).encode())
    lazy.send_frame(1, json.dumps({"type": "subscribe", "id": "s", "tags": ["flood/#"]}).encode())
    a.wait_subscriptions(1)

    async def flood():
        pub = await connect(a)
        await auth(pub, client_id="flooder")
        blob = "x" * 8192
        for i in range(1500):  # 12 MB: more than the kernel's buffers hold
            await publish(pub, "flood/1", blob)
        await pub.send(json.dumps({"type": "ping", "id": "done"}))
        await recv_type(pub, "pong", timeout=30)
        await pub.close()

    run(flood())
    queued = samples(scrape(a))["wsagent_outbound_queue_bytes"]
    assert queued > 1_000_000, queued
    lazy.close()
    deadline = time.monotonic() + 10
    while samples(scrape(a))["wsagent_outbound_queue_bytes"] != 0:
        assert time.monotonic() < deadline, "the closed connection's bytes stayed counted"
        time.sleep(0.05)
