"""MQTT.js (from npm, tests/js) over ws://…/mqtt against a native client, both ways, in MQTT
3.1.1 and 5.0."""
import asyncio
import json
import os

import pytest

from conftest import client, close_all, publish, recv_type, run, sub

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "js", "mqtt_client.mjs")


@pytest.mark.parametrize("version", [4, 5])
def test_mqttjs_over_websocket_and_a_native_client(agent, version):
    async def go():
        ws = await client(agent, "dash")
        await sub(ws, "js/from-js", qos=1)
        js = await asyncio.create_subprocess_exec(
            "node", SCRIPT, f"ws://127.0.0.1:{agent.port}/mqtt", f"mqttjs-{version}",
            str(version), stdout=asyncio.subprocess.PIPE)
        line = json.loads(await asyncio.wait_for(js.stdout.readline(), 10))
        assert line == {"ready": True}, line
        # MQTT.js -> native: its JSON payload arrives as JSON, at QoS 1; in 5.0 with its user
        # properties and content type, the second one sent with a topic alias alone.
        for n in (1, 2):
            m = await recv_type(ws, "message")
            assert m["payload"] == {"from": "mqtt.js", "n": n} and m["qos"] == 1
            assert m["tag"] == "js/from-js"
            assert m["from"] == f"mqttjs-{version}"
            if version == 5:
                assert m["user_properties"] == [["origin", "mqtt.js"]]
                assert m["content_type"] == "application/json"
            else:
                assert "user_properties" not in m
            await ws.send(json.dumps({"type": "ack", "seq": m["seq"]}))
        # native -> MQTT.js: compact JSON text, at QoS 1 (acknowledged by MQTT.js); in 5.0 the
        # agent gives the topic an alias and the second message carries the alias alone
        # (MQTT.js resolves it: the topic is still right).
        for n in (1, 2):
            await publish(ws, "js/to-js", {"to": "js", "n": n}, qos=1,
                          user_properties=[["origin", "native"]])
            await recv_type(ws, "ack")
        for n in (1, 2):
            got = json.loads(await asyncio.wait_for(js.stdout.readline(), 10))
            assert got["topic"] == "js/to-js", got
            assert got["payload"] == '{"to":"js","n":%d}' % n and got["qos"] == 1, got
            if version == 5:
                assert got["userProperties"] == {"origin": "native"}, got
                assert got["alias"] == 1, got
        assert await asyncio.wait_for(js.wait(), 10) == 0
        await close_all()
    run(go())
