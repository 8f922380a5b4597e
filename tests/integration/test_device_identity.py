"""Device identity in typed messages: a deviceId that names another client than the sender is
refused (forbidden, audited) so that a dashboard keying on it cannot be spoofed, unless the
sender may publish on that device's tags (a gateway, as the IoT lesson's OPC UA gateway that
sends the IIoT frame for its PLCs); auth_response says which client id the agent gave."""
import json

from conftest import publish, recv_type, run, subscribe
from test_lesson import IIOT
from conftest import connect

TOKENS = """
[native]
untyped_frames = "reading"

[[auth.tokens]]
token = "sensor-token"
identity = "sensor-001"
roles = ["device"]

[[auth.tokens]]
token = "gateway-token"
identity = "opcua-gw"
roles = ["gateway"]

[[auth.tokens]]
token = "dash-token"
identity = "dash"
roles = ["dashboard"]

[auth.roles.device]
publish = ["devices/%c/#"]
subscribe = ["devices/%c/control"]

[auth.roles.gateway]
publish = ["devices/opcua-gw/#", "devices/plc-101/#", "devices/plc-102/#"]

[auth.roles.dashboard]
subscribe = ["devices/#"]
"""


async def authed(agent, token, device_id=None):
    ws = await connect(agent)
    frame = {"type": "auth", "token": token}
    if device_id:
        frame["deviceId"] = device_id
    await ws.send(json.dumps(frame))
    return ws, await recv_type(ws, "auth_response")


def test_a_device_cannot_speak_as_another_and_a_gateway_may_for_its_devices(agent_factory):
    a = agent_factory(TOKENS)

    async def go():
        dash, _ = await authed(a, "dash-token")
        await subscribe(dash, "devices/#")
        # The token fixes the id: the one asked for is not the one given, and the answer says.
        sensor, r = await authed(a, "sensor-token", device_id="sensor-999")
        assert r["clientId"] == "sensor-001"
        # Its own deviceId (the lesson's device code) passes...
        await sensor.send(json.dumps({"type": "status", "deviceId": "sensor-001",
                                      "data": {"t": 21}}))
        m = await recv_type(dash, "status")
        assert (m["deviceId"], m["from"], m["tag"]) == ("sensor-001", "sensor-001",
                                                        "devices/sensor-001/status")
        # ...another's is refused, and nothing reaches the dashboard.
        await sensor.send(json.dumps({"type": "status", "id": "s2", "deviceId": "sensor-002",
                                      "data": {"t": -40}}))
        err = await recv_type(sensor, "error")
        assert err["code"] == "forbidden" and err["id"] == "s2", err
        assert "deviceId 'sensor-002' is not this client ('sensor-001')" in err["message"]
        a.wait_log(r'"audit":"forbidden","clientId":"sensor-001".*"detail":"deviceId sensor-002"')
        # A reading (a frame without a type) is held to the same rule.
        await sensor.send(json.dumps({"deviceId": "sensor-002", "values": [1]}))
        assert (await recv_type(sensor, "error"))["code"] == "forbidden"
        # The gateway may name its PLCs (its role publishes on devices/plc-101/#), not others.
        gw, _ = await authed(a, "gateway-token")
        await gw.send(json.dumps(IIOT))
        m = await recv_type(dash, "data")
        assert m["deviceId"] == "plc-101" and m["from"] == "opcua-gw", m
        await gw.send(json.dumps({**IIOT, "deviceId": "sensor-001"}))
        assert (await recv_type(gw, "error"))["code"] == "forbidden"
        await gw.send(json.dumps({**IIOT, "deviceId": "plc/../x"}))
        assert (await recv_type(gw, "error"))["code"] == "forbidden"
        # And the agent goes on: the next message the dashboard gets is the sensor's own.
        await sensor.send(json.dumps({"type": "status", "deviceId": "sensor-001", "data": 2}))
        m = await recv_type(dash, "status")
        assert m["deviceId"] == "sensor-001" and m["data"] == 2
        for ws in (dash, sensor, gw):
            await ws.close()

    run(go())
