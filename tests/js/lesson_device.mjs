// The IoT lesson's device-side examples (shared/seeds: "Lesson 12 - WebSocket Applications in
// IoT"), run as written against the agent with Node's `ws`, driven by
// tests/integration/test_lesson.py. Only the glue is ours: the URL, the helpers the lesson
// leaves to the reader (generateUUID, readSensorData, handleControlCommand), shorter
// intervals, and one JSON line printed per thing the test checks.
//
// Usage: node lesson_device.mjs MODE URL
//   device  the "Device Side" example: auth, control commands, periodic status reports
//   ack     sendWithAck with the lesson's message format (msgid, qos 1, retain)
//   batch   DataBatcher: readings sent as {"type":"batch","data":[...]}
import { randomUUID } from "node:crypto";
import WebSocket from "ws";

const [mode, url] = process.argv.slice(2);
const print = (o) => console.log(JSON.stringify(o));
const generateUUID = () => randomUUID();
let readings = 0;
const readSensorData = () => ({ temp: 21 + readings++ });
const readSensors = readSensorData;
function handleControlCommand(cmd) {
  print({ control: cmd });
}
setTimeout(() => {
  print({ error: "timed out" });
  process.exit(1);
}, 10000);

const ws = new WebSocket(url);

if (mode === "device") {
  // --- as in the lesson (its 5 s period shortened, and three reports) ---
  ws.on("open", () => {
    ws.send(JSON.stringify({ type: "auth", deviceId: "sensor-001", token: "device-secret-token" }));
  });
  ws.on("message", (message) => {
    const cmd = JSON.parse(message);
    if (cmd.type === "auth_response") print({ auth: cmd });
    if (cmd.type === "control") {
      handleControlCommand(cmd);
      process.exit(0);
    }
  });
  let sent = 0;
  const timer = setInterval(() => {
    const sensorData = readSensorData();
    ws.send(JSON.stringify({
      type: "status",
      deviceId: "sensor-001",
      timestamp: Date.now(),
      data: sensorData,
    }));
    if (++sent === 3) clearInterval(timer);
  }, 100);
}

// --- the lesson's QoS 1 confirmation mechanism, as written ---
function sendWithAck(ws, message) {
  return new Promise((resolve, reject) => {
    const msgId = generateUUID();
    const timedMessage = {
      ...message,
      msgid: msgId
    };

    const timeout = setTimeout(() => {
      reject(new Error('ACK timeout'));
    }, 5000); // 5-second timeout

    const ackHandler = (response) => {
      if (response.msgid === msgId) {
        clearTimeout(timeout);
        ws.off('message', ackHandler);
        resolve(response);
      }
    };

    ws.on('message', ackHandler);
    ws.send(JSON.stringify(timedMessage));
  });
}

if (mode === "ack") {
  // The lesson's handler reads `response.msgid`: it expects parsed messages, so it is given
  // the connection through a small wrapper that emits each frame parsed (Node's `ws` emits
  // raw data).
  const handlers = new Map();
  const parsed = {
    on: (event, f) => {
      const g = (data) => f(JSON.parse(data));
      handlers.set(f, g);
      ws.on(event, g);
    },
    off: (event, f) => ws.off(event, handlers.get(f)),
    send: (s) => ws.send(s),
  };
  ws.on("open", async () => {
    ws.send(JSON.stringify({ type: "auth", deviceId: "device-001" }));
    // The lesson's message format: {ver, msgid, timestamp, from, to, type, payload, qos, retain}.
    const message = {
      ver: "1.0",
      timestamp: Date.now(),
      from: "device-001",
      type: "event",
      payload: { door: "open" },
      qos: 1,
      retain: false,
    };
    try {
      print({ ack: await sendWithAck(parsed, message) });
      print({ to_server: await sendWithAck(parsed, { ...message, to: "server" }) });
      print({ retained: await sendWithAck(parsed, { ...message, type: "status", retain: true }) });
      process.exit(0);
    } catch (e) {
      print({ error: String(e) });
      process.exit(1);
    }
  });
}

// --- the lesson's batch reporting, as written (its `ws` is the connection above) ---
class DataBatcher {
  constructor(flushInterval, maxBatchSize) {
    this.batch = [];
    this.flushInterval = flushInterval;
    this.maxBatchSize = maxBatchSize;
    this.timer = null;
  }

  addData(data) {
    this.batch.push(data);

    if (this.batch.length >= this.maxBatchSize) {
      this.flush();
    } else if (!this.timer) {
      this.timer = setTimeout(() => this.flush(), this.flushInterval);
    }
  }

  flush() {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }

    if (this.batch.length > 0) {
      const batchToSend = this.batch.splice(0, this.batch.length);
      ws.send(JSON.stringify({
        type: 'batch',
        data: batchToSend
      }));
    }
  }
}

if (mode === "batch") {
  ws.on("open", () => {
    ws.send(JSON.stringify({ type: "auth", deviceId: "sensor-001" }));
    const batcher = new DataBatcher(200, 3); // flush every 200 ms or 3 data points
    let n = 0;
    const timer = setInterval(() => {
      const sensorData = readSensors();
      batcher.addData({
        deviceId: 'sensor-001',
        timestamp: Date.now(),
        data: sensorData
      });
      if (++n === 4) {
        clearInterval(timer);
        setTimeout(() => { print({ sent: n }); process.exit(0); }, 500);
      }
    }, 20);
  });
  ws.on("message", (m) => {
    const f = JSON.parse(m);
    if (f.type === "error") print({ error_frame: f });
  });
}
