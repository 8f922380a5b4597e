"""The IoT lesson's examples against the agent, as written there (tests/js/lesson_device.mjs,
Node's `ws`): the device that authenticates, reports its status and takes a control command;
sendWithAck with the lesson's message format (msgid, qos, retain); the DataBatcher's batches
of readings; and its IIoT frame, a reading with no type."""
import asyncio
import json
import os
import subprocess

import pytest

from conftest import close_all, client, connect, recv_type, run, sub
from mqtt_async import Client

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "js", "lesson_device.mjs")


async def node(mode, agent):
    """Runs the lesson's code in `mode`; returns its process (JSON lines on stdout)."""
    return await asyncio.create_subprocess_exec(
        "node", SCRIPT, mode, f"ws://127.0.0.1:{agent.port}/ws",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)


async def lines_of(proc):
    out, _ = await asyncio.wait_for(proc.communicate(), 15)
    got = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    assert proc.returncode == 0, out.decode()
    return got


def test_the_device_reports_its_status_and_takes_a_control_command(agent):
    async def go():
        dash = await client(agent, "dashboard")
        await sub(dash, "devices/+/status", qos=0)
        device = await node("device", agent)
        # A device message is delivered as its own object: its type is its own.
        reports = [await recv_type(dash, "status", timeout=10) for _ in range(3)]
        for r in reports:  # the same object, with the agent's fields
            assert r["type"] == "status" and r["deviceId"] == "sensor-001"
            assert r["from"] == "sensor-001" and r["tag"] == "devices/sensor-001/status"
            assert "temp" in r["data"] and r["msgid"]
        await dash.send(json.dumps({"type": "control", "to": "sensor-001", "command": "reboot"}))
        got = await lines_of(device)
        assert got[0]["auth"]["status"] == "success"
        assert got[-1]["control"]["command"] == "reboot"
        assert got[-1]["control"]["from"] == "dashboard"
        await close_all()
    run(go())


def test_send_with_ack_resolves_with_the_lessons_message_format(agent):
    """A typed message with "qos": 1 is acknowledged like a publish, the ack carrying its
    msgid (sendWithAck resolves), and is delivered at QoS 1; "to" a client that does not
    exist is reported back (an error naming the msgid) instead of acknowledged; "retain"
    keeps it."""
    async def go():
        watcher = await client(agent, "watcher")
        await sub(watcher, "devices/device-001/#", qos=1)
        proc = await node("ack", agent)
        got = await lines_of(proc)
        ack, to_server, retained = got[0]["ack"], got[1]["to_server"], got[2]["retained"]
        assert ack["type"] == "ack" and ack["msgid"]
        assert to_server["type"] == "error" and to_server["code"] == "unknown_client"
        assert to_server["msgid"] and "'server'" in to_server["message"]
        assert retained["type"] == "ack"
        m = await recv_type(watcher, "event")
        # Delivered at QoS 1: the device's object with the delivery's qos and seq inside it.
        assert m["type"] == "event" and m["payload"] == {"door": "open"}
        assert m["qos"] == 1 and m["seq"] and m["msgid"] == ack["msgid"]
        assert m["ver"] == "1.0" and m["from"] == "device-001"  # "from" is the agent's to set
        await watcher.send(json.dumps({"type": "ack", "seq": m["seq"]}))
        later = await client(agent, "later")
        await sub(later, "devices/device-001/status", qos=0)
        kept = await recv_type(later, "status")
        assert kept["retained"] is True
        await close_all()
    run(go())


def test_the_data_batcher_sends_readings_the_agent_routes(agent):
    async def go():
        dash = await client(agent, "dash")
        await sub(dash, "devices/sensor-001/data", qos=0)
        proc = await node("batch", agent)
        got = await lines_of(proc)
        assert got[-1] == {"sent": 4} and not any("error_frame" in g for g in got), got
        readings = [await recv_type(dash, "data") for _ in range(4)]
        for n, r in enumerate(readings):  # a reading: a device message of type "data"
            assert r["type"] == "data" and r["deviceId"] == "sensor-001"
            assert r["data"] == {"temp": 21 + n} and r["from"] == "sensor-001"
            assert r["tag"] == "devices/sensor-001/data"
        await close_all()
    run(go())


IIOT = {"deviceId": "plc-101", "timestamp": 1634567890123,
        "values": [{"tag": "temperature", "value": 42.5, "unit": "°C"},
                   {"tag": "pressure", "value": 101.3, "unit": "kPa"}],
        "quality": "good"}


@pytest.mark.parametrize("setting", ["reading", "error"])
def test_the_iiot_frame_has_no_type(agent_factory, setting):
    agent = agent_factory(args=["--native.untyped_frames", setting])

    async def go():
        dash = await client(agent, "mes")
        await sub(dash, "devices/+/data", qos=0)
        gw = await client(agent, "gateway-1")
        await gw.send(json.dumps(IIOT))
        if setting == "reading":
            m = await recv_type(dash, "data")
            assert m["tag"] == "devices/gateway-1/data"
            assert m["values"] == IIOT["values"] and m["quality"] == "good"
            assert m["timestamp"] == IIOT["timestamp"]  # the device's own is kept
        else:
            e = await recv_type(gw, "error")
            assert e["code"] == "bad_request" and "type" in e["message"]
        await close_all()
    run(go())


def test_an_mqtt_client_gets_to_messages_only_through_its_subscriptions(agent):
    async def go():
        m = await Client.connect(agent.mqtt_port, "mqtt-dev", 5)
        ctl = await client(agent, "controller")
        # Sent "to" it, not subscribed: not delivered (nor is it unknown: no error either).
        await ctl.send(json.dumps({"type": "control", "to": "mqtt-dev", "cmd": 1, "qos": 1}))
        assert (await recv_type(ctl, "ack"))["msgid"]
        try:
            kind, _ = await asyncio.wait_for(m.read(), 0.3)
            raise AssertionError(f"delivered without a subscription: {kind:#x}")
        except asyncio.TimeoutError:
            pass
        m.subscribe(["devices/mqtt-dev/control"], qos=0)
        assert (await m.read())[0] == 0x90  # SUBACK
        await ctl.send(json.dumps({"type": "control", "to": "mqtt-dev", "cmd": 2}))
        kind, body = await asyncio.wait_for(m.read(), 5)
        topic, _, payload = m.parse_publish(kind, body)
        assert topic == "devices/mqtt-dev/control" and json.loads(payload)["cmd"] == 2
        m.disconnect()
        await m.close()
        await close_all()
    run(go())
