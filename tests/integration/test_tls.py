"""TLS listeners (wss, mqtts) with real clients: python3-websockets over wss, mosquitto_pub /
mosquitto_sub and python3-paho-mqtt over mqtts, and `openssl s_client` for what only it can
check (versions, ALPN, client certificates, resumption, rotation). Certificates are made by
the tests with the `openssl` command (tls_certs.py)."""
import asyncio
import json
import os
import queue
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request

import paho.mqtt.client as paho
import pytest
import websockets

from conftest import closed_with, recv_type, run, still_serves
from tls_certs import Certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return Certs(tmp_path_factory.mktemp("certs"))


def tls_agent(agent_factory, certs, tls="", extra="", args=()):
    """An agent with a plain listener (ws, http: for still_serves), a TLS WebSocket listener
    (ws, mqtt-ws, http) and a TLS MQTT one; `tls` is added to both tls tables."""
    table = (f'cert = "{certs.path("server.pem")}", key = "{certs.path("server.key")}"'
             + (", " + tls if tls else ""))
    config = f"""
[[listeners]]
bind = "127.0.0.1:0"
protocols = ["ws", "http"]

[[listeners]]
bind = "127.0.0.1:0"
protocols = ["ws", "mqtt-ws", "http"]
tls = {{ {table} }}

[[listeners]]
bind = "127.0.0.1:0"
protocols = ["mqtt"]
tls = {{ {table} }}
{extra}
"""
    a = agent_factory(config, args=args)
    a.wss_port = int(a.wait_log(r"listening on wss://127\.0\.0\.1:(\d+)/ws").group(1))
    a.mqtts_port = int(a.wait_log(r"listening on mqtts://127\.0\.0\.1:(\d+)").group(1))
    return a


def client_context(certs, cert=None, **kw):
    ctx = ssl.create_default_context(cafile=certs.path("ca.pem"))
    if cert:
        ctx.load_cert_chain(certs.path(f"{cert}.pem"), certs.path(f"{cert}.key"))
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


async def wss(agent, certs, cert=None, path="/ws"):
    return await websockets.connect(f"wss://localhost:{agent.wss_port}{path}",
                                    ssl=client_context(certs, cert), open_timeout=5,
                                    ping_interval=None)


def s_client(port, *options, request=True, timeout=10):
    """`openssl s_client` to the port; with `request`, a GET /healthz through it. Returns
    (served, output): served when the agent answered the request."""
    stdin = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" if request \
        else b""
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername",
                        "localhost", *(["-ign_eof"] if request else []), *options], input=stdin, capture_output=True,
                       timeout=timeout)
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    return "HTTP/1.1 200 OK" in out, out


def https_health(agent, certs, port=None):
    ctx = client_context(certs)
    with urllib.request.urlopen(f"https://localhost:{port or agent.wss_port}/healthz",
                                context=ctx, timeout=5) as r:
        return json.loads(r.read())


def served_fingerprint(port):
    """SHA-256 of the certificate a new connection to `port` is shown, lowercase hex."""
    pem = ssl.get_server_certificate(("127.0.0.1", port))
    der = ssl.PEM_cert_to_DER_cert(pem)
    import hashlib
    return hashlib.sha256(der).hexdigest()


def paho_tls(agent, certs, client_id, cert=None):
    c = paho.Client(client_id=client_id, protocol=paho.MQTTv311)
    c.tls_set(ca_certs=certs.path("ca.pem"),
              certfile=certs.path(f"{cert}.pem") if cert else None,
              keyfile=certs.path(f"{cert}.key") if cert else None)
    c.inbox = queue.Queue()
    c.on_message = lambda cl, ud, m: c.inbox.put(m)
    connacks = queue.Queue()
    c.on_connect = lambda cl, ud, flags, rc: connacks.put(rc)
    c.connect("localhost", agent.mqtts_port, keepalive=30)
    c.loop_start()
    assert connacks.get(timeout=5) == 0
    return c


