"""deploy/ tested for real: Debian's nginx and HAProxy in front of three agents sharing one
real redis-server, with the shipped configurations (and the IoT lesson's nginx example as
written there); the systemd unit verified by systemd-analyze and its command line run.

Which node a connection landed on is read from the nodes' own connection counts."""

import asyncio
import json
import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import time
import urllib.request

import paho.mqtt.client as paho
import pytest

from conftest import (BIN, LISTEN_RE, auth, close_all, closed_with, connect, publish, recv_type, run,
                      subscribe)
from proxies import HAProxy, Nginx, deploy_file, replace_servers
from test_cluster import nodes, redis  # noqa: F401 (fixtures)
from test_lesson import lines_of

LESSON = os.path.join(os.path.dirname(__file__), "..", "js", "lesson_device.mjs")

# The lesson's nginx configuration, as written there; only the three example servers become
# the test's agents (and `listen 80` a free port, in Nginx).
LESSON_NGINX = """\
upstream websocket_servers {
    # Use consistent hashing based on device ID
    hash $http_device_id consistent;

    server ws1.example.com:8080;
    server ws2.example.com:8080;
    server ws3.example.com:8080;
}

server {
    listen 80;
    server_name iot.example.com;

    location /ws {
        proxy_pass http://websocket_servers;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
        proxy_set_header Host $host;
        proxy_set_header Device-ID $http_device_id;

        # Timeout settings
        proxy_read_timeout 86400s;
        proxy_send_timeout 86400s;
    }
}
"""


class Front:
    """A load balancer's port, in the shape conftest's connect() takes."""

    def __init__(self, port):
        self.port = port


def clients_of(agent):
    """The agent's client connections (every protocol but plain HTTP: our own request for
    /metrics, and HAProxy's health checks, are HTTP)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{agent.port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(int(float(line.split()[-1])) for line in text.splitlines()
               if line.startswith("wsagent_connections{") and 'protocol="http"' not in line)


def counts(agents):
    return [clients_of(a) for a in agents]


def settle(agents, total, timeout=5.0):
    """Waits until the nodes hold `total` connections between them; returns the counts."""
    deadline = time.monotonic() + timeout
    while True:
        c = counts(agents)
        if sum(c) == total:
            return c
        assert time.monotonic() < deadline, f"connections {c}, expected {total} in all"
        time.sleep(0.02)


def landed(agents, before):
    """The index of the one node that gained a connection since `before`."""
    after = settle(agents, sum(before) + 1)
    gained = [i for i, (x, y) in enumerate(zip(before, after)) if y == x + 1]
    assert len(gained) == 1, (before, after)
    return gained[0]


async def ws_via(front, agents, device, header=True, path="/ws"):
    """Connects `device` through `front` (Device-ID header, or ?deviceId= as a browser does),
    authenticates it and returns (ws, index of its node)."""
    before = settle(agents, sum(counts(agents)))
    if header:
        ws = await connect(front, path=path, headers={"Device-ID": device})
    else:
        ws = await connect(front, path=path, query=f"deviceId={device}")
    r = await auth(ws, client_id=device)
    assert r["status"] == "success", r
    return ws, landed(agents, before)


async def placement(front, agents, devices, header=True):
    """Each device's node, from two connections one after the other (they must agree)."""
    where = {}
    for d in devices:
        for _ in range(2):
            ws, i = await ws_via(front, agents, d, header)
            assert where.setdefault(d, i) == i, f"{d} moved from node {where[d]} to {i}"
            total = sum(counts(agents))
            await ws.close()
            settle(agents, total - 1)
    return where


def agent_servers(agents, fmt):
    return [fmt.format(i=i, port=a.port, mqtt=a.mqtt_port) for i, a in enumerate(agents)]


@pytest.fixture
def three(nodes):  # noqa: F811
    return nodes(3)


