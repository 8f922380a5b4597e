"""Real Redis processes for the cluster tests: Debian's redis-server on a free loopback port,
in the test's own directory, with no persistence unless asked."""

import os
import socket
import subprocess
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A redis-server; stop() and start() again keep its port (a restart)."""

    def __init__(self, directory, port=None, args=(), tls=None):
        """tls: {"cert", "key", "ca"} (PEM paths): TLS only on the port (no plain port), and
        redis-cli speaks TLS to it with the same files."""
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.args = list(args)
        self.tls = tls
        self.proc = None
        self.start()

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def start(self):
        self.log = open(self.dir / f"redis-{self.port}.log", "a")
        ports = ["--port", str(self.port)]
        if self.tls:
            ports = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file",
                     self.tls["cert"], "--tls-key-file", self.tls["key"], "--tls-ca-cert-file",
                     self.tls["ca"]]
        self.proc = subprocess.Popen(
            ["redis-server", *ports, "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.dir), *self.args],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.cli("PING") == "PONG":
                    return
            except (OSError, subprocess.CalledProcessError):
                pass
            time.sleep(0.05)
        raise AssertionError(f"redis-server on {self.port} did not start")

    def cli(self, *args):
        """One command through redis-cli; its reply as text."""
        tls = []
        if self.tls:
            tls = ["--tls", "--cacert", self.tls["ca"], "--cert", self.tls.get("client_cert",
                                                                              self.tls["cert"]),
                   "--key", self.tls.get("client_key", self.tls["key"])]
        out = subprocess.run(["redis-cli", *tls, "-p", str(self.port), *args],
                             capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.strip()

    def send_raw(self, *args):
        """One command with byte-string arguments (binary-safe, unlike redis-cli's argv);
        returns the first line of the reply."""
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else a.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"".join(parts))
            return s.recv(4096).split(b"\r\n")[0]

    def command_calls(self, name):
        """How many times `name` ran since the last CONFIG RESETSTAT (INFO commandstats)."""
        for line in self.cli("INFO", "commandstats").splitlines():
            if line.startswith(f"cmdstat_{name.lower()}:"):
                fields = dict(kv.split("=") for kv in line.split(":", 1)[1].split(","))
                return int(fields["calls"])
        return 0

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.log.close()

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()


class Sentinel:
    """A redis-sentinel monitoring the master `name` at 127.0.0.1:`master_port` (quorum 2,
    down after 1 s: a failover takes a few seconds)."""

    def __init__(self, directory, master_port, name="m", quorum=2):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.conf = self.dir / f"sentinel-{self.port}.conf"
        self.conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
            f"sentinel monitor {name} 127.0.0.1 {master_port} {quorum}\n"
            f"sentinel down-after-milliseconds {name} 1000\n"
            f"sentinel failover-timeout {name} 4000\n"
            f"sentinel parallel-syncs {name} 1\n")
        self.log = open(self.dir / f"sentinel-{self.port}.log", "a")
        self.proc = subprocess.Popen(["redis-sentinel", str(self.conf)], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                out = subprocess.run(["redis-cli", "-p", str(self.port), "PING"],
                                     capture_output=True, text=True, timeout=5)
                if out.stdout.strip() == "PONG":
                    return
            except (OSError, subprocess.TimeoutExpired):
                pass
            time.sleep(0.05)
        raise AssertionError(f"redis-sentinel on {self.port} did not start")

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def master_port(self, name="m"):
        out = subprocess.run(["redis-cli", "-p", str(self.port), "SENTINEL",
                              "get-master-addr-by-name", name],
                             capture_output=True, text=True, timeout=5).stdout.split()
        return int(out[1]) if len(out) == 2 else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.log.close()


def cluster_port():
    """A free port whose cluster bus port (port + 10000) is free too."""
    for _ in range(100):
        p = free_port()
        if p + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p + 10000))
            except OSError:
                continue
        return p
    raise AssertionError("no free port pair for a Redis Cluster node")


class RedisCluster:
    """A Redis Cluster of `masters` masters, each with `replicas` replicas (redis-server
    --cluster-enabled, joined by `redis-cli --cluster create`), node timeout 1 s so that a
    failover takes a few seconds."""

    def __init__(self, directory, masters=3, replicas=0):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.nodes = []
        for _ in range(masters * (1 + replicas)):
            port = cluster_port()
            node_dir = self.dir / str(port)
            self.nodes.append(RedisServer(node_dir, port=port, args=[
                "--cluster-enabled", "yes", "--cluster-config-file", str(node_dir / "nodes.conf"),
                "--cluster-node-timeout", "1000"]))
        out = subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
             "--cluster-replicas", str(replicas), "--cluster-yes"],
            capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        self.wait_ok()

    def wait_ok(self, timeout=30):
        """Until every node says the cluster is ok and every replica has synced (a replica
        that never synced its master cannot take over from it)."""
        deadline = time.monotonic() + timeout
        for n in self.nodes:
            while "cluster_state:ok" not in n.cli("CLUSTER", "INFO"):
                assert time.monotonic() < deadline, n.cli("CLUSTER", "INFO")
                time.sleep(0.1)
            while True:
                info = n.cli("INFO", "replication")
                if "role:master" in info or "master_link_status:up" in info:
                    break
                assert time.monotonic() < deadline, info
                time.sleep(0.1)

    @property
    def seeds(self):
        return ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def owner(self, key):
        """The node that serves `key`'s slot now (a master)."""
        live = [n for n in self.nodes if n.proc.poll() is None]
        slot = int(live[0].cli("CLUSTER", "KEYSLOT", key))
        for n in live:
            for line in n.cli("CLUSTER", "NODES").splitlines():
                f = line.split()
                if "myself" in f[2] and "master" in f[2]:
                    for r in f[8:]:
                        lo, _, hi = r.partition("-")
                        if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                            return n
        return None

    def stop(self):
        for n in self.nodes:
            n.stop()