def test_native_and_mqtt_clients_share_tags_over_tls(agent_factory, certs):
    a = tls_agent(agent_factory, certs)

    async def go():
        ws = await wss(a, certs)
        await ws.send(json.dumps({"type": "subscribe", "tags": ["plant/#"]}))
        await recv_type(ws, "subscribed")
        # mosquitto_sub over mqtts, mosquitto_pub over mqtts, paho over mqtts.
        sub = subprocess.Popen(["mosquitto_sub", "-h", "localhost", "-p", str(a.mqtts_port),
                                "--cafile", certs.path("ca.pem"), "-t", "plant/#", "-C", "2",
                                "-v", "-W", "10"], stdout=subprocess.PIPE, text=True)
        p = paho_tls(a, certs, "paho-tls")
        p.subscribe("plant/#", 1)
        deadline = time.monotonic() + 5
        while a.health()["subscriptions"] < 3:
            assert time.monotonic() < deadline, a.health()
            await asyncio.sleep(0.05)
        subprocess.run(["mosquitto_pub", "-h", "localhost", "-p", str(a.mqtts_port), "--cafile",
                        certs.path("ca.pem"), "-t", "plant/temp", "-m", '{"c":21.5}', "-q", "1"],
                       check=True, timeout=10)
        m = await recv_type(ws, "message")
        assert m["tag"] == "plant/temp" and m["payload"] == {"c": 21.5}
        await ws.send(json.dumps({"type": "publish", "tag": "plant/hum", "payload": {"rh": 40}}))
        got = p.inbox.get(timeout=5)
        assert json.loads(got.payload) == {"c": 21.5}
        got = p.inbox.get(timeout=5)
        assert got.topic == "plant/hum" and json.loads(got.payload) == {"rh": 40}
        out, _ = sub.communicate(timeout=10)
        assert out.splitlines() == ['plant/temp {"c":21.5}', 'plant/hum {"rh":40}']
        p.disconnect()
        p.loop_stop()
        await ws.close()

    run(go())


def test_mqtt_over_wss(agent_factory, certs):
    a = tls_agent(agent_factory, certs)
    c = paho.Client(client_id="ws-tls", transport="websockets")
    c.ws_set_options(path="/mqtt")
    c.tls_set(ca_certs=certs.path("ca.pem"))
    inbox = queue.Queue()
    c.on_message = lambda cl, ud, m: inbox.put(m)
    connacks = queue.Queue()
    c.on_connect = lambda cl, ud, flags, rc: connacks.put(rc)
    c.connect("localhost", a.wss_port, keepalive=30)
    c.loop_start()
    assert connacks.get(timeout=5) == 0
    done = queue.Queue()
    c.on_subscribe = lambda *x: done.put(x)
    c.subscribe("x/#", 0)
    done.get(timeout=5)
    c.publish("x/y", b"over wss", qos=1)
    m = inbox.get(timeout=5)
    assert m.topic == "x/y" and m.payload == b"over wss"
    c.disconnect()
    c.loop_stop()


def test_versions_alpn_and_suites(agent_factory, certs):
    a = tls_agent(agent_factory, certs)
    for old in ("-tls1", "-tls1_1"):
        served, out = s_client(a.wss_port, old, "-cipher", "DEFAULT@SECLEVEL=0")
        assert not served, out
    served, out = s_client(a.wss_port, "-tls1_2", "-alpn", "http/1.1")
    assert served, out
    assert "ALPN protocol: http/1.1" in out
    assert re.search(r"Cipher is ECDHE-(ECDSA|RSA)-(AES\d+-GCM-SHA\d+|CHACHA20-POLY1305)", out)
    served, out = s_client(a.wss_port, "-tls1_3", "-alpn", "h2,http/1.1")
    assert served and "TLSv1.3" in out and "ALPN protocol: http/1.1" in out, out
    # MQTT over TLS answers "mqtt" (the client speaks first: no HTTP request).
    _, out = s_client(a.mqtts_port, "-alpn", "mqtt", request=False)
    assert "ALPN protocol: mqtt" in out, out
    # A TLS 1.2 suite without ECDHE or AEAD is not offered.
    served, out = s_client(a.wss_port, "-tls1_2", "-cipher", "AES128-SHA")
    assert not served, out
    assert https_health(a, certs)["status"] == "ok"


