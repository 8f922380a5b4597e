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
        # MQTT.js -> native: its JSON payload arrives as JSON, at QoS 1.
        m = await recv_type(ws, "message")
        assert m["payload"] == {"from": "mqtt.js"} and m["qos"] == 1
        assert m["from"] == f"mqttjs-{version}"
        await ws.send(json.dumps({"type": "ack", "seq": m["seq"]}))
        # native -> MQTT.js: compact JSON text, at QoS 1 (acknowledged by MQTT.js).
        await publish(ws, "js/to-js", {"to": "js"}, qos=1)
        await recv_type(ws, "ack")
        got = json.loads(await asyncio.wait_for(js.stdout.readline(), 10))
        assert got == {"topic": "js/to-js", "payload": '{"to":"js"}', "qos": 1}, got
        assert await asyncio.wait_for(js.wait(), 10) == 0
        await close_all()
    run(go())
