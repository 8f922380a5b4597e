"""Fixtures for integration tests: the real `wsagent` binary on a free port, real clients.

Every test starts its own agent (port 0, a fresh temporary directory) so tests never share
state and can run in parallel. Clients are python3-websockets (an independent RFC 6455
implementation), a raw-socket client for byte-level cases, and the project's own
`wsagent pub` / `wsagent sub`.
"""

import asyncio
import base64
import json
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest
import websockets

BIN = os.environ.get("WSAGENT_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "dev", "src", "app", "wsagent")

LISTEN_RE = re.compile(r"listening on ws://([^ ]+):(\d+)/ws")
MQTT_RE = re.compile(r"MQTT .*listening on mqtt://([^ ]+):(\d+)")
SANITIZER_RE = re.compile(r"WARNING: ThreadSanitizer|ERROR: AddressSanitizer|"
                          r"ERROR: LeakSanitizer|runtime error: ")


class Agent:
    """A running `wsagent serve`; its log lines are collected as they come."""

    def __init__(self, tmp_path, config="", args=(), env=None, data_dir=None):
        self.dir = tmp_path
        self.config_path = tmp_path / "wsagent.toml"
        self.config_path.write_text(config)
        cmd = [BIN, "serve", "--config", str(self.config_path)]
        if "--listen" not in args and "listen" not in config:
            cmd += ["--listen", "127.0.0.1:0"]
        if "--mqtt.listen" not in args and "[mqtt]" not in config:
            cmd += ["--mqtt.listen", "127.0.0.1:0"]  # a free port: tests run side by side
        # Each agent its own store (one agent per data directory); pass the same data_dir
        # to a later agent to restart on the same data.
        self.data_dir = data_dir or (tmp_path / "data")
        if not any("data_dir" in a for a in args) and "data_dir" not in config:
            cmd += ["--store.data_dir", str(self.data_dir)]
        cmd += list(args)
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("WSAGENT_")}
        full_env.update(env or {})
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=full_env, text=True)
        self.lines = []
        self._cv = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()
        m = self.wait_log(LISTEN_RE, timeout=10)
        self.host, self.port = m.group(1), int(m.group(2))
        self.url = f"ws://127.0.0.1:{self.port}/ws"

    @property
    def mqtt_port(self):
        """The MQTT over TCP port (logged right after the WebSocket one)."""
        return int(self.wait_log(MQTT_RE).group(2))

    def _pump(self):
        for line in self.proc.stdout:
            with self._cv:
                self.lines.append(line.rstrip("\n"))
                self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    def wait_log(self, pattern, timeout=5.0):
        """Waits for a log line matching `pattern`; returns the match."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cv:
            while True:
                for line in self.lines[seen:]:
                    m = rx.search(line)
                    if m:
                        return m
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and seen == len(self.lines)):
                    raise AssertionError(f"no log line matching {rx.pattern!r}; log:\n" + self.log())
                self._cv.wait(min(left, 0.1))

    def log(self):
        with self._cv:
            return "\n".join(self.lines)

    def health(self):
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5) as r:
            assert r.status == 200
            return json.loads(r.read())

    def metric(self, name, labels=""):
        """The value of one sample of /metrics (`labels` as rendered: '{reason="x"}'); 0 when
        the agent has no such sample."""
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        for line in text.splitlines():
            if line.startswith(name + labels + " "):
                return float(line.split()[-1])
        return 0.0

    def wait_metric(self, name, check, labels="", timeout=5.0):
        """Waits until check(value of the metric) holds; returns the value."""
        deadline = time.monotonic() + timeout
        while True:
            v = self.metric(name, labels)
            if check(v):
                return v
            if time.monotonic() > deadline:
                raise AssertionError(f"{name}{labels} is {v}; log:\n" + self.log())
            time.sleep(0.05)

    def wait_subscriptions(self, n, timeout=5.0):
        """Waits until the agent holds `n` subscriptions (a CLI client is ready)."""
        deadline = time.monotonic() + timeout
        while True:
            h = self.health()
            if h["subscriptions"] == n:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {n} subscriptions, health says {h}")
            time.sleep(0.05)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def reload_until(self, pattern, timeout=10.0):
        """SIGHUP, until a log line matches `pattern` (a reload is idempotent). Sent again
        every 2 s: under ThreadSanitizer, which holds a signal until the thread it landed on
        makes an intercepted call, one SIGHUP sent just after start-up was once not handled
        within 5 s (CI, stop 20)."""
        deadline = time.monotonic() + timeout
        while True:
            self.signal(signal.SIGHUP)
            try:
                return self.wait_log(pattern, timeout=min(2.0, deadline - time.monotonic()))
            except AssertionError:
                if time.monotonic() >= deadline or self.proc.poll() is not None:
                    raise

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def serve_file(tmp_path, text, *args):
    """`wsagent serve` (or, with "--check-config" in `args`, the check) on a configuration
    file bad.toml holding `text`, in memory; the finished process (it is expected to refuse)."""
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return subprocess.run([BIN, "serve", "--config", str(path), "--store.kind", "memory", *args],
                          capture_output=True, text=True, timeout=10)


@pytest.fixture
def agent_factory(tmp_path):
    agents = []

    def make(config="", args=(), env=None, name=None, data_dir=None):
        d = tmp_path / (name or f"agent{len(agents)}")
        d.mkdir()
        a = Agent(d, config, args, env, data_dir)
        agents.append(a)
        return a

    yield make
    for a in agents:
        a.stop()
    # A sanitizer build (asan, tsan presets) reports in the agent's log and goes on: a test
    # whose agent reported anything fails, whatever it asserted.
    for a in agents:
        m = SANITIZER_RE.search(a.log())
        if m:
            start = max(0, m.start() - 200)
            pytest.fail("the agent reported a sanitizer error:\n" + a.log()[start:start + 6000])


@pytest.fixture
def agent(agent_factory):
    """An agent on its defaults (open mode, loopback)."""
    return agent_factory()


# --- async helpers (python3-websockets 10.x) ---

def run(coro):
    return asyncio.run(coro)


async def connect(agent, path="/ws", query="", headers=None, **kw):
    uri = f"ws://127.0.0.1:{agent.port}{path}" + (f"?{query}" if query else "")
    kw.setdefault("ping_interval", None)
    kw.setdefault("max_size", 64 * 1024 * 1024)
    return await websockets.connect(uri, extra_headers=headers or {}, open_timeout=5, **kw)


async def recv(ws, timeout=5.0):
    msg = await asyncio.wait_for(ws.recv(), timeout)
    return json.loads(msg) if isinstance(msg, str) else msg


async def recv_type(ws, type_, timeout=5.0):
    """Receives frames until one of `type_`; fails on an error frame of another kind."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {type_!r} frame in {timeout}s")
        m = await recv(ws, left)
        if isinstance(m, dict) and m.get("type") == type_:
            return m