def test_client_certificates_required(agent_factory, certs):
    a = tls_agent(agent_factory, certs, tls=f'client_ca = "{certs.path("ca.pem")}", '
                                            f'crl = "{certs.path("crl.pem")}", '
                                            'client_certs = "required"')

    def with_cert(name, *extra):
        return s_client(a.wss_port, "-cert", certs.path(f"{name}.pem"), "-key",
                        certs.path(f"{name}.key"), *extra)

    for version in ("-tls1_2", "-tls1_3"):
        assert not s_client(a.wss_port, version)[0]  # no certificate
        assert with_cert("client", version)[0]
        assert not with_cert("stranger", version)[0]  # another CA
        assert not with_cert("revoked", version)[0]  # in the CRL
        assert not with_cert("expired", version)[0]
    # mosquitto_pub with its certificate.
    r = subprocess.run(["mosquitto_pub", "-h", "localhost", "-p", str(a.mqtts_port), "--cafile",
                        certs.path("ca.pem"), "--cert", certs.path("client.pem"), "--key",
                        certs.path("client.key"), "-t", "t", "-m", "x"], timeout=10,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["mosquitto_pub", "-h", "localhost", "-p", str(a.mqtts_port), "--cafile",
                        certs.path("ca.pem"), "-t", "t", "-m", "x"], timeout=10,
                       capture_output=True, text=True)
    assert r.returncode != 0
    run(still_serves(a))


def test_client_certificates_optional_and_none(agent_factory, certs):
    a = tls_agent(agent_factory, certs, tls=f'client_ca = "{certs.path("ca.pem")}", '
                                            'client_certs = "optional"')
    assert s_client(a.wss_port)[0]
    assert s_client(a.wss_port, "-cert", certs.path("client.pem"), "-key",
                    certs.path("client.key"))[0]
    assert not s_client(a.wss_port, "-cert", certs.path("stranger.pem"), "-key",
                        certs.path("stranger.key"))[0]
    b = tls_agent(agent_factory, certs)  # none: a certificate is not asked for
    _, out = s_client(b.wss_port, "-tls1_2")
    assert "Acceptable client certificate CA names" not in out
    assert "No client certificate CA names sent" in out, out


def test_resumption(agent_factory, certs, tmp_path):
    a = tls_agent(agent_factory, certs)
    for version in ("-tls1_2", "-tls1_3"):
        sess = str(tmp_path / f"session{version}")
        served, out = s_client(a.wss_port, version, "-sess_out", sess)
        assert served, out
        served, out = s_client(a.wss_port, version, "-sess_in", sess)
        assert served and "Reused," in out, out


def replace_server_certificate(certs, cn):
    """A new certificate (and key) for the server, written over the files in use."""
    certs.server("next", cn)
    for ext in ("pem", "key"):
        tmp = certs.path(f"server.{ext}.new")
        shutil.copy(certs.path(f"next.{ext}"), tmp)
        os.replace(tmp, certs.path(f"server.{ext}"))


