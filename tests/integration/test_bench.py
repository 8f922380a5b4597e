"""`wsagent bench`, the load generator, against the real agent and a real MQTT broker.

The bench is a measuring instrument: these tests check that it counts right (every message
it expects is one the server really routes, nothing is lost on a healthy run, a refused
scenario is reported as such) on every wire format it speaks: the agent's native protocol, the
agent's MQTT over TCP and over WebSocket (what bench/compare measures), and Debian's
Mosquitto, an independent implementation, which also checks the project's MQTT codec from the
other side. No timing is asserted here: figures live in docs/benchmarks.md.
"""

import json
import os
import resource
import shutil
import socket
import subprocess
import time

import pytest

from conftest import BIN


def bench(*args, timeout=60, preexec_fn=None):
    p = subprocess.run([BIN, "bench", "--json", "--quiet", *args], capture_output=True,
                       text=True, timeout=timeout, preexec_fn=preexec_fn)
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    report = json.loads(lines[-1]) if lines else None
    return p.returncode, report, p.stderr


def short(*args):
    return ["--duration", "1", "--warmup", "0.3", *args]


def assert_no_loss(r):
    assert r["supported"] is True, r
    assert r["error"] is None, r
    assert r["sent"] > 0, r
    assert r["delivered"] == r["expected"], r
    assert r["lost"] == 0, r
    assert r["msgs_per_s"] > 0, r
    assert r["latency_us"]["p50"] > 0, r


def test_pairs_native_counts_every_message(agent):
    rc, r, err = bench("--url", agent.url, "--scenario", "pairs", "--pairs", "5", *short())
    assert rc == 0, err
    assert_no_loss(r)
    assert r["expected"] == r["sent"]  # one subscriber per tag
    assert (r["proto"], r["transport"], r["connections"]) == ("native", "ws", 10)


def test_fan_out_native_expects_one_delivery_per_subscriber(agent):
    rc, r, err = bench("--url", agent.url, "--scenario", "fan-out", "--subscribers", "20",
                       "--rate", "2000", *short())
    assert rc == 0, err
    assert_no_loss(r)
    assert r["expected"] == 20 * r["sent"]
    # A fixed rate is held: about 2000 msg/s for about a second (wide bounds: no timing test).
    assert 200 <= r["sent"] <= 6000, r


def test_wildcard_fanout_matches_the_agent_routing(agent):
    # The bench computes each tag's fan-out with MQTT's rules; the agent routes on its own
    # index. Equal counts mean both agree on every filter.
    rc, r, err = bench("--url", agent.url, "--scenario", "wildcard", "--subscribers", "30",
                       "--tags", "100", "--publishers", "4", *short())
    assert rc == 0, err
    assert_no_loss(r)
    assert r["expected"] > r["sent"]


def test_fan_in_with_payload_size(agent):
    rc, r, err = bench("--url", agent.url, "--scenario", "fan-in", "--publishers", "10",
                       "--size", "1024", *short())
    assert rc == 0, err
    assert_no_loss(r)
    assert r["size"] == 1024
    assert r["bytes_per_s"] == pytest.approx(r["msgs_per_s"] * 1024, rel=0.01)


def test_server_stats_come_from_proc(agent):
    rc, r, err = bench("--url", agent.url, "--scenario", "pairs", "--pairs", "3",
                       "--server-pid", str(agent.proc.pid), *short())
    assert rc == 0, err
    assert r["server"]["pid"] == agent.proc.pid
    assert r["server"]["cpu_s"] > 0
    assert r["server"]["rss_kb"] > 1000
    assert r["server"]["rss_peak_kb"] >= r["server"]["rss_kb"]


def test_qos1_on_native_acknowledges_both_ways_and_loses_nothing(agent):
    rc, r, err = bench("--url", agent.url, "--scenario", "qos1", "--pairs", "2", *short())
    assert rc == 0, err
    assert r["supported"] is True and r["qos"] == 1, r
    assert r["delivered"] > 100 and r["lost"] == 0, r
    # Every publish's acknowledgement was timed.
    ack = r["ack_latency_us"]
    assert 0 < ack["p50"] <= ack["p99"] <= ack["max"], ack
    assert "ack_latency_us" not in bench("--url", agent.url, *short())[1]  # QoS 0: none


def test_qos1_with_persistent_subscribers_goes_through_the_store(agent):
    rc, r, err = bench("--url", agent.url, "--scenario", "qos1", "--pairs", "2", "--persistent",
                       *short())
    assert rc == 0, err
    assert r["persistent"] is True and r["lost"] == 0 and r["delivered"] > 100, r
    assert r["ack_latency_us"]["p50"] > 0, r
    agent.wait_log(r"\$sys|listening")  # the agent still serves
    assert agent.health()["sessions"] == 2  # the subscribers' sessions stay, offline