async def nothing_for(ws, seconds):
    """Asserts no frame arrives for `seconds`."""
    try:
        m = await asyncio.wait_for(ws.recv(), seconds)
    except asyncio.TimeoutError:
        return
    raise AssertionError(f"unexpected frame: {m!r}")


async def auth(ws, token=None, client_id=None, **extra):
    frame = {"type": "auth", **extra}
    if token is not None:
        frame["token"] = token
    if client_id is not None:
        frame["deviceId"] = client_id
    await ws.send(json.dumps(frame))
    return await recv_type(ws, "auth_response")


async def subscribe(ws, *tags, id="s", **fields):
    """Subscribes to `tags` (with `fields` such as qos or since; None ones are left out);
    returns the agent's `subscribed` answer."""
    frame = {"type": "subscribe", "id": id, "tags": list(tags)}
    frame.update({k: v for k, v in fields.items() if v is not None})
    await ws.send(json.dumps(frame))
    r = await recv(ws)
    assert r.get("type") == "subscribed", r
    return r



async def publish(ws, tag, payload, **extra):
    await ws.send(json.dumps({"type": "publish", "tag": tag, "payload": payload, **extra}))


async def closed_with(ws, timeout=5.0):
    """Waits for the agent to close `ws`; returns (code, reason)."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            await asyncio.wait_for(ws.recv(), deadline - time.monotonic())
    except websockets.ConnectionClosed:
        pass
    except asyncio.TimeoutError:
        raise AssertionError("the agent did not close the connection")
    return ws.close_code, ws.close_reason


async def still_serves(agent):
    """After bad input: a well-behaved client can still publish and receive."""
    sub = await connect(agent)
    pub = await connect(agent)
    try:
        await auth(sub, client_id="health-sub")
        await auth(pub, client_id="health-pub")
        await subscribe(sub, "health/check")
        await publish(pub, "health/check", {"ok": True})
        m = await recv_type(sub, "message")
        assert m["payload"] == {"ok": True}
    finally:
        await sub.close()
        await pub.close()


# --- clients a test opens and closes at its end (an unclosed websockets connection makes
# asyncio.run wait 10 s for its closing handshake) ---

OPEN = []


@pytest.fixture(autouse=True)
def _no_clients_left():
    OPEN.clear()  # those of a test that failed half-way


async def client(agent, name, **kw):
    """A connection authenticated as `name`, closed by close_all()."""
    ws = await connect(agent, **kw)
    OPEN.append(ws)
    await auth(ws, client_id=name)
    return ws


async def close_all():
    # A connection the agent already dropped (a test that killed it) may fail to close.
    await asyncio.gather(*(ws.close() for ws in OPEN), return_exceptions=True)
    OPEN.clear()


async def sub(ws, *tags, qos):
    """Subscribes to `tags` at `qos`; returns when the agent said subscribed."""
    return await subscribe(ws, *tags, qos=qos)


async def session(agent, name, persistent=True, expiry=None, query=""):
    """A connection authenticated as `name`, with a persistent session unless told; returns
    it and the auth_response. Closed by close_all() (or drop())."""
    ws = await connect(agent, query=query)
    OPEN.append(ws)
    frame = {"type": "auth", "deviceId": name}
    if persistent:
        frame["session"] = "persistent"
    if expiry:
        frame["expiry"] = expiry
    await ws.send(json.dumps(frame))
    return ws, await recv_type(ws, "auth_response")


async def drop(ws):
    """Closes one of the OPEN connections now."""
    await ws.close()
    OPEN.remove(ws)


# --- a raw WebSocket client, for byte-level cases no library will send ---

class RawWs:
    def __init__(self, port, path="/ws", headers=""):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\n{headers}\r\n")
        self.sock.sendall(req.encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise AssertionError("connection closed during handshake")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        self.status = int(head.split(b" ")[1])

    def send_frame(self, opcode, payload=b"", fin=True, mask=True, rsv=0):
        b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
        n = len(payload)
        if n < 126:
            hdr = struct.pack("!BB", b0, (0x80 if mask else 0) | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", b0, (0x80 if mask else 0) | 126, n)
        else:
            hdr = struct.pack("!BBQ", b0, (0x80 if mask else 0) | 127, n)
        if mask:
            key = os.urandom(4)
            if payload:
                stream = (key * (n // 4 + 1))[:n]
                payload = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")
            hdr += key
        self.sock.sendall(hdr + payload)

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_frame(self):
        """Returns (opcode, payload); server frames are never masked."""
        b0, b1 = self._read(2)
        assert b1 & 0x80 == 0, "server frames must not be masked"
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8))[0]
        return b0 & 0x0F, self._read(n)

    def recv_close(self):
        """Reads frames until a close frame; returns its code (None when absent)."""
        while True:
            op, payload = self.recv_frame()
            if op == 8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None

    def close(self):
        self.sock.close()
