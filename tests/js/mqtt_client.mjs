// MQTT.js over WebSocket, driven by tests/integration/test_mqttjs.py.
// Usage: node mqtt_client.mjs URL CLIENT_ID PROTOCOL_VERSION
// Subscribes to js/to-js at QoS 1, prints {"ready":true}, publishes {"from":"mqtt.js","n":1}
// and then {"from":"mqtt.js","n":2} to js/from-js at QoS 1, prints the first two messages it
// receives as JSON lines and exits. In MQTT 5 it publishes with user properties and a content
// type, lets MQTT.js give its topics aliases, and allows the agent 4 aliases of its own.
import mqtt from "mqtt";

const [url, clientId, version] = process.argv.slice(2);
const v5 = Number(version) === 5;
const client = mqtt.connect(url, {
  clientId,
  protocolVersion: Number(version),
  reconnectPeriod: 0,
  ...(v5 ? { properties: { topicAliasMaximum: 4 }, autoAssignTopicAlias: true } : {}),
});
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
    const options = { qos: 1 };
    if (v5)
      options.properties = { userProperties: { origin: "mqtt.js" }, contentType: "application/json" };
    for (const n of [1, 2])
      client.publish("js/from-js", JSON.stringify({ from: "mqtt.js", n }), options, (perr) => {
        if (perr) fail(perr);
      });
  });
});
let received = 0;
client.on("message", (topic, payload, packet) => {
  const props = packet.properties || {};
  console.log(
    JSON.stringify({
      topic,
      payload: payload.toString(),
      qos: packet.qos,
      userProperties: props.userProperties,
      alias: props.topicAlias,
    }),
  );
  if (++received === 2) client.end(false, () => process.exit(0));
});
