"""JSON Web Tokens, issued by an independent implementation (Debian's python3-jwt, PyJWT, on
python3-cryptography): a valid token per algorithm accepted over the native protocol and
MQTT; each forgery and each bad claim refused with its documented reason, audited, and the
agent serving a well-behaved client afterwards."""
import asyncio
import base64
import json
import re
import signal
import subprocess
import time

import jwt as pyjwt
import paho.mqtt.client as paho
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from conftest import closed_with, connect, publish, recv_type, run, subscribe

HMAC_SECRET = "a-secret-of-at-least-thirty-two-bytes!!"


class Keys:
    """One key pair per algorithm family, in a JWKS file and PEM files."""

    def __init__(self, directory):
        self.dir = directory
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rsa_next = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.p256 = ec.generate_private_key(ec.SECP256R1())
        self.p384 = ec.generate_private_key(ec.SECP384R1())
        self.ed = ed25519.Ed25519PrivateKey.generate()
        self.write_jwks([self.jwk(RSAAlgorithm, self.rsa, "rsa-1", "RS256"),
                         self.jwk(RSAAlgorithm, self.rsa, "rsa-ps", "PS256"),
                         self.jwk(ECAlgorithm, self.p256, "ec-256", "ES256"),
                         self.jwk(ECAlgorithm, self.p384, "ec-384", "ES384"),
                         self.jwk(OKPAlgorithm, self.ed, "ed-1", "EdDSA")])
        (directory / "rsa.pem").write_bytes(self.rsa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

    @staticmethod
    def jwk(alg_class, key, kid, alg):
        d = json.loads(alg_class.to_jwk(key.public_key()))
        d.update({"kid": kid, "alg": alg, "use": "sig"})
        return d

    def write_jwks(self, keys):
        tmp = self.dir / "jwks.json.new"
        tmp.write_text(json.dumps({"keys": keys}))
        tmp.replace(self.dir / "jwks.json")

    def rsa_public_pem(self):
        return (self.dir / "rsa.pem").read_bytes()


@pytest.fixture
def keys(tmp_path):
    return Keys(tmp_path)


def jwt_config(keys, extra=""):
    return f"""
[auth.jwt]
keys = "{keys.dir / 'jwks.json'}"
issuer = "https://issuer.example"
audience = "wsagent"
client_id_claim = "sub"
roles_claim = "roles"
{extra}

[[auth.jwt.key]]
secret = "{HMAC_SECRET}"
alg = "HS256"
kid = "hmac-1"

[[auth.jwt.key]]
file = "{keys.dir / 'rsa.pem'}"
alg = "RS512"
kid = "rsa-512"

[auth.roles.device]
publish = ["devices/%c/#"]
subscribe = ["devices/%c/control"]

[auth.roles.dashboard]
subscribe = ["devices/#"]
"""


def claims(sub="dev-1", **extra):
    now = int(time.time())
    c = {"sub": sub, "iss": "https://issuer.example", "aud": "wsagent", "iat": now,
         "exp": now + 600, "roles": ["device"]}
    c.update(extra)
    return {k: v for k, v in c.items() if v is not None}


def token_for(keys, alg, kid=None, **claim_args):
    key = {"HS256": HMAC_SECRET, "RS256": keys.rsa, "PS256": keys.rsa, "RS512": keys.rsa,
           "ES256": keys.p256, "ES384": keys.p384, "EdDSA": keys.ed}[alg]
    kid = kid or {"HS256": "hmac-1", "RS256": "rsa-1", "PS256": "rsa-ps", "RS512": "rsa-512",
                  "ES256": "ec-256", "ES384": "ec-384", "EdDSA": "ed-1"}[alg]
    return pyjwt.encode(claims(**claim_args), key, algorithm=alg, headers={"kid": kid})


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def tampered(token):
    """`token` with its payload replaced (the signature is the original one)."""
    header, _, signature = token.split(".")
    return header + "." + b64(json.dumps(claims(sub="admin")).encode()) + "." + signature


def forge(header, payload, signature=b""):
    return ".".join([b64(json.dumps(header).encode()), b64(json.dumps(payload).encode()),
                     b64(signature)])


async def authenticated(agent, token):
    ws = await connect(agent)
    await ws.send(json.dumps({"type": "auth", "token": token}))
    return ws, await recv_type(ws, "auth_response")


async def refused(agent, token):
    ws = await connect(agent)
    await ws.send(json.dumps({"type": "auth", "token": token}))
    code, reason = await closed_with(ws)
    return code


@pytest.mark.parametrize("alg", ["HS256", "RS256", "RS512", "PS256", "ES256", "ES384", "EdDSA"])
def test_a_valid_token_of_each_algorithm_is_accepted(agent_factory, keys, alg):
    a = agent_factory(jwt_config(keys))

    async def go():
        ws, r = await authenticated(a, token_for(keys, alg, sub=f"dev-{alg}"))
        assert r["clientId"] == f"dev-{alg}", r
        # Its rights are its roles': its own tags only.
        await publish(ws, f"devices/dev-{alg}/temp", 1, qos=1, msgid="m1")
        assert (await recv_type(ws, "ack"))["msgid"] == "m1"
        await publish(ws, "devices/other/temp", 1, qos=1, msgid="m2")
        err = await recv_type(ws, "error")
        assert err["code"] == "forbidden", err
        await ws.close()

    run(go())


def test_rights_from_an_inline_acl_claim(agent_factory, keys):
    a = agent_factory(jwt_config(keys))

    async def go():
        token = token_for(keys, "ES256", sub="gw-1", roles=None,
                          acl={"publish": ["site/%c/#"], "subscribe": ["site/#"],
                               "deny_subscribe": ["site/secret/#"]})
        ws, r = await authenticated(a, token)
        assert r["clientId"] == "gw-1"
        await subscribe(ws, "site/#")
        await publish(ws, "site/gw-1/x", {"n": 1})
        assert (await recv_type(ws, "message"))["payload"] == {"n": 1}
        await publish(ws, "site/other/x", 1, qos=1, msgid="no")
        assert (await recv_type(ws, "error"))["code"] == "forbidden"
        await ws.close()

    run(go())


def test_forgeries_and_bad_claims_are_refused_and_audited(agent_factory, keys):
    # Twelve refusals in a row from one address: past limits.max_auth_failures (test_abuse.py
    # tests that); here every refusal's own reason is what is looked at.
    a = agent_factory(jwt_config(keys), args=["--limits.max_auth_failures", "0"])
    now = int(time.time())
    rsa_pem = keys.rsa_public_pem()
    import hmac as hmac_mod
    import hashlib

    def hs256_with_rsa_public_key():
        # The classic confusion: the RSA public key used as an HMAC secret, kid of the RSA key.
        header = {"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}
        signing = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims()).encode())
        mac = hmac_mod.new(rsa_pem, signing.encode(), hashlib.sha256).digest()
        return signing + "." + b64(mac)

    cases = {
        "alg none": (forge({"alg": "none", "typ": "JWT"}, claims()),
                     "JWT: alg none is never accepted"),
        "HS256 with the RSA public key": (hs256_with_rsa_public_key(),
                                          "JWT: alg HS256 is not the key's (RS256)"),
        "all-zero ECDSA signature": (forge({"alg": "ES256", "kid": "ec-256"}, claims(),
                                           bytes(64)), "JWT: bad signature"),
        "unknown kid": (token_for(keys, "ES256", kid="nobody"), 'JWT: unknown kid "nobody"'),
        "expired": (token_for(keys, "ES256", exp=now - 3600, iat=now - 7200), "JWT: expired"),
        "nbf in the future": (token_for(keys, "ES256", nbf=now + 3600),
                              "JWT: not valid yet (nbf)"),
        "wrong iss": (token_for(keys, "ES256", iss="https://evil.example"), "JWT: wrong iss"),
        "wrong aud": (token_for(keys, "ES256", aud="someone-else"), "JWT: wrong aud"),
        "no exp": (token_for(keys, "ES256", exp=None), "JWT: no exp"),
        "bad base64": ("eyJhbGciOiJFUzI1NiJ9.e30.***", "JWT: bad base64url"),
        "oversized header": (forge({"alg": "ES256", "pad": "x" * 2000}, claims()),
                             "JWT: header too large"),
        "tampered payload": (tampered(token_for(keys, "RS256")), "JWT: bad signature"),
    }

    async def go():
        for name, (token, reason) in cases.items():
            assert await refused(a, token) == 4403, name
            # The audit line is JSON: the reason as a JSON string.
            a.wait_log(r'"audit":"auth_failure".*"detail":' + re.escape(json.dumps(reason)))
        # And a good token still works.
        ws, r = await authenticated(a, token_for(keys, "EdDSA", sub="dev-ok"))
        assert r["clientId"] == "dev-ok"
        await ws.close()

    run(go())