def test_connections_reports_memory_per_connection(agent):
    rc, r, err = bench("--url", agent.url, "--scenario", "connections", "--connections", "300",
                       "--duration", "0.5", "--server-pid", str(agent.proc.pid))
    assert rc == 0, err
    assert r["open"] == 300 and r["failed"] == 0, r
    assert r["server"]["rss_per_conn_kb"] > 0, r
    # The bench closes what it opened when it exits (the health request is one connection).
    deadline = time.monotonic() + 10
    while agent.health()["connections"] > 1:
        assert time.monotonic() < deadline, agent.health()
        time.sleep(0.1)


def server_cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_connections_cpu_is_this_runs_not_the_servers_lifetime(agent):
    # A busy second first, then the connections run: its cpu_s counts only what accepting
    # and holding its own connections cost.
    rc, _, err = bench("--url", agent.url, "--scenario", "pairs", "--pairs", "20",
                       "--duration", "1", "--warmup", "0")
    assert rc == 0, err
    earlier = server_cpu_s(agent.proc.pid)
    assert earlier > 0.2, earlier
    rc, r, err = bench("--url", agent.url, "--scenario", "connections", "--connections", "50",
                       "--duration", "0.2", "--server-pid", str(agent.proc.pid))
    assert rc == 0, err
    assert 0 <= r["server"]["cpu_s"] < earlier / 2, (r["server"], earlier)


def test_connections_over_several_processes(agent):
    rc, r, err = bench("--url", agent.url, "--scenario", "connections", "--connections", "300",
                       "--processes", "3", "--duration", "0.5")
    assert rc == 0, err
    assert r["open"] == 300 and r["failed"] == 0, r


def test_file_limit_is_named(agent):
    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (100, 100))

    rc, r, err = bench("--url", agent.url, "--scenario", "connections", "--connections", "500",
                       preexec_fn=low_limit)
    assert rc == 1
    assert "RLIMIT_NOFILE" in err and "--processes" in err, err


def test_unreachable_server_is_an_error():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    rc, r, err = bench("--url", f"ws://127.0.0.1:{port}/ws", "--scenario", "pairs", "--pairs", "2",
                       *short())
    assert rc == 1
    assert r["failed"] == 4 and "connect" in r["error"], r


def test_bad_url_is_a_usage_error():
    rc, r, err = bench("--url", "http://127.0.0.1:1/", "--scenario", "pairs")
    assert rc == 2 and r is None
    assert "ws://" in err


# --- against the agent's own MQTT: over TCP (mqtt.listen) and over WebSocket (/mqtt) ---

def agent_mqtt(agent, via):
    return (f"mqtt://127.0.0.1:{agent.mqtt_port}" if via == "tcp" else
            f"mqtt+ws://127.0.0.1:{agent.port}/mqtt")


@pytest.mark.parametrize("via", ["tcp", "ws"])
def test_pairs_over_the_agents_mqtt(agent, via):
    rc, r, err = bench("--url", agent_mqtt(agent, via), "--scenario", "pairs", "--pairs", "5",
                       "--server-pid", str(agent.proc.pid), *short())
    assert rc == 0, err
    assert_no_loss(r)
    assert (r["proto"], r["transport"], r["qos"], r["connections"]) == ("mqtt", via, 0, 10)
    assert r["expected"] == r["sent"]
    assert r["open"] == 10 and r["failed"] == 0 and r["disconnected"] == 0, r
    assert r["server"]["cpu_s"] > 0, r


@pytest.mark.parametrize("via", ["tcp", "ws"])
def test_fan_out_over_the_agents_mqtt(agent, via):
    rc, r, err = bench("--url", agent_mqtt(agent, via), "--scenario", "fan-out",
                       "--subscribers", "20", *short())
    assert rc == 0, err
    assert_no_loss(r)
    assert r["expected"] == 20 * r["sent"]


@pytest.mark.parametrize("via", ["tcp", "ws"])
def test_qos1_over_the_agents_mqtt_loses_nothing(agent, via):
    # 5 pairs with 100 messages in flight per publisher: at most 500 in flight in all, never
    # more than limits.max_queued (1000) for one subscriber, past which the agent drops the
    # oldest QoS 1 messages by design (bench/compare raises it to 10,000).
    rc, r, err = bench("--url", agent_mqtt(agent, via), "--scenario", "qos1", "--pairs", "5",
                       *short())
    assert rc == 0, err
    assert_no_loss(r)
    assert r["qos"] == 1, r
    # Every publish's PUBACK was timed, in publish order.
    ack = r["ack_latency_us"]
    assert 0 < ack["p50"] <= ack["p99"] <= ack["max"], ack
    assert agent.health()["qos1_dropped"] == 0


@pytest.mark.parametrize("via", ["tcp", "ws"])
def test_qos1_over_the_agents_mqtt_with_persistent_sessions(agent, via):
    # Clean session off: every message goes through the store before its PUBACK.
    rc, r, err = bench("--url", agent_mqtt(agent, via), "--scenario", "qos1", "--pairs", "2",
                       "--persistent", *short())
    assert rc == 0, err
    assert_no_loss(r)
    assert r["persistent"] is True and r["qos"] == 1, r
    assert agent.health()["sessions"] == 2  # the subscribers' sessions stay, offline


