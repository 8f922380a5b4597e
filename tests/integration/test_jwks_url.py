"""Keys from a JWKS https URL (auth.jwt.jwks_url), served by Python's own HTTPS server with a
certificate the test's CA (openssl) signed: fetched at start, re-fetched when a token names
an unknown kid (rate-limited: made-up kids cannot make the agent hammer the issuer), the last
good set kept when the issuer fails, and an issuer whose certificate is not trusted never
believed."""
import http.server
import json
import ssl
import threading
import time

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from test_jwt import authenticated, refused
from conftest import run
from tls_certs import Certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return Certs(tmp_path_factory.mktemp("certs"))


class Issuer:
    """An HTTPS server answering /jwks.json with what `keys` holds (or `status`)."""

    def __init__(self, certs):
        self.keys = {}  # kid -> private key
        self.status = 200
        self.hits = 0
        issuer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                issuer.hits += 1
                if self.path != "/jwks.json" or issuer.status != 200:
                    self.send_response(404 if self.path != "/jwks.json" else issuer.status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = json.dumps({"keys": [
                    dict(json.loads(ECAlgorithm.to_jwk(k.public_key())), kid=kid, alg="ES256",
                         use="sig") for kid, k in issuer.keys.items()]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certs.path("server.pem"), certs.path("server.key"))
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def add_key(self, kid):
        self.keys[kid] = ec.generate_private_key(ec.SECP256R1())

    def token(self, kid, sub="dev-u"):
        now = int(time.time())
        return pyjwt.encode({"sub": sub, "iat": now, "exp": now + 600},
                            self.keys[kid] if kid in self.keys else
                            ec.generate_private_key(ec.SECP256R1()),
                            algorithm="ES256", headers={"kid": kid})

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def issuer(certs):
    i = Issuer(certs)
    yield i
    i.close()


def config(issuer, certs, ca=True):
    return f"""
[auth.jwt]
jwks_url = "https://localhost:{issuer.port}/jwks.json"
{f'jwks_ca = "{certs.path("ca.pem")}"' if ca else ""}
jwks_refresh_s = 3600
jwks_refetch_min_s = 1
"""


def test_keys_are_fetched_rotated_on_an_unknown_kid_and_kept_when_the_issuer_fails(
        agent_factory, issuer, certs):
    issuer.add_key("k1")
    # Many refusals from one address on purpose: not limited here (test_abuse.py).
    a = agent_factory(config(issuer, certs), args=["--limits.max_auth_failures", "0"])
    a.wait_log(rf"auth.jwt.jwks_url https://localhost:{issuer.port}/jwks.json: 1 key\(s\)")
    assert issuer.hits == 1

    async def go():
        ws, r = await authenticated(a, issuer.token("k1", sub="dev-1"))
        assert r["clientId"] == "dev-1"
        await ws.close()
        # The issuer rotates to k2: the first token of k2 is refused and sets off a fetch
        # (within jwks_refetch_min_s of the last one: once that has passed)...
        issuer.add_key("k2")
        del issuer.keys["k1"]
        t2 = issuer.token("k2", sub="dev-2")
        assert await refused(a, t2) == 4403
        a.wait_log(r'"detail":"JWT: unknown kid \\"k2\\""')
        a.wait_log(r"jwks_url .*: 1 key\(s\)", timeout=5)
        # ...after which it is accepted, and the old key is gone.
        deadline = time.monotonic() + 5
        while True:
            try:
                ws, r = await authenticated(a, t2)
                break
            except Exception:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert r["clientId"] == "dev-2"
        await ws.close()
        assert await refused(a, issuer.token("k1")) == 4403  # k1 is no longer served
        # Made-up kids in a burst fetch at most once per jwks_refetch_min_s.
        before = issuer.hits
        started = time.monotonic()
        for n in range(15):
            assert await refused(a, issuer.token(f"made-up-{n}")) == 4403
        elapsed = time.monotonic() - started
        time.sleep(1.2)
        assert issuer.hits - before <= int(elapsed) + 2, (issuer.hits - before, elapsed)
        # The issuer fails: the last good set stays in use.
        issuer.status = 500
        assert await refused(a, issuer.token("nobody")) == 4403
        a.wait_log(r"jwks_url .*: HTTP 500; the last good key set stays in use \(1 key\(s\)\)",
                   timeout=5)
        ws, r = await authenticated(a, t2)
        assert r["clientId"] == "dev-2"
        await ws.close()

    run(go())


def test_an_issuer_whose_certificate_is_not_trusted_is_never_believed(agent_factory, issuer,
                                                                       certs):
    issuer.add_key("k1")
    # No jwks_ca: the system's trust store, which does not hold the test CA.
    a = agent_factory(config(issuer, certs, ca=False))
    a.wait_log(r"auth.jwt.jwks_url .*: TLS handshake: certificate verify failed")

    async def go():
        assert await refused(a, issuer.token("k1")) == 4403
        a.wait_log(r'"detail":"JWT: unknown kid \\"k1\\""')

    run(go())


def test_a_plain_http_url_is_a_configuration_error(tmp_path):
    from conftest import serve_file
    r = serve_file(tmp_path, '[auth.jwt]\njwks_url = "http://issuer.example/jwks.json"\n')
    assert r.returncode == 2
    assert "bad.toml:2: auth.jwt.jwks_url: must be an https:// URL" in r.stderr, r.stderr