def test_mqtt_clients_present_a_jwt_as_password(agent_factory, keys):
    a = agent_factory(jwt_config(keys))
    token = token_for(keys, "RS256", sub="sensor-9")
    ok = subprocess.run(["mosquitto_pub", "-p", str(a.mqtt_port), "-i", "sensor-9", "-u", "jwt",
                         "-P", token, "-t", "devices/sensor-9/temp", "-m", "1"],
                        capture_output=True, text=True, timeout=10)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(["mosquitto_pub", "-p", str(a.mqtt_port), "-i", "sensor-9", "-u", "jwt",
                          "-P", token[:-4] + "AAAA", "-t", "devices/sensor-9/temp", "-m", "1"],
                         capture_output=True, text=True, timeout=10)
    assert bad.returncode != 0
    assert "bad user name or password" in bad.stderr.lower(), bad.stderr


def test_jwks_rotation_on_sighup(agent_factory, keys):
    a = agent_factory(jwt_config(keys))

    async def go():
        new = pyjwt.encode(claims(sub="dev-next"), keys.rsa_next, algorithm="RS256",
                           headers={"kid": "rsa-2"})
        assert await refused(a, new) == 4403
        keys.write_jwks([Keys.jwk(RSAAlgorithm, keys.rsa_next, "rsa-2", "RS256")])
        a.signal(signal.SIGHUP)
        a.wait_log(r"reload: .*JWT keys loaded again")
        ws, r = await authenticated(a, new)
        assert r["clientId"] == "dev-next"
        await ws.close()
        # The old key is gone with the old set.
        assert await refused(a, token_for(keys, "RS256")) == 4403

    run(go())


def test_static_tokens_still_work_beside_jwt(agent_factory, keys):
    a = agent_factory(jwt_config(keys) + """
[[auth.tokens]]
token = "plain-static-token"
identity = "static-1"
roles = ["device"]
""")

    async def go():
        ws, r = await authenticated(a, "plain-static-token")
        assert r["clientId"] == "static-1"
        await ws.close()
        assert await refused(a, "not-a-token") == 4403

    run(go())


def test_a_key_that_cannot_be_used_stops_the_agent_with_its_line(tmp_path, keys):
    from conftest import serve_file
    text = f"""
[auth.jwt]
keys = "{keys.dir / 'jwks.json'}"

[[auth.jwt.key]]
secret = "short"
alg = "HS256"
"""
    r = serve_file(tmp_path, text)
    assert r.returncode == 1
    assert "bad.toml:5: auth.jwt.key: HS256 needs a secret of at least 32 bytes" in r.stderr, \
        r.stderr
    r = serve_file(tmp_path, text, "--check-config")
    assert r.returncode == 2
    assert "bad.toml:5: auth.jwt.key: HS256 needs a secret of at least 32 bytes" in r.stderr, \
        r.stderr