@pytest.mark.parametrize("via", ["tcp", "ws"])
def test_wildcard_over_the_agents_mqtt(agent, via):
    rc, r, err = bench("--url", agent_mqtt(agent, via), "--scenario", "wildcard",
                       "--subscribers", "30", "--tags", "100", "--publishers", "4", *short())
    assert rc == 0, err
    assert_no_loss(r)
    assert r["expected"] > r["sent"]


@pytest.mark.parametrize("via", ["tcp", "ws"])
def test_connections_over_the_agents_mqtt(agent, via):
    rc, r, err = bench("--url", agent_mqtt(agent, via), "--scenario", "connections",
                       "--connections", "300", "--duration", "0.5",
                       "--server-pid", str(agent.proc.pid))
    assert rc == 0, err
    assert r["open"] == 300 and r["failed"] == 0, r
    assert r["server"]["rss_per_conn_kb"] > 0, r
    deadline = time.monotonic() + 10
    while agent.health()["connections"] > 1:  # the health request's own
        assert time.monotonic() < deadline, agent.health()
        time.sleep(0.1)


@pytest.mark.parametrize("via", ["tcp", "ws"])
def test_token_over_the_agents_mqtt(agent_factory, via):
    # The token travels as the CONNECT's password: a known one runs the scenario, an unknown
    # one is refused by CONNACK, which the bench reports as a scenario it cannot run (exit 1,
    # supported false), not as lost messages.
    agent = agent_factory(config="""
[[auth.tokens]]
token = "bench-secret"
user = "bench"
roles = ["bench"]

[auth.roles.bench]
publish = ["bench/#"]
subscribe = ["bench/#"]
""")
    rc, r, err = bench("--url", agent_mqtt(agent, via), "--scenario", "pairs", "--pairs", "2",
                       "--token", "bench-secret", *short())
    assert rc == 0, err
    assert_no_loss(r)
    rc, r, err = bench("--url", agent_mqtt(agent, via), "--scenario", "pairs", "--pairs", "2",
                       "--token", "wrong", *short())
    assert rc == 1, err
    assert r["supported"] is False and "CONNACK refused" in r["error"], r


# --- against a real MQTT broker (Debian's Mosquitto) ---

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def mosquitto(tmp_path):
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not shutil.which(exe):
        pytest.fail("mosquitto is not installed: scripts/install-deps.sh --test installs it")
    tcp, ws = free_port(), free_port()
    conf = tmp_path / "mosquitto.conf"
    # Debian's 2.0.11 ignores an address on a websockets listener; `lo` keeps it local.
    conf.write_text(f"""per_listener_settings false
allow_anonymous true
persistence false
max_queued_messages 10000
listener {tcp} 127.0.0.1
listener {ws} lo
protocol websockets
""")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    for port in (tcp, ws):
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    proc.kill()
                    pytest.fail("mosquitto did not start")
                time.sleep(0.05)
    yield {"tcp": f"mqtt://127.0.0.1:{tcp}", "ws": f"mqtt+ws://127.0.0.1:{ws}/mqtt",
           "pid": proc.pid}
    proc.terminate()
    proc.wait(timeout=10)


@pytest.mark.parametrize("via", ["tcp", "ws"])
def test_pairs_over_mqtt(mosquitto, via):
    rc, r, err = bench("--url", mosquitto[via], "--scenario", "pairs", "--pairs", "5", *short())
    assert rc == 0, err
    assert_no_loss(r)
    assert (r["proto"], r["transport"]) == ("mqtt", via)


def test_fan_out_over_mqtt(mosquitto):
    rc, r, err = bench("--url", mosquitto["tcp"], "--scenario", "fan-out", "--subscribers",
                       "20", "--server-pid", str(mosquitto["pid"]), *short())
    assert rc == 0, err
    assert_no_loss(r)
    assert r["expected"] == 20 * r["sent"]
    assert r["server"]["cpu_s"] is not None


@pytest.mark.parametrize("via", ["tcp", "ws"])
def test_qos1_over_mqtt_loses_nothing(mosquitto, via):
    rc, r, err = bench("--url", mosquitto[via], "--scenario", "qos1", "--pairs", "5", *short())
    assert rc == 0, err
    assert_no_loss(r)
    assert r["qos"] == 1
    assert r["ack_latency_us"]["p50"] > 0, r


def test_wildcard_over_mqtt(mosquitto):
    # Mosquitto's matching against the bench's: equal counts mean the bench's expectation
    # follows MQTT's rules, the same rules the agent's own index implements.
    rc, r, err = bench("--url", mosquitto["tcp"], "--scenario", "wildcard", "--subscribers",
                       "30", "--tags", "100", "--publishers", "4", *short())
    assert rc == 0, err
    assert_no_loss(r)