def test_rotation_on_sighup_and_on_file_change(agent_factory, certs, tmp_path):
    # The agent's own copy of the files: the module's stay as they are for other tests.
    own = Certs.__new__(Certs)
    own.dir = str(tmp_path / "own")
    shutil.copytree(certs.dir, own.dir)
    a = tls_agent(agent_factory, own)
    before = served_fingerprint(a.wss_port)
    assert before == own.fingerprint("server")

    async def go():
        ws = await wss(a, own)  # a connection of the old certificate
        await ws.send(json.dumps({"type": "subscribe", "tags": ["rot/#"]}))
        await recv_type(ws, "subscribed")

        # SIGHUP: new connections see the new certificate, the old one goes on.
        replace_server_certificate(own, "localhost")
        a.signal(signal.SIGHUP)
        a.wait_log(r"TLS reload of wss://127\.0\.0\.1:\d+ .*subject CN=localhost")
        after = served_fingerprint(a.wss_port)
        assert after == own.fingerprint("server") and after != before
        assert served_fingerprint(a.mqtts_port) == after
        await ws.send(json.dumps({"type": "publish", "tag": "rot/a", "payload": 1}))
        assert (await recv_type(ws, "message"))["payload"] == 1

        # A broken file is refused with a clear line; the certificate in use stays.
        with open(own.path("server.pem"), "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
        a.signal(signal.SIGHUP)
        a.wait_log(r"TLS reload of wss://\S+ .*failed, the previous certificate stays in use: "
                   r"tls\.cert .* is not a PEM certificate")
        assert served_fingerprint(a.wss_port) == after

        # A change on disk, without a signal.
        replace_server_certificate(own, "localhost")
        deadline = time.monotonic() + 10
        while served_fingerprint(a.wss_port) == after:
            assert time.monotonic() < deadline, "the changed files were not loaded"
            await asyncio.sleep(0.2)
        assert served_fingerprint(a.wss_port) == own.fingerprint("server")
        await ws.send(json.dumps({"type": "publish", "tag": "rot/b", "payload": 2}))
        assert (await recv_type(ws, "message"))["payload"] == 2
        await ws.close()

    run(go())


def test_garbage_plain_http_and_silent_handshakes_hurt_nobody(agent_factory, certs):
    a = tls_agent(agent_factory, certs, tls="handshake_timeout_ms = 500")
    silent = [socket.create_connection(("127.0.0.1", a.wss_port)) for _ in range(20)]
    garbage = socket.create_connection(("127.0.0.1", a.wss_port))
    garbage.sendall(os.urandom(4096))
    http = socket.create_connection(("127.0.0.1", a.wss_port))
    http.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
    mqtt = socket.create_connection(("127.0.0.1", a.mqtts_port))
    mqtt.sendall(bytes([0x10, 0x0c, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 30, 0, 0]))
    for s in (garbage, http, mqtt):
        ended(s)  # at most an alert, then the end
    # Meanwhile, a client over TLS is served.
    run(still_serves(a))
    assert https_health(a, certs)["status"] == "ok"
    # The silent ones are cut off at the handshake timeout.
    for s in silent:
        assert ended(s) == b""
    text = metrics(a)
    m = re.search(r'wsagent_tls_handshakes_total\{listener="127\.0\.0\.1:%d",result="failed"\} '
                  r'(\d+)' % a.wss_port, text)
    assert m and int(m.group(1)) >= 22, text
    from test_metrics import promtool_check
    code, report = promtool_check(text)
    assert code == 0, report


def ended(s, timeout=5):
    """Reads until the agent closes `s`; returns what came (an alert, say)."""
    s.settimeout(timeout)
    got = b""
    while True:
        try:
            chunk = s.recv(4096)
        except ConnectionResetError:
            return got
        if not chunk:
            return got
        got += chunk
        assert len(got) < 4096, got


def metrics(agent):
    with urllib.request.urlopen(f"http://127.0.0.1:{agent.port}/metrics", timeout=5) as r:
        return r.read().decode()


def test_a_non_loopback_listener_without_tls_is_named_or_refused(agent_factory, tmp_path):
    config = """
[server]
allow_anonymous = true
[[listeners]]
bind = "127.0.0.1:0"
protocols = ["ws", "http"]
[[listeners]]
bind = "0.0.0.0:0"
protocols = ["mqtt"]
"""
    a = agent_factory(config)
    a.wait_log(r"listener 0\.0\.0\.0:0 \(mqtt\) is not encrypted")
    path = tmp_path / "require.toml"
    path.write_text(config.replace("allow_anonymous = true",
                                   "allow_anonymous = true\nrequire_tls = true"))
    from conftest import BIN
    r = subprocess.run([BIN, "serve", "--config", str(path), "--store.kind", "memory"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    assert "refusing to listen on 0.0.0.0:0 (mqtt) without TLS (server.require_tls)" in r.stderr


def test_a_broken_tls_table_names_the_file(tmp_path, certs):
    from conftest import BIN
    path = tmp_path / "bad.toml"
    path.write_text(f"""
[[listeners]]
bind = "127.0.0.1:0"
protocols = ["ws"]
tls = {{ cert = "{certs.path('server.pem')}", key = "{certs.path('client.key')}" }}
""")
    r = subprocess.run([BIN, "serve", "--config", str(path), "--store.kind", "memory"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    assert re.search(r"listener 127\.0\.0\.1:0 \(ws\): tls\.key \S+client\.key\" does not match "
                     r"tls\.cert", r.stderr), r.stderr
    # --check-config opens the files as serve would, before anyone restarts the agent.
    r = subprocess.run([BIN, "serve", "--config", str(path), "--check-config"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2
    assert re.search(r"bad\.toml:2: listener 127\.0\.0\.1:0 \(ws\): tls\.key \S+client\.key\" "
                     r"does not match tls\.cert", r.stderr), r.stderr
    path.write_text("""
[[listeners]]
bind = "127.0.0.1:0"
protocols = ["ws"]
tls = { cert = "missing.pem", key = "missing.key", client_certs = "sometimes" }
""")
    r = subprocess.run([BIN, "serve", "--config", str(path), "--check-config"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode != 0
    assert re.search(r"bad\.toml:5: listeners\.tls\.client_certs: 'sometimes' is not one of "
                     r"none, optional, required", r.stderr + r.stdout), r.stderr + r.stdout


def test_testssl_finds_nothing_medium_or_worse(agent_factory, certs, tmp_path):
    """testssl.sh (Debian's) against a wss listener: every finding rated MEDIUM or worse
    fails. The certificate is one a deployment would have (a year, a CRL distribution
    point): testssl rates the certificate too."""
    certs.server("scanned", "localhost", days=365,
                 ext="crlDistributionPoints=URI:http://127.0.0.1/crl.pem\n")
    a = agent_factory(f"""
[[listeners]]
bind = "127.0.0.1:0"
protocols = ["ws", "http"]
[[listeners]]
bind = "127.0.0.1:0"
protocols = ["ws", "mqtt-ws", "http"]
tls = {{ cert = "{certs.path('scanned.pem')}", key = "{certs.path('scanned.key')}" }}
""")
    port = int(a.wait_log(r"listening on wss://127\.0\.0\.1:(\d+)/ws").group(1))
    report = tmp_path / "testssl.json"
    subprocess.run(["testssl", "--quiet", "--color", "0", "--warnings", "off", "--add-ca",
                    certs.path("ca.pem"), "--severity", "MEDIUM", "--jsonfile", str(report),
                    f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=600)
    findings = [f for f in json.loads(report.read_text())
                if f["severity"] in ("MEDIUM", "HIGH", "CRITICAL")]
    assert not findings, findings
    run(still_serves(a))


def test_sslscan_sees_tls12_and_13_only(agent_factory, certs):
    a = tls_agent(agent_factory, certs)
    for port in (a.wss_port, a.mqtts_port):
        out = subprocess.run(["sslscan", "--no-colour", f"127.0.0.1:{port}"],
                             capture_output=True, text=True, timeout=120).stdout
        for old in ("SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1"):
            assert re.search(rf"{re.escape(old)}\s+disabled", out), out
        for new in ("TLSv1.2", "TLSv1.3"):
            assert re.search(rf"{re.escape(new)}\s+enabled", out), out
        accepted = re.findall(r"^(?:Preferred|Accepted)\s+TLSv1\.2\s+\d+ bits\s+(\S+)", out,
                              re.M)
        assert accepted, out
        for suite in accepted:
            assert suite.startswith("ECDHE-") and ("GCM" in suite or "CHACHA20" in suite), out


def test_mqttjs_over_wss_and_a_native_client(agent_factory, certs):
    """MQTT.js (npm, tests/js) over wss://…/mqtt, trusting the test CA as Node does
    (NODE_EXTRA_CA_CERTS), against a native client over wss on the same tags."""
    from test_mqttjs import SCRIPT
    a = tls_agent(agent_factory, certs)

    async def go():
        ws = await wss(a, certs)
        await ws.send(json.dumps({"type": "subscribe", "tags": ["js/from-js"], "qos": 1}))
        await recv_type(ws, "subscribed")
        js = await asyncio.create_subprocess_exec(
            "node", SCRIPT, f"wss://localhost:{a.wss_port}/mqtt", "mqttjs-tls", "4",
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "NODE_EXTRA_CA_CERTS": certs.path("ca.pem")})
        line = json.loads(await asyncio.wait_for(js.stdout.readline(), 10))
        assert line == {"ready": True}, line
        for n in (1, 2):
            m = await recv_type(ws, "message")
            assert m["payload"] == {"from": "mqtt.js", "n": n} and m["from"] == "mqttjs-tls"
            await ws.send(json.dumps({"type": "ack", "seq": m["seq"]}))
        for n in (1, 2):
            await ws.send(json.dumps({"type": "publish", "tag": "js/to-js",
                                      "payload": {"n": n}, "qos": 1}))
            await recv_type(ws, "ack")
        for n in (1, 2):
            got = json.loads(await asyncio.wait_for(js.stdout.readline(), 10))
            assert got["topic"] == "js/to-js" and got["payload"] == '{"n":%d}' % n, got
        assert await asyncio.wait_for(js.wait(), 10) == 0
        await ws.close()

    run(go())


def spki_sha256(certs, name):
    """Base64 of the SHA-256 of the certificate's public key (what Chromium pins)."""
    pub = subprocess.run(["openssl", "x509", "-in", certs.path(f"{name}.pem"), "-pubkey",
                          "-noout"], check=True, capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub,
                         check=True, capture_output=True).stdout
    import base64
    import hashlib
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def test_a_page_in_chromium_over_wss(agent_factory, certs):
    """A page in Debian's Chromium (playwright-core) subscribes and publishes over wss; an
    MQTT client over mqtts gets what the page published."""
    script = os.path.join(os.path.dirname(__file__), "..", "js", "browser_wss.mjs")
    a = tls_agent(agent_factory, certs)
    sub = subprocess.Popen(["mosquitto_sub", "-h", "localhost", "-p", str(a.mqtts_port),
                            "--cafile", certs.path("ca.pem"), "-t", "browser/#", "-C", "1",
                            "-W", "20"], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 5
    while a.health()["subscriptions"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    r = subprocess.run(["node", script, f"wss://localhost:{a.wss_port}/ws",
                        spki_sha256(certs, "server")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    m = json.loads(r.stdout.strip().splitlines()[-1])
    assert m["tag"] == "browser/echo" and m["payload"] == {"from": "chromium"}, m
    out, _ = sub.communicate(timeout=20)
    assert json.loads(out) == {"from": "chromium"}


def test_ocsp_stapling_from_a_file(agent_factory, certs, tmp_path):
    """An OCSP response made by `openssl ocsp` for the server certificate is stapled for a
    client that asks (s_client -status), and not sent to one that does not."""
    response = tmp_path / "ocsp.der"
    subprocess.run(["openssl", "ocsp", "-index", certs.path("ca.db/index.txt"), "-rsigner",
                    certs.path("ca.pem"), "-rkey", certs.path("ca.key"), "-CA",
                    certs.path("ca.pem"), "-issuer", certs.path("ca.pem"), "-cert",
                    certs.path("server.pem"), "-respout", str(response), "-ndays", "1"],
                   check=True, capture_output=True, timeout=30)
    a = tls_agent(agent_factory, certs, tls=f'ocsp_response = "{response}"')
    served, out = s_client(a.wss_port, "-status")
    assert served, out
    assert "OCSP Response Status: successful" in out and "Cert Status: good" in out, out
    _, out = s_client(a.wss_port)
    assert "OCSP Response Status" not in out


CERT_IDENTITY = """
[auth.certificates]
client_id = "{cn}"
user = "{email}"
roles = ["device"]
match_client_id = true

[auth.roles.device]
publish = ["devices/%c/#"]
subscribe = ["devices/%c/#", "owners/%u/#"]
"""


def test_a_client_certificate_is_the_identity_on_wss_and_mqtts(agent_factory, certs):
    """[auth.certificates]: the verified certificate's CN is the client id and its e-mail
    SAN the user, identically over wss and mqtts; the audit line names its subject and
    fingerprint; a client claiming another id is refused."""
    a = tls_agent(agent_factory, certs,
                  tls=f'client_ca = "{certs.path("ca.pem")}", client_certs = "optional"',
                  extra=CERT_IDENTITY)

    async def go():
        ws = await wss(a, certs, cert="client")
        await ws.send(json.dumps({"type": "auth"}))
        r = await recv_type(ws, "auth_response")
        assert r["clientId"] == "dev-1", r
        fp = certs.fingerprint("client")
        a.wait_log(r'"audit":"auth_success","clientId":"dev-1".*"detail":"dev-1@devices\.example, '
                   r'certificate CN=dev-1 \(SHA-256 %s\)"' % fp)
        # Its rights are the role's, with %c and %u from the certificate.
        await ws.send(json.dumps({"type": "subscribe", "tags": ["owners/dev-1@devices.example/#"]}))
        assert (await recv_type(ws, "subscribed"))["tags"] == ["owners/dev-1@devices.example/#"]
        await ws.send(json.dumps({"type": "publish", "tag": "devices/dev-2/x", "payload": 1,
                                  "qos": 1, "msgid": "other"}))
        assert (await recv_type(ws, "error"))["code"] == "forbidden"
        await ws.close()
        # The same certificate over mqtts: the same client id (MQTT's own id must match it).
        ok = subprocess.run(["mosquitto_pub", "-h", "localhost", "-p", str(a.mqtts_port),
                             "--cafile", certs.path("ca.pem"), "--cert", certs.path("client.pem"),
                             "--key", certs.path("client.key"), "-i", "dev-1", "-t",
                             "devices/dev-1/temp", "-m", "20", "-q", "1"],
                            capture_output=True, text=True, timeout=10)
        assert ok.returncode == 0, ok.stderr
        a.wait_log(r'"audit":"auth_success","clientId":"dev-1".*\(MQTT\), certificate CN=dev-1')
        bad = subprocess.run(["mosquitto_pub", "-h", "localhost", "-p", str(a.mqtts_port),
                              "--cafile", certs.path("ca.pem"), "--cert",
                              certs.path("client.pem"), "--key", certs.path("client.key"), "-i",
                              "dev-2", "-t", "devices/dev-2/temp", "-m", "20"],
                             capture_output=True, text=True, timeout=10)
        assert bad.returncode != 0
        a.wait_log(r'"audit":"auth_failure".*"detail":"certificate CN=dev-1 \(SHA-256 %s\) is '
                   r'client dev-1, not dev-2"' % fp)
        # Without a certificate (optional), no token: refused, as any client without one.
        ws = await wss(a, certs)
        await ws.send(json.dumps({"type": "auth"}))
        code, _ = await closed_with(ws)
        assert code in (4401, 4403)

    run(go())


@pytest.mark.parametrize("url", ["wss://localhost:{wss}/ws", "mqtts://localhost:{mqtts}",
                                 "mqtt+wss://localhost:{wss}/mqtt"])
def test_wsagent_bench_over_tls_verifies_and_loses_nothing(agent_factory, certs, url):
    """`wsagent bench` over each TLS target (bench/compare's TLS rows), the agent's
    certificate checked against the test CA: every message counted, none lost."""
    from test_bench import assert_no_loss, bench, short
    a = tls_agent(agent_factory, certs)
    u = url.format(wss=a.wss_port, mqtts=a.mqtts_port)
    rc, r, err = bench("--url", u, "--cafile", certs.path("ca.pem"), "--scenario", "fan-out",
                       "--subscribers", "20", *short())
    assert rc == 0, err
    assert_no_loss(r)
    assert r["expected"] == 20 * r["sent"]
    # A CA that did not sign it: every connection fails its handshake.
    rc, r, err = bench("--url", u, "--cafile", certs.path("other-ca.pem"), "--scenario",
                       "pairs", "--pairs", "1", *short())
    assert rc == 1 and "certificate verify failed" in (r or {}).get("error", "") + err, (r, err)
