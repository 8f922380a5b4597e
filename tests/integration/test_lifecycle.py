"""Running it for real: health, graceful shutdown, configuration checks, the secure default,
logging formats and the diagnostics echo endpoint."""

import asyncio
import json
import os
import signal
import subprocess
import time

import pytest
import websockets

from conftest import (BIN, Agent, closed_with, connect, publish, recv, recv_type, run,
                      still_serves, subscribe)


def test_healthz(agent):
    h = agent.health()
    assert h["status"] == "ok"
    assert h["connections"] == 1  # this request
    assert h["sessions"] == 0 and h["subscriptions"] == 0 and h["dropped"] == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_graceful_shutdown_sends_1001_and_exits_0(agent, sig):
    async def go():
        clients = [await connect(agent) for _ in range(3)]
        await subscribe(clients[0], "x")
        start = time.monotonic()
        agent.signal(sig)
        for ws in clients:
            assert await closed_with(ws) == (1001, "Server shutting down")
        code = await asyncio.get_running_loop().run_in_executor(None, agent.proc.wait, 10)
        assert code == 0
        assert time.monotonic() - start < 5
    run(go())
    agent.wait_log("stopped")


def test_check_config_reports_every_error_with_its_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[server]\nlisten = "127.0.0.1:8080"\nthreds = 2\n\n[limits]\nmax_connections = -5\n'
                   '[nonsense]\nx = 1\n')
    r = subprocess.run([BIN, "serve", "--config", str(bad), "--check-config"], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 2
    assert f"{bad}:3: server.threds" in r.stderr
    assert f"{bad}:6: limits.max_connections" in r.stderr
    assert f"{bad}:7:" in r.stderr and "nonsense" in r.stderr
    good = tmp_path / "good.toml"
    good.write_text('[server]\nlisten = "127.0.0.1:9999"\n')
    r = subprocess.run([BIN, "serve", "--config", str(good), "--check-config"], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 0 and "valid" in r.stdout


def test_example_configuration_is_valid():
    example = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "wsagent.example.toml")
    r = subprocess.run([BIN, "serve", "--config", example, "--check-config"], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 0, r.stderr


def test_refuses_a_public_address_without_authentication(tmp_path):
    r = subprocess.run([BIN, "serve", "--listen", "0.0.0.0:0"], capture_output=True, text=True,
                       timeout=10, env={k: v for k, v in os.environ.items() if not k.startswith("WSAGENT_")})
    assert r.returncode == 1
    # The listener named with its protocols.
    assert "refusing to listen on 0.0.0.0:0 (ws, mqtt-ws, http) without authentication" in r.stderr
    # --check-config says so too, before anyone tries to start it.
    r = subprocess.run([BIN, "serve", "--listen", "0.0.0.0:8080", "--check-config"],
                       capture_output=True, text=True, timeout=10,
                       env={k: v for k, v in os.environ.items() if not k.startswith("WSAGENT_")})
    assert r.returncode == 2 and "refusing to listen on 0.0.0.0" in r.stderr


def test_public_address_with_explicit_anonymous_opt_in(agent_factory):
    a = agent_factory("[server]\nlisten = \"0.0.0.0:0\"\nallow_anonymous = true\n")
    a.wait_log("OPEN ACCESS.*allow_anonymous")
    run(still_serves(a))


def test_environment_and_flags_override_the_file(agent_factory):
    # file: 1 subscription; environment: 2; flag: 3. The flag wins.
    a = agent_factory("[limits]\nmax_subscriptions = 1\n",
                      args=["--limits.max_subscriptions=3"],
                      env={"WSAGENT_LIMITS_MAX_SUBSCRIPTIONS": "2"})

    async def go():
        ws = await connect(a)
        await subscribe(ws, "a", "b", "c")
        await ws.send(json.dumps({"type": "subscribe", "tags": ["d"]}))
        assert (await recv_type(ws, "error"))["code"] == "limit_exceeded"
        await ws.close()
    run(go())
    b = agent_factory("[limits]\nmax_subscriptions = 1\n", env={"WSAGENT_LIMITS_MAX_SUBSCRIPTIONS": "2"})

    async def go2():
        ws = await connect(b)
        await subscribe(ws, "a", "b")
        await ws.close()
    run(go2())


def test_json_log_lines(agent_factory):
    a = agent_factory("[log]\nformat = \"json\"\n")
    run(still_serves(a))
    a.stop()
    lines = [l for l in a.lines if l.strip()]
    assert lines
    for l in lines:
        entry = json.loads(l)
        assert {"time", "level", "msg"} <= entry.keys()


def test_audit_log_file(agent_factory, tmp_path):
    audit = tmp_path / "audit.jsonl"
    a = agent_factory(f'[log]\naudit_file = "{audit}"\n')
    run(still_serves(a))
    a.stop()
    events = [json.loads(l) for l in audit.read_text().splitlines()]
    assert any(e["audit"] == "auth_success" and e["clientId"] == "health-sub" for e in events)
    assert all("time" in e and "remote" in e for e in events)


def test_diagnostics_echo_endpoint(agent_factory):
    a = agent_factory("[server]\ndiagnostics = true\n[limits]\nmax_message_size = 200000\n")

    async def go():
        ws = await connect(a, path="/echo")
        for msg in ["text", "é" * 1000, b"\x00\x01binary", os.urandom(150000)]:
            await ws.send(msg)
            assert await asyncio.wait_for(ws.recv(), 5) == msg
        await ws.close()
    run(go())


LISTENERS = """
[[listeners]]
bind = "127.0.0.1:0"
protocols = ["ws"]

[[listeners]]
bind = "127.0.0.1:0"
protocols = ["http"]

[[listeners]]
bind = "127.0.0.1:0"
protocols = ["mqtt"]
"""


def test_listeners_serve_what_they_list(agent_factory):
    """[[listeners]]: each address serves its protocols only; every HTTP listener answers
    /healthz; with listeners in the file the shorthands' defaults are not added."""
    import re
    import urllib.error
    import urllib.request
    # (mqtt.listen set to "" explicitly: the fixture would add one on a free port)
    a = agent_factory(config=LISTENERS, args=["--store.kind", "memory", "--mqtt.listen", ""])
    http_port = int(a.wait_log(r"listening on http://127\.0\.0\.1:(\d+) \(http\)").group(1))
    mqtt_port = a.mqtt_port
    assert len([line for line in a.log().splitlines() if "listening on" in line]) == 3

    def get(port, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
    assert get(http_port, "/healthz") == 200
    assert get(a.port, "/healthz") == 200
    assert get(http_port, "/ws") == 404  # no WebSocket route there
    assert get(a.port, "/mqtt") == 404  # the ws listener does not serve mqtt-ws
    from mqtt_async import Client

    async def go():
        c = await Client.connect(mqtt_port, "lst")  # raw MQTT on its own listener
        c.disconnect()
        await c.close()
        await still_serves(a)
    run(go())
    assert re.search(r"MQTT .*listening on mqtt://127\.0\.0\.1:\d+", a.log())


def test_a_listener_that_cannot_bind_names_itself(agent, tmp_path):
    taken = agent.mqtt_port  # held by the running agent
    r = subprocess.run([BIN, "serve", "--listen", "127.0.0.1:0", "--mqtt.listen",
                        f"127.0.0.1:{taken}", "--store.kind", "memory"],
                       capture_output=True, text=True, timeout=10,
                       env={k: v for k, v in os.environ.items() if not k.startswith("WSAGENT_")})
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1:{taken} (mqtt): Address already in use" in r.stderr
