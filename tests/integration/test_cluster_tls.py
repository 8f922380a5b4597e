"""TLS to Redis (docs/cluster.md, "TLS to Redis"): a real redis-server that listens with TLS
only, certificates made by the `openssl` command; nodes on rediss:// with the CA checked,
client certificates when Redis asks for them, and each way it can go wrong refused and
logged while the node keeps serving its own clients."""

import subprocess

import pytest

from conftest import BIN, client, close_all, publish, recv_type, run, subscribe
from redis_procs import RedisServer
from test_cluster import FAST, ready, wait_filters
from tls_certs import Certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    c = Certs(tmp_path_factory.mktemp("certs"))
    c._sign("elsewhere", "redis.example", "ca", "subjectAltName=DNS:redis.example\n"
            "extendedKeyUsage=serverAuth\n")
    return c


def tls_redis(tmp_path, certs, clients_need_certs=False, server="server"):
    return RedisServer(tmp_path / "redis", args=["--tls-auth-clients",
                                                 "yes" if clients_need_certs else "no"],
                       tls={"cert": certs.path(f"{server}.pem"),
                            "key": certs.path(f"{server}.key"), "ca": certs.path("ca.pem"),
                            "client_cert": certs.path("client.pem"),
                            "client_key": certs.path("client.key")})


def node(agent_factory, url, name, *extra):
    return agent_factory(name=name, args=["--store.kind", "memory", "--cluster.redis", url,
                                          "--cluster.node_id", name, *FAST, *extra])


def test_nodes_share_a_redis_that_speaks_only_tls(agent_factory, tmp_path, certs):
    r = tls_redis(tmp_path, certs)
    try:
        ca = ["--cluster.tls_ca_file", certs.path("ca.pem")]
        a = node(agent_factory, f"rediss://localhost:{r.port}", "t0", *ca)
        b = node(agent_factory, f"rediss://127.0.0.1:{r.port}", "t1", *ca)  # by address too
        for x in (a, b):
            x.wait_log(r"joined through Redis")
        assert "over TLS" in a.log()

        async def go():
            s = await client(b, "far")
            await subscribe(s, "secure/#", qos=1)
            wait_filters(a, 1)
            p = await client(a, "near")
            await publish(p, "secure/x", "hello", qos=1, msgid="m1")
            assert (await recv_type(p, "ack"))["msgid"] == "m1"
            assert (await recv_type(s, "message"))["payload"] == "hello"
            await close_all()
        run(go())
        # Redis has no plain port: the nodes' connections are TLS ones.
        names = r.cli("CLIENT", "LIST")
        assert "wsagent:t0:cmd" in names and "wsagent:t1:sub" in names
    finally:
        r.stop()


def test_a_client_certificate_when_redis_asks_for_one(agent_factory, tmp_path, certs):
    r = tls_redis(tmp_path, certs, clients_need_certs=True)
    try:
        url = f"rediss://localhost:{r.port}"
        ca = ["--cluster.tls_ca_file", certs.path("ca.pem")]
        bare = node(agent_factory, url, "bare", *ca)
        with_cert = node(agent_factory, url, "cert", *ca, "--cluster.tls_cert_file",
                         certs.path("client.pem"), "--cluster.tls_key_file",
                         certs.path("client.key"))
        with_cert.wait_log(r"joined through Redis")
        bare.wait_log(r"cluster: Redis localhost:\d+: .*(closed|alert|certificate|TLS)")
        assert ready(bare)[0] == 503 and ready(with_cert)[0] == 200
        assert "joined" not in bare.log()

        async def go():  # the node without Redis still serves its own clients
            s = await client(bare, "local-sub")
            await subscribe(s, "here/#")
            p = await client(bare, "local-pub")
            await publish(p, "here/x", 1)
            assert (await recv_type(s, "message"))["payload"] == 1
            await close_all()
        run(go())
    finally:
        r.stop()


@pytest.mark.parametrize("case", ["other CA", "wrong host"])
def test_a_certificate_that_does_not_check_out_is_refused(agent_factory, tmp_path, certs, case):
    server = "elsewhere" if case == "wrong host" else "server"
    r = tls_redis(tmp_path, certs, server=server)
    try:
        ca = certs.path("other-ca.pem" if case == "other CA" else "ca.pem")
        a = node(agent_factory, f"rediss://localhost:{r.port}", "v0", "--cluster.tls_ca_file", ca)
        a.wait_log(r"TLS with localhost:\d+: certificate verify failed")
        assert ready(a)[0] == 503
        assert "joined" not in a.log()
    finally:
        r.stop()


def test_tls_files_that_cannot_be_read_are_configuration_errors(tmp_path, certs):
    for flags, key in ((["--cluster.tls_ca_file", str(tmp_path / "missing.pem")],
                        "cluster.tls_ca_file"),
                       (["--cluster.tls_cert_file", certs.path("client.pem")],
                        "cluster.tls_key_file")):
        r = subprocess.run([BIN, "serve", "--listen", "127.0.0.1:0", "--cluster.redis",
                            "rediss://localhost:1", *flags], capture_output=True, text=True,
                           timeout=10)
        assert r.returncode == 2, r.stdout + r.stderr
        assert key in r.stdout + r.stderr
    # A key file that is not a key: read at start-up, the agent says which and stops.
    bad = tmp_path / "bad.key"
    bad.write_text("not a key\n")
    r = subprocess.run([BIN, "serve", "--listen", "127.0.0.1:0", "--mqtt.listen", "",
                        "--store.kind", "memory", "--cluster.redis", "rediss://localhost:1",
                        "--cluster.node_id", "x", "--cluster.tls_cert_file",
                        certs.path("client.pem"), "--cluster.tls_key_file", str(bad)],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "cannot load the client key" in r.stdout + r.stderr
