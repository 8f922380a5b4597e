// MQTT.js over WebSocket, driven by tests/integration/test_mqttjs.py.
// Usage: node mqtt_client.mjs URL CLIENT_ID PROTOCOL_VERSION
// Subscribes to js/to-js at QoS 1, prints {"ready":true}, publishes {"from":"mqtt.js"} to
// js/from-js at QoS 1, then prints the first message it receives as a JSON line and exits.
import mqtt from "mqtt";

const [url, clientId, version] = process.argv.slice(2);
const client = mqtt.connect(url, { clientId, protocolVersion: Number(version), reconnectPeriod: 0 });
const fail = (what) => {
  console.log(JSON.stringify({ error: String(what) }));
  process.exit(1);
};
client.on("error", fail);
setTimeout(() => fail("timed out"), 10000);
client.on("connect", () => {
  client.subscribe("js/to-js", { qos: 1 }, (err) => {
    if (err) return fail(err);
    console.log(JSON.stringify({ ready: true }));
    client.publish("js/from-js", JSON.stringify({ from: "mqtt.js" }), { qos: 1 }, (perr) => {
      if (perr) fail(perr);
    });
  });
});
client.on("message", (topic, payload, packet) => {
  console.log(JSON.stringify({ topic, payload: payload.toString(), qos: packet.qos }));
  client.end(false, () => process.exit(0));
});
