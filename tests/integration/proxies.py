"""Real load balancers for the tests: Debian's nginx and HAProxy, each started in the
foreground on a free loopback port with its files in a temporary directory, stopped by the
test. The configurations are deploy/'s (or the IoT lesson's), with the example addresses
replaced by the test's agents."""

import os
import re
import socket
import subprocess
import time

DEPLOY = os.path.join(os.path.dirname(__file__), "..", "..", "deploy")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, timeout=10.0, log=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = log() if log else proc.stdout.read()
            raise AssertionError(f"{what} exited with {proc.returncode}: {out}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{what} does not listen on {port}")


def deploy_file(*parts):
    with open(os.path.join(DEPLOY, *parts)) as f:
        return f.read()


def replace_servers(text, servers, pattern):
    """Replaces the lines matching `pattern` (each one of the file's example servers), in
    order, by `servers`; asserts the file has exactly as many."""
    lines = text.splitlines()
    at = [i for i, line in enumerate(lines) if re.match(pattern, line)]
    assert len(at) == len(servers), f"{len(at)} server lines for {len(servers)} agents"
    for i, s in zip(at, servers):
        lines[i] = s
    return "\n".join(lines) + "\n"


class Nginx:
    """nginx with `site` (http-level directives: upstreams and servers) as its whole http
    block, and `listen 80` replaced by a free port (self.port)."""

    def __init__(self, tmp_path, site):
        self.dir = tmp_path / "nginx"
        self.dir.mkdir()
        (self.dir / "logs").mkdir()
        self.port = free_port()
        assert re.search(r"^\s*listen 80;", site, re.M), "the site listens on port 80"
        site = re.sub(r"^(\s*)listen 80;", rf"\1listen 127.0.0.1:{self.port};", site, flags=re.M)
        (self.dir / "site.conf").write_text(site)
        user = "user root;\n" if os.geteuid() == 0 else ""  # the workers read nothing else
        (self.dir / "nginx.conf").write_text(
            f"{user}worker_processes 1;\npid {self.dir}/nginx.pid;\n"
            f"error_log {self.dir}/logs/error.log info;\n"
            "events { worker_connections 1024; }\n"
            f"http {{ access_log off; include {self.dir}/site.conf; }}\n")
        self.proc = subprocess.Popen(
            ["nginx", "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"),
             "-g", "daemon off;"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_port(self.port, self.proc, "nginx")

    def log(self):
        return (self.dir / "logs" / "error.log").read_text()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class HAProxy:
    """HAProxy with `config`; each `bind :N` line gets a free loopback port, in order
    (self.ports)."""

    def __init__(self, tmp_path, config):
        self.dir = tmp_path / "haproxy"
        self.dir.mkdir()
        self.ports = []

        def bind(m):
            self.ports.append(free_port())
            return f"{m.group(1)}bind 127.0.0.1:{self.ports[-1]}"
        config = re.sub(r"^(\s*)bind :\d+", bind, config, flags=re.M)
        # The file's global maxconn needs twice as many descriptors as this machine allows
        # a process (a service manager raises the limit; the tests cannot).
        config = re.sub(r"^(\s*)maxconn \d+", r"\1maxconn 4000", config, count=1, flags=re.M)
        path = self.dir / "haproxy.cfg"
        path.write_text(config)
        check = subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True,
                               text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        self.log_path = self.dir / "haproxy.log"
        with open(self.log_path, "w") as out:  # its log goes to stdout (log stdout)
            self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(path)], stdout=out,
                                         stderr=subprocess.STDOUT, text=True)
        for p in self.ports:
            wait_port(p, self.proc, "haproxy", log=self.log)

    def log(self):
        return self.log_path.read_text()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