def test_the_lessons_nginx_configuration_as_written(tmp_path, three):
    """Devices that send a Device-ID stay on one node each and spread over the nodes; the
    lesson's device (which sends no header) reports through nginx to a dashboard on another
    node and takes its control command across nodes."""
    site = replace_servers(LESSON_NGINX, agent_servers(three, "    server 127.0.0.1:{port};"),
                           r"\s*server ws\d\.example\.com:8080;")
    lb = Nginx(tmp_path, site)
    front = Front(lb.port)
    try:
        async def go():
            where = await placement(front, three, [f"dev-{i}" for i in range(12)])
            assert len(set(where.values())) >= 2, where  # consistent hashing spreads them
            # The lesson's device sends no Device-ID: it hashes as "" to one node.
            probe, device_node = await ws_via(front, three, "probe", header=False)
            await probe.close()
            dash_id = next(d for d, i in where.items() if i != device_node)
            dash, _ = await ws_via(front, three, dash_id)
            await subscribe(dash, "devices/+/status")
            three[device_node].wait_metric("wsagent_cluster_route_filters", lambda v: v == 1)
            device = await asyncio.create_subprocess_exec(
                "node", LESSON, "device", f"ws://127.0.0.1:{lb.port}/ws",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            reports = [await recv_type(dash, "status", timeout=10) for _ in range(3)]
            for r in reports:
                assert r["deviceId"] == "sensor-001" and r["from"] == "sensor-001"
            await dash.send(json.dumps({"type": "control", "to": "sensor-001",
                                        "command": "reboot"}))
            got = await lines_of(device)
            assert got[0]["auth"]["status"] == "success"
            assert got[-1]["control"]["command"] == "reboot"
            assert got[-1]["control"]["from"] == dash_id
            await dash.close()
        run(go())
    finally:
        lb.stop()


def nginx_deploy(tmp_path, agents):
    site = replace_servers(deploy_file("nginx", "wsagent.conf"),
                           agent_servers(agents, "    server 127.0.0.1:{port} max_fails=1 "
                                                 "fail_timeout=5s;"),
                           r"\s*server 10\.0\.0\.\d+:8080")
    return Nginx(tmp_path, site)


def test_the_shipped_nginx_configuration(tmp_path, three):
    """deploy/nginx/wsagent.conf: browsers hashed by ?deviceId=, devices by their header;
    MQTT over WebSocket through /mqtt; a node killed, its devices reconnect through nginx
    to the others and are served."""
    lb = nginx_deploy(tmp_path, three)
    front = Front(lb.port)
    try:
        async def go():
            by_query = await placement(front, three, [f"tab-{i}" for i in range(12)],
                                       header=False)
            assert len(set(by_query.values())) >= 2, by_query
            by_header = await placement(front, three, [f"dev-{i}" for i in range(12)])
            assert len(set(by_header.values())) >= 2, by_header

            # MQTT over WebSocket through /mqtt, a native publisher on another node.
            inbox = queue.Queue()
            before = settle(three, 0)
            m = paho.Client(client_id="mqtt-ws", protocol=paho.MQTTv311, transport="websockets")
            m.ws_set_options(path="/mqtt?clientId=mqtt-ws")
            m.on_message = lambda cl, ud, msg: inbox.put((msg.topic, msg.payload))
            subscribed = queue.Queue()
            m.on_subscribe = lambda *a: subscribed.put(True)
            m.connect("127.0.0.1", lb.port)
            m.loop_start()
            try:
                mqtt_node = landed(three, before)
                m.subscribe("plant/#", qos=1)
                subscribed.get(timeout=5)
                pub_id = next(d for d, i in by_header.items() if i != mqtt_node)
                pub, pub_node = await ws_via(front, three, pub_id)
                assert pub_node != mqtt_node
                three[pub_node].wait_metric("wsagent_cluster_route_filters", lambda v: v == 1)
                await publish(pub, "plant/l1/temp", 21.5, qos=1, msgid="m1")
                assert (await recv_type(pub, "ack"))["msgid"] == "m1"
                topic, payload = inbox.get(timeout=5)
                assert topic == "plant/l1/temp" and json.loads(payload) == 21.5

                # The publisher's node dies: it reconnects through nginx, lands on another
                # node (nginx passes over the refused one) and publishes again.
                three[pub_node].proc.kill()
                three[pub_node].proc.wait()
                await closed_with(pub)  # nginx passes the node's end on
                live = [a for i, a in enumerate(three) if i != pub_node]
                again = await connect(front, headers={"Device-ID": pub_id})
                assert (await auth(again, client_id=pub_id))["status"] == "success"
                await publish(again, "plant/l1/temp", 22.5, qos=1, msgid="m2")
                assert (await recv_type(again, "ack"))["msgid"] == "m2"
                topic, payload = inbox.get(timeout=5)
                assert json.loads(payload) == 22.5
                assert sum(clients_of(a) for a in live) == 2  # mqtt-ws and it
                await again.close()
            finally:
                m.loop_stop()
                m.disconnect()
        run(go())
    finally:
        lb.stop()


def haproxy_deploy(tmp_path, agents):
    cfg = deploy_file("haproxy", "haproxy.cfg")
    cfg = replace_servers(cfg, agent_servers(agents, "    server n{i} 127.0.0.1:{mqtt} "
                                                     "port {port}"),
                          r"\s*server n\d 10\.0\.0\.\d+:1883")
    cfg = replace_servers(cfg, agent_servers(agents, "    server n{i} 127.0.0.1:{port}"),
                          r"\s*server n\d 10\.0\.0\.\d+:8080")
    return HAProxy(tmp_path, cfg)


def mqtt_via(port, agents, client_id, inbox=None):
    """An MQTT 5 client through HAProxy; returns (client, index of its node)."""
    before = settle(agents, sum(counts(agents)))
    c = paho.Client(client_id=client_id, protocol=paho.MQTTv5)
    connected = queue.Queue()
    c.on_connect = lambda cl, ud, flags, rc, props=None: connected.put(rc)
    if inbox is not None:
        c.on_message = lambda cl, ud, msg: inbox.put((msg.topic, msg.payload))
    c.connect("127.0.0.1", port)
    c.loop_start()
    rc = connected.get(timeout=5)
    assert rc == 0, rc
    return c, landed(agents, before)


def mqtt_subscriber(port, agents, client_id, topic):
    """An MQTT 5 client through HAProxy subscribed to `topic` at QoS 1; returns (client,
    index of its node, queue of (topic, payload))."""
    inbox = queue.Queue()
    c, node = mqtt_via(port, agents, client_id, inbox)
    subscribed = queue.Queue()
    c.on_subscribe = lambda *a: subscribed.put(True)
    c.subscribe(topic, qos=1)
    subscribed.get(timeout=5)
    return c, node, inbox


def bye(c):
    c.disconnect()
    c.loop_stop()


def test_haproxy_balances_mqtt_by_client_id(tmp_path, three):
    """deploy/haproxy/haproxy.cfg: an MQTT client lands on the node its client id hashes to,
    every time; clients spread over the nodes and reach each other across them; what is not
    MQTT never reaches a node; WebSocket clients are hashed by their device id."""
    lb = haproxy_deploy(tmp_path, three)
    mqtt_port, ws_port = lb.ports
    try:
        where = {}
        for i in range(12):
            cid = f"meter-{i}"
            for _ in range(2):
                c, node = mqtt_via(mqtt_port, three, cid)
                assert where.setdefault(cid, node) == node, f"{cid} moved:\n{lb.log()}"
                total = sum(counts(three))
                bye(c)
                settle(three, total - 1)
        assert len(set(where.values())) >= 2, where

        sub, sub_node, inbox = mqtt_subscriber(mqtt_port, three, "control-room", "meters/#")
        pub_id = next(c for c, n in where.items() if n != sub_node)
        pub, pub_node = mqtt_via(mqtt_port, three, pub_id)
        three[pub_node].wait_metric("wsagent_cluster_route_filters", lambda v: v == 1)
        pub.publish("meters/m1/kwh", b"42", qos=1).wait_for_publish(5)
        assert inbox.get(timeout=5) == ("meters/m1/kwh", b"42")

        # Not MQTT: HAProxy refuses it; no node sees a connection.
        before = counts(three)
        with socket.create_connection(("127.0.0.1", mqtt_port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(100) == b""
        assert counts(three) == before
        bye(pub)
        bye(sub)

        async def websockets_by_device_id():
            settle(three, 0)
            front = Front(ws_port)
            by_header = await placement(front, three, [f"dev-{i}" for i in range(12)])
            assert len(set(by_header.values())) >= 2, by_header
            by_query = await placement(front, three, [f"tab-{i}" for i in range(12)],
                                       header=False)
            assert len(set(by_query.values())) >= 2, by_query
            await close_all()
        run(websockets_by_device_id())
    finally:
        lb.stop()


def test_haproxy_moves_clients_of_a_dead_node_to_the_others(tmp_path, three):
    """A node killed: HAProxy's /readyz checks take it out, and its MQTT clients reconnect
    through HAProxy to the others, where the survivors' subscriptions reach them."""
    lb = haproxy_deploy(tmp_path, three)
    mqtt_port = lb.ports[0]
    try:
        sub, sub_node, inbox = mqtt_subscriber(mqtt_port, three, "watcher", "meters/#")
        victim = next(i for i in range(3) if i != sub_node)
        cid = None
        for i in range(50):  # a client id that hashes to the node to be killed
            c, node = mqtt_via(mqtt_port, three, f"meter-{i}")
            total = sum(counts(three))
            bye(c)
            settle(three, total - 1)
            if node == victim:
                cid = f"meter-{i}"
                break
        assert cid, "no client id of 50 hashed to the node"
        three[victim].proc.kill()
        three[victim].proc.wait()
        live = [a for i, a in enumerate(three) if i != victim]
        deadline = time.monotonic() + 15
        while True:  # as a device does: reconnect until a node answers
            c = paho.Client(client_id=cid, protocol=paho.MQTTv5)
            connected = queue.Queue()
            c.on_connect = lambda cl, ud, flags, rc, props=None: connected.put(rc)
            try:
                c.connect("127.0.0.1", mqtt_port)
                c.loop_start()
                if connected.get(timeout=2) == 0:
                    break
            except (OSError, queue.Empty):
                pass
            c.loop_stop()
            assert time.monotonic() < deadline, "no node took the client"
            time.sleep(0.2)
        assert sum(clients_of(a) for a in live) == 2
        c.publish("meters/moved/kwh", b"7", qos=1).wait_for_publish(5)
        assert inbox.get(timeout=5) == ("meters/moved/kwh", b"7")
        bye(c)
        bye(sub)
    finally:
        lb.stop()


def test_the_systemd_unit(tmp_path):
    """systemd-analyze verify accepts the unit; its command line, run in its working
    directory, serves with the store there, reloads on its ExecReload signal and ends with
    status 0 on its KillSignal well inside TimeoutStopSec."""
    unit = deploy_file("systemd", "wsagent.service")
    key = dict(re.findall(r"^(\w+)=(.*)$", unit, re.M))
    argv = shlex.split(key["ExecStart"])
    assert argv[0] == "/usr/bin/wsagent" and argv[1] == "serve"
    units = tmp_path / "units"
    units.mkdir()
    (units / "wsagent.service").write_text(unit.replace("/usr/bin/wsagent", os.path.abspath(BIN)))
    v = subprocess.run(["systemd-analyze", "verify", str(units / "wsagent.service")],
                       capture_output=True, text=True)
    assert v.returncode == 0, v.stdout + v.stderr

    state = tmp_path / "state"  # WorkingDirectory (StateDirectory)
    state.mkdir()
    conf = tmp_path / "wsagent.toml"
    conf.write_text('[server]\nlisten = "127.0.0.1:0"\n[mqtt]\nlisten = "127.0.0.1:0"\n')
    cmd = [BIN] + [str(conf) if a == "/etc/wsagent/wsagent.toml" else a for a in argv[1:]]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSAGENT_")}
    p = subprocess.Popen(cmd, cwd=state, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, env=env)
    try:
        lines = []
        for line in p.stdout:
            lines.append(line)
            if LISTEN_RE.search(line):
                break
        assert any(LISTEN_RE.search(x) for x in lines), "".join(lines)
        assert (state / "data" / "wsagent.db").exists()  # the store in the state directory
        assert key["ExecReload"] == "/bin/kill -HUP $MAINPID"
        p.send_signal(signal.SIGHUP)
        assert key["KillSignal"] == "SIGTERM"
        time.sleep(0.3)
        assert p.poll() is None  # SIGHUP reloads, it does not stop the agent
        start = time.monotonic()
        p.send_signal(signal.SIGTERM)
        rest = p.communicate(timeout=int(key["TimeoutStopSec"]))[0]
        assert p.returncode == 0, rest
        assert time.monotonic() - start < int(key["TimeoutStopSec"])
        assert "reload" in rest.lower(), rest
    finally:
        if p.poll() is None:
            p.kill()
