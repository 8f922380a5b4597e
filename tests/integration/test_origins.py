"""WebSocket upgrades checked against server.allowed_origins (cross-site WebSocket
hijacking): by default the agent's own host and loopback pages may connect, a page of any
other site gets HTTP 403 and an audit line, and clients without an Origin (not browsers) are
unaffected. Python websockets sends the Origin it is given; Debian's Chromium sends a real
page's."""
import json
import os
import subprocess

import pytest
import websockets

from conftest import publish, recv_type, run, serve_file, subscribe


async def upgrade(agent, origin=None, path="/ws"):
    """The upgrade's outcome: 101 (the connection, closed) or the refusal's status."""
    kw = {"origin": origin} if origin else {}
    try:
        ws = await websockets.connect(f"ws://127.0.0.1:{agent.port}{path}", open_timeout=5,
                                      subprotocols=["mqtt"] if path == "/mqtt" else None, **kw)
    except websockets.InvalidStatusCode as e:
        return e.status_code
    await ws.close()
    return 101


def test_by_default_the_same_host_and_loopback_pages_only(agent):
    async def go():
        assert await upgrade(agent) == 101  # no Origin: not a browser
        assert await upgrade(agent, f"http://127.0.0.1:{agent.port}") == 101  # its own page
        assert await upgrade(agent, "http://localhost:5173") == 101  # a dev server here
        assert await upgrade(agent, "https://evil.example") == 403
        assert await upgrade(agent, "https://evil.example", "/mqtt") == 403
        assert await upgrade(agent, "null") == 403
        agent.wait_log(r'"audit":"forbidden".*"detail":"WebSocket upgrade from origin '
                       r'https://evil.example to /ws refused \(server.allowed_origins\)"')
        # The agent goes on serving.
        ws = await websockets.connect(f"ws://127.0.0.1:{agent.port}/ws", open_timeout=5)
        await ws.send(json.dumps({"type": "auth"}))
        await recv_type(ws, "auth_response")
        await subscribe(ws, "o/#")
        await publish(ws, "o/1", 1)
        assert (await recv_type(ws, "message"))["payload"] == 1
        await ws.close()

    run(go())


def test_a_configured_list_replaces_the_default(agent_factory):
    a = agent_factory('[server]\nlisten = "127.0.0.1:0"\n'
                      'allowed_origins = ["https://dash.example.com", "https://*.plant.example"]\n')

    async def go():
        assert await upgrade(a, "https://dash.example.com") == 101
        assert await upgrade(a, "https://line3.plant.example") == 101
        assert await upgrade(a, "https://plant.example") == 403
        assert await upgrade(a, "http://localhost:5173") == 403  # loopback not named
        assert await upgrade(a) == 101

    run(go())


def test_a_bad_entry_stops_the_agent_with_its_line(tmp_path):
    r = serve_file(tmp_path, '[server]\nallowed_origins = ["dash.example.com"]\n')
    assert r.returncode == 2  # a configuration error
    assert "bad.toml:2: server.allowed_origins: 'dash.example.com' is not an origin" in r.stderr, \
        r.stderr


@pytest.mark.parametrize("page,opened", [("https://evil.example", False),
                                         ("http://localhost:{port}", True)])
def test_a_page_in_chromium(agent, page, opened):
    """A page of another site cannot open a WebSocket to the agent; the agent's own can."""
    script = os.path.join(os.path.dirname(__file__), "..", "js", "browser_origin.mjs")
    r = subprocess.run(["node", script, page.format(port=agent.port),
                        f"ws://localhost:{agent.port}/ws"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"opened": opened}
    if not opened:
        agent.wait_log(r'"audit":"forbidden".*origin https://evil.example to /ws refused')
