#include "protocol/native/codec.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "protocol/native/binary.hpp"

namespace wsagent::protocol::native {
namespace {

// Records what the parser reports, as text, so tests read like the protocol document.
struct recorder : request_handler {
  std::vector<std::string> log;
  std::string last_members;
  std::string last_payload;
  std::string last_props;
  void on_auth(const auth_request& r) override {
    std::string will;
    if (r.will)
      will = " will=" + std::string(r.will->tag) + ":" + std::string(r.will->payload) + ":q" +
             std::to_string(r.will->qos) + (r.will->retain ? ":r" : "");
    log.push_back("auth token=" + std::string(r.token) + " id=" + std::string(r.client_id) +
                  (r.binary ? " binary" : "") + will);
  }
  void on_refresh(std::string_view id, std::string_view token) override {
    log.push_back("refresh token=" + std::string(token) + " id=" + std::string(id));
  }
  void on_subscribe(const subscribe_request& r) override {
    std::string s = r.unsubscribe ? "unsubscribe" : "subscribe";
    for (auto t : r.tags)
      s += " " + std::string(t);
    for (const auto& [tag, offset] : r.since)
      s += " since " + std::string(tag) + "=" + std::to_string(offset);
    if (r.since_ms >= 0) s += " since_ms=" + std::to_string(r.since_ms);
    log.push_back(s);
  }
  void on_publish(const publish_request& r) override {
    last_payload = r.payload;
    last_props =
        "ct=" + std::string(r.props.content_type) + " rt=" + std::string(r.props.response_tag) +
        " corr=" + std::string(r.props.correlation) + (r.props.correlation_base64 ? "(b64)" : "");
    for (const auto& [k, v] : r.props.user)
      last_props += " " + std::string(k) + "=" + std::string(v);
    log.push_back("publish " + std::string(r.tag) + " " + std::string(r.payload) +
                  (r.msgid.empty() ? "" : " msgid=" + std::string(r.msgid)));
  }
  void on_typed(const typed_request& r) override {
    last_members = r.members;
    log.push_back("typed " + std::string(r.type) + " tag=" + std::string(r.tag) +
                  " to=" + std::string(r.to) + (r.qos ? " qos" + std::to_string(r.qos) : "") +
                  (r.retain ? " retain" : "") + (r.reading ? " reading" : ""));
  }
  void on_ping(std::string_view id) override { log.push_back("ping " + std::string(id)); }
  void on_ack(std::string_view id, std::uint64_t seq) override {
    log.push_back("ack " + std::string(id) + " " + std::to_string(seq));
  }
  void on_pubrec(std::string_view, std::uint64_t seq) override {
    log.push_back("pubrec " + std::to_string(seq));
  }
  void on_pubcomp(std::string_view, std::uint64_t seq) override {
    log.push_back("pubcomp " + std::to_string(seq));
  }
  void on_pubrel(std::string_view, std::string_view msgid) override {
    log.push_back("pubrel " + std::string(msgid));
  }
  void on_error(error_code code, std::string_view message, std::string_view id) override {
    log.push_back(std::string("error ") + to_string(code) + " [" + std::string(id) + "] " +
                  std::string(message));
  }
};

std::vector<std::string> parse(std::string_view frame, std::size_t max_batch = 1000) {
  recorder r;
  parser p;
  p.parse(frame.data(), frame.size(), frame.size(), r, max_batch);
  return r.log;
}

std::string one(std::string_view frame) {
  auto log = parse(frame);
  EXPECT_EQ(log.size(), 1u) << frame;
  return log.empty() ? "" : log[0];
}

bool starts_with(const std::string& s, std::string_view prefix) {
  return s.rfind(prefix, 0) == 0;
}

TEST(NativeParse, Requests) {
  EXPECT_EQ(one(R"({"type":"auth","token":"t1","deviceId":"sensor-001"})"),
            "auth token=t1 id=sensor-001");
  EXPECT_EQ(one(R"({"type":"auth","clientId":"c","binary":true})"), "auth token= id=c binary");
  EXPECT_EQ(one(R"({"type":"refresh","token":"eyJ.x.y","id":"r9"})"),
            "refresh token=eyJ.x.y id=r9");
  EXPECT_TRUE(starts_with(one(R"({"type":"refresh","id":"r9"})"), "error bad_request"));
  EXPECT_TRUE(starts_with(one(R"({"type":"token_expiring","tag":"a"})"), "error bad_request"));
  EXPECT_TRUE(starts_with(one(R"({"type":"refreshed","tag":"a"})"), "error bad_request"));
  EXPECT_EQ(one(R"({"type":"subscribe","id":"r1","tags":["a/+/c","d/#"]})"), "subscribe a/+/c d/#");
  EXPECT_EQ(one(R"({"tags":["x"],"type":"unsubscribe"})"), "unsubscribe x");  // any field order
  EXPECT_EQ(one(R"({"type":"subscribe","tag":"one/tag"})"), "subscribe one/tag");
  EXPECT_EQ(one(R"({"type":"publish","tag":"a/b","payload":{"t": 21.5, "u":[1,2]},"msgid":"m1"})"),
            R"(publish a/b {"t": 21.5, "u":[1,2]} msgid=m1)");
  EXPECT_EQ(one(R"({"payload":"x","tag":"a","type":"publish"})"), R"(publish a "x")");
  EXPECT_EQ(one(R"({"type":"publish","tag":"a","payload":null})"), "publish a null");
  EXPECT_EQ(one(R"({"type":"ping","id":"p"})"), "ping p");
  EXPECT_EQ(one(R"({"type":"ack","seq":18446744073709551615})"), "ack  18446744073709551615");
  EXPECT_EQ(
      one(R"({"type":"auth","deviceId":"d","will":{"tag":"d/status","payload":{"on":false},"qos":1,"retain":true}})"),
      R"(auth token= id=d will=d/status:{"on":false}:q1:r)");
  EXPECT_EQ(one(R"({"will":{"payload":"x","tag":"t"},"type":"auth"})"),
            R"(auth token= id= will=t:"x":q0)");
  EXPECT_EQ(one(R"({"seq":7,"type":"ack","id":"a"})"), "ack a 7");
}

TEST(NativeParse, PayloadKeepsItsText) {
  recorder r;
  parser p;
  std::string frame = R"({"type":"publish","tag":"a","payload":  [1, {"k":"v\"q"}, true]  })";
  p.parse(frame.data(), frame.size(), frame.size(), r, 10);
  EXPECT_EQ(r.last_payload, R"([1, {"k":"v\"q"}, true])");
}

TEST(NativeParse, TypedDeviceMessages) {
  recorder r;
  parser p;
  std::string frame =
      R"({"type":"status","deviceId":"sensor-001","timestamp":1700000000000,"data":{"temp":21},"from":"spoof"})";
  p.parse(frame.data(), frame.size(), frame.size(), r, 10);
  ASSERT_EQ(r.log.size(), 1u);
  EXPECT_EQ(r.log[0], "typed status tag= to=");
  // 'from' is the agent's to set; everything else is kept.
  EXPECT_EQ(
      r.last_members,
      R"("type":"status","deviceId":"sensor-001","timestamp":1700000000000,"data":{"temp":21})");
  // Fields the protocol reads in other frames are an application's own here.
  frame = R"({"type":"event","will":{"any":"thing"},"expiry":5,"seq":9})";
  p.parse(frame.data(), frame.size(), frame.size(), r, 10);
  EXPECT_EQ(r.last_members, R"("type":"event","will":{"any":"thing"},"expiry":5,"seq":9)");

  typed_request t{{}, "control", "", "sensor-001", "", false, R"("type":"control","cmd":"reboot")"};
  auto obj = build_typed_payload(t, "devices/sensor-001/control", "dash", "m1", 42);
  EXPECT_EQ(
      obj,
      R"({"type":"control","cmd":"reboot","from":"dash","msgid":"m1","timestamp":42,"tag":"devices/sensor-001/control"})");
  typed_request empty{{}, "x", "", "", "", true, ""};
  EXPECT_EQ(build_typed_payload(empty, "t", "f", "m", 1), R"({"from":"f","msgid":"m","tag":"t"})");
}

TEST(NativeParse, Batch) {
  auto log = parse(R"({"type":"batch","id":"b1","messages":[
      {"type":"publish","tag":"a","payload":1},
      {"type":"status","data":{"ok":true}},
      {"type":"subscribe","tags":["x"]},
      {"type":"publish","tag":"b","payload":2}]})");
  ASSERT_EQ(log.size(), 4u);
  EXPECT_EQ(log[0], "publish a 1");
  EXPECT_EQ(log[1], "typed status tag= to=");
  EXPECT_EQ(log[2], "error bad_request [b1] a batch carries only messages");
  EXPECT_EQ(log[3], "publish b 2");
  auto big = parse(R"({"type":"batch","messages":[{},{},{}]})", 2);
  ASSERT_EQ(big.size(), 1u);
  EXPECT_TRUE(starts_with(big[0], "error limit_exceeded")) << big[0];
}

// Every parse error gets a bad_request naming the problem, with the request's id if known.
TEST(NativeParse, Errors) {
  struct error_case {
    const char* frame;
    const char* expected_prefix;
  } cases[] = {
      {"not json", "error bad_request [] not JSON"},
      {"", "error bad_request [] not JSON"},
      {"[1,2]", "error bad_request [] a frame must be a JSON object"},
      {"\"text\"", "error bad_request [] a frame must be a JSON object"},
      {R"({"type":"publish","tag":"a","payload":1} trailing)", "error bad_request [] not JSON"},
      {R"({"tag":"a"})", "error bad_request [] missing field 'type'"},
      {R"({"type":5})", "error bad_request [] field 'type' must be a string"},
      {R"({"type":"publish","id":"r","payload":1})", "error bad_request [r] publish needs a 'tag'"},
      {R"({"type":"publish","id":"r","tag":"a"})",
       "error bad_request [r] publish needs a 'payload'"},
      {R"({"type":"publish","id":"r","tag":7,"payload":1})",
       "error bad_request [r] field 'tag' must be a string"},
      {R"({"type":"publish","tag":"a","payload":{"x":1,}})",
       "error bad_request [] invalid JSON in 'payload'"},
      {R"({"type":"publish","tag":"a","payload":[1,2})",
       "error bad_request [] invalid JSON in 'payload'"},
      {R"({"type":"publish","tag":"a","payload":nul})",
       "error bad_request [] invalid JSON in 'payload'"},
      {R"({"type":"publish","tag":"a","payload":01})",
       "error bad_request [] invalid JSON in 'payload'"},
      {R"({"type":"publish","tag":"a","payload":1,"retain":"yes"})",
       "error bad_request [] field 'retain' must be true or false"},
      {R"({"type":"publish","tag":"a","payload":1,"qos":3})",
       "error bad_request [] field 'qos' must be 0, 1 or 2"},
      {R"({"type":"subscribe","id":"s"})",
       "error bad_request [s] 'tags' must list at least one tag"},
      {R"({"type":"subscribe","id":"s","tags":"a"})",
       "error bad_request [s] field 'tags' must be an array of strings"},
      {R"({"type":"subscribe","id":"s","tags":["a",1]})",
       "error bad_request [s] field 'tags' must be an array of strings"},
      {R"({"type":"auth","token":5})", "error bad_request [] field 'token' must be a string"},
      {R"({"type":"message","id":"m"})", "error bad_request [m] 'message' is a protocol word"},
      {R"({"type":"ack"})", "error bad_request [] ack needs 'seq'"},
      {R"({"type":"auth","will":"x"})", "error bad_request [] field 'will' must be an object"},
      {R"({"type":"auth","will":{"payload":1}})", "error bad_request [] 'will' needs a 'tag'"},
      {R"({"type":"auth","will":{"tag":"t"}})", "error bad_request [] 'will' needs a 'payload'"},
      {R"({"type":"auth","will":{"tag":"t","payload":1,"qos":3}})",
       "error bad_request [] field 'will.qos' must be 0, 1 or 2"},
      {R"({"type":"auth","will":{"tag":"t","payload":1,"delay":3}})",
       "error bad_request [] unknown field 'will.delay': a will has tag, payload, qos, retain"},
      {R"({"type":"publish","tag":"t","payload":1,"expiry":0})",
       "error bad_request [] field 'expiry' must be a number of seconds from 1 to 31536000"},
      {R"({"type":"ack","seq":0})", "error bad_request [] field 'seq' must be a positive integer"},
      {R"({"type":"ack","seq":"7"})",
       "error bad_request [] field 'seq' must be a positive integer"},
      {R"({"type":"nack"})", "error bad_request [] 'nack' is a protocol word"},
      {R"({"type":"bad type!"})", "error bad_request [] 'type' must be 1 to 64"},
      {R"({"type":"batch"})", "error bad_request [] batch needs 'messages' (or 'data')"},
      {R"({"type":"batch","messages":[{"type":"batch","messages":[]}]})",
       "error bad_request [] a batch may not contain a batch"},
      {R"({"type":"batch","messages":[1]})",
       "error bad_request [] every batch element must be an object"},
      {R"({"type":"status","data":{"a":tru}})", "error bad_request [] invalid JSON in 'data'"},
      {R"({"type":"publish","tag":"a","payload":"\x01"})",
       "error bad_request [] invalid JSON in 'payload'"},
      {R"({"type":"publish","tag":"a","payload":1,"msgid":"0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"})",
       "error bad_request [] field 'msgid' is longer than 128 bytes"},
  };
  for (const auto& c : cases) {
    auto log = parse(c.frame);
    ASSERT_FALSE(log.empty()) << c.frame;
    EXPECT_TRUE(starts_with(log[0], c.expected_prefix)) << c.frame << "\n  got: " << log[0];
    for (const auto& l : log)
      EXPECT_TRUE(starts_with(l, "error")) << c.frame << " also did: " << l;
  }
}

TEST(NativeParse, InvalidUtf8InsideStrings) {
  std::string frame = "{\"type\":\"publish\",\"tag\":\"a\",\"payload\":\"\xff\xfe\"}";
  auto log = parse(frame);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_TRUE(starts_with(log[0], "error bad_request")) << log[0];
}

TEST(NativeParse, QoS2Handshake) {
  EXPECT_EQ(one(R"({"type":"pubrec","seq":12})"), "pubrec 12");
  EXPECT_EQ(one(R"({"type":"pubcomp","seq":12})"), "pubcomp 12");
  EXPECT_EQ(one(R"({"type":"pubrel","msgid":"m-1"})"), "pubrel m-1");
  EXPECT_TRUE(starts_with(one(R"({"type":"pubrec"})"), "error bad_request [] pubrec needs 'seq'"));
  EXPECT_TRUE(starts_with(one(R"({"type":"pubrel","seq":3})"), "error bad_request"));
  EXPECT_TRUE(starts_with(one(R"({"type":"pubcomp","seq":0})"), "error bad_request"));
  EXPECT_TRUE(starts_with(parse(R"({"type":"batch","messages":[{"type":"pubrec","seq":1}]})")[0],
                          "error bad_request"));
}

TEST(NativeParse, SubscribeWithRecovery) {
  EXPECT_EQ(one(R"({"type":"subscribe","tags":["a/#"],"since":{"a/b":41,"a/\u0063":0}})"),
            "subscribe a/# since a/b=41 since a/c=0");
  EXPECT_EQ(one(R"({"type":"subscribe","tags":["a/#"],"since_ms":1700000000000})"),
            "subscribe a/# since_ms=1700000000000");
  for (auto bad : {R"({"type":"subscribe","tags":["a"],"since":{"a":-1}})",
                   R"({"type":"subscribe","tags":["a"],"since":{"a":"1"}})",
                   R"({"type":"subscribe","tags":["a"],"since":["a"]})",
                   R"({"type":"subscribe","tags":["a"],"since_ms":-5})",
                   R"({"type":"unsubscribe","tags":["a"],"since_ms":5})"})
    EXPECT_TRUE(starts_with(one(bad), "error bad_request")) << bad;
  // A device message may carry such a field as data.
  recorder r;
  parser p;
  std::string_view typed = R"({"type":"status","since":{"x":1},"since_ms":3})";
  p.parse(typed.data(), typed.size(), typed.size(), r, 10);
  EXPECT_EQ(r.last_members, R"("type":"status","since":{"x":1},"since_ms":3)");
}

TEST(NativeParse, MessageProperties) {
  recorder r;
  parser p;
  std::string_view f =
      R"({"type":"publish","tag":"a","payload":1,"content_type":"text/plain","response_tag":"r/1",)"
      R"("correlation":"AAE=","correlation_encoding":"base64","user_properties":[["k","v"],["k","w\u00e9"]]})";
  p.parse(f.data(), f.size(), f.size(), r, 10);
  ASSERT_EQ(r.log.size(), 1u);
  EXPECT_EQ(r.last_props, "ct=text/plain rt=r/1 corr=AAE=(b64) k=v k=w\xc3\xa9");
  for (const char* bad :
       {R"({"type":"publish","tag":"a","payload":1,"user_properties":{"k":"v"}})",
        R"({"type":"publish","tag":"a","payload":1,"user_properties":[["k"]]})",
        R"({"type":"publish","tag":"a","payload":1,"user_properties":[["k",1]]})",
        R"({"type":"publish","tag":"a","payload":1,"content_type":3})",
        R"({"type":"publish","tag":"a","payload":1,"correlation_encoding":"hex"})"})
    EXPECT_EQ(one(bad).rfind("error bad_request", 0), 0u) << bad;
  // A device message keeps them as its own fields.
  std::string_view typed = R"({"type":"status","content_type":"x","user_properties":[["a","b"]]})";
  p.parse(typed.data(), typed.size(), typed.size(), r, 10);
  EXPECT_EQ(r.last_members, R"("type":"status","content_type":"x","user_properties":[["a","b"]])");
}

TEST(NativeEncode, MessageProperties) {
  outgoing_message m;
  m.tag = "a";
  m.payload = "1";
  m.from = "d";
  m.msgid = "m";
  m.timestamp_ms = 5;
  const std::string correlation("\0\xff", 2);  // not UTF-8: base64
  std::vector<std::pair<std::string, std::string>> user{{"k", "v"}, {"k", "\""}};
  outgoing_properties props{"application/json", "r/1", correlation, user};
  m.props = &props;
  std::string frame;
  encode_message_frame(m, frame);
  EXPECT_EQ(frame.substr(4),  // a frame of 126 bytes or more: a 4-byte header
            R"({"type":"message","tag":"a","payload":1,"from":"d","msgid":"m","timestamp":5,)"
            R"("content_type":"application/json","response_tag":"r/1","correlation":"AP8=",)"
            R"("correlation_encoding":"base64","user_properties":[["k","v"],["k","\""]]})");
  props.correlation = "req-1";  // UTF-8: as it is
  props.user = {};
  frame.clear();
  encode_message_frame(m, frame);
  EXPECT_NE(frame.find(R"("correlation":"req-1"})"), std::string::npos) << frame;
}

TEST(NativeEncode, HistoryOffsets) {
  outgoing_message m;
  m.tag = "a";
  m.payload = "1";
  m.from = "d";
  m.msgid = "m";
  m.timestamp_ms = 5;
  m.offset = 42;
  m.seq = 7;
  std::string frame;
  encode_message_frame(m, frame, 1);
  EXPECT_EQ(
      frame.substr(2),
      R"({"type":"message","tag":"a","payload":1,"from":"d","msgid":"m","timestamp":5,"offset":42,"qos":1,"seq":7})");
  outgoing_message device;
  device.device = true;
  device.payload = R"({"type":"status","tag":"a"})";
  device.offset = 3;
  frame.clear();
  encode_message_frame(device, frame);
  EXPECT_EQ(frame.substr(2), R"({"type":"status","tag":"a","offset":3})");
  m.kind = payload_kind::bytes;
  frame.clear();
  encode_binary_message_frame(m, frame, 2, true);
  std::string why;
  auto v = decode_binary_message(std::string_view(frame).substr(2), why);
  ASSERT_TRUE(v) << why;
  EXPECT_EQ(v->qos, 2);
  EXPECT_TRUE(v->dup);
  EXPECT_EQ(v->seq, 7u);
  EXPECT_EQ(v->offset, 42u);
  EXPECT_EQ(v->payload, "1");
}

// A device message delivered at QoS 1 or 2 carries the delivery's qos, seq and dup inside
// its own object, so the device acknowledges it like any message.
TEST(NativeEncode, DeviceMessagesAtQoS) {
  outgoing_message device;
  device.device = true;
  device.payload = R"({"type":"control","msgid":"c-1"})";
  device.seq = 9;
  std::string frame;
  encode_message_frame(device, frame, 1, true);
  EXPECT_EQ(frame.substr(2), R"({"type":"control","msgid":"c-1","qos":1,"seq":9,"dup":true})");
}

TEST(NativeEncode, QoS2Replies) {
  std::string f;
  encode_publish_ack(f, "m-1", "p", "pubrec");
  EXPECT_EQ(f.substr(2), R"({"type":"pubrec","msgid":"m-1","id":"p"})");
  f.clear();
  encode_pubrel(f, 99);
  EXPECT_EQ(f.substr(2), R"({"type":"pubrel","seq":99})");
}

TEST(NativeEncode, SubscribedWithRecovery) {
  std::string f;
  std::string_view tags[] = {"a/#"};
  encode_subscribed(f, "", tags, false, {true, {}});
  EXPECT_EQ(f.substr(2), R"({"type":"subscribed","tags":["a/#"],"recovered":true})");
  f.clear();
  std::vector<std::string> missed{"a/x"};
  encode_subscribed(f, "", tags, false, {true, missed});
  EXPECT_EQ(f.substr(2),
            R"({"type":"subscribed","tags":["a/#"],"recovered":false,"incomplete":["a/x"]})");
}

TEST(NativeEncode, MessageFrame) {
  outgoing_message m;
  m.tag = "a/b";
  m.payload = R"({"t":1})";
  m.from = "dev";
  m.msgid = "m1";
  m.timestamp_ms = 5;
  std::string frame;
  encode_message_frame(m, frame);
  ASSERT_GE(frame.size(), 2u);
  EXPECT_EQ(static_cast<unsigned char>(frame[0]), 0x81);  // FIN + text
  EXPECT_EQ(
      frame.substr(2),
      R"({"type":"message","tag":"a/b","payload":{"t":1},"from":"dev","msgid":"m1","timestamp":5})");
  outgoing_message b;
  b.tag = "bin";
  const std::string bytes("\x00\x01\xff", 3);
  b.payload = bytes;
  b.kind = payload_kind::bytes;
  std::string bframe;
  encode_message_frame(b, bframe);
  EXPECT_NE(bframe.find(R"("payload":"AAH/","encoding":"base64")"), std::string::npos) << bframe;
  outgoing_message t;  // UTF-8 text from MQTT: a JSON string for native clients
  t.tag = "txt";
  t.payload = "21.5 \"C\"";
  t.kind = payload_kind::text;
  std::string tframe;
  encode_message_frame(t, tframe);
  EXPECT_NE(tframe.find(R"("payload":"21.5 \"C\"")"), std::string::npos) << tframe;
}

TEST(NativeEncode, ErrorAndResponses) {
  std::string f;
  encode_error(f, error_code::forbidden, "no \"way\"", "r1");
  EXPECT_EQ(f.substr(2), R"({"type":"error","code":"forbidden","message":"no \"way\"","id":"r1"})");
  f.clear();
  std::string_view tags[] = {"a/+", "b/#"};
  encode_subscribed(f, "r2", tags, false);
  EXPECT_EQ(f.substr(2), R"({"type":"subscribed","id":"r2","tags":["a/+","b/#"]})");
}

TEST(NativeBinary, PublishRoundTrip) {
  std::string env;
  encode_binary_publish(env, "sensors/raw", "m9", std::string("\x00\x10\x20", 3), true);
  std::string why;
  auto v = decode_binary_publish(
      std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(env.data()), env.size()),
      why);
  ASSERT_TRUE(v) << why;
  EXPECT_EQ(v->tag, "sensors/raw");
  EXPECT_EQ(v->msgid, "m9");
  EXPECT_EQ(v->payload, std::string("\x00\x10\x20", 3));
  EXPECT_TRUE(v->retain);
  EXPECT_EQ(v->qos, 0);
  // QoS in flag bit 1 (1) or bit 3 (2), not both.
  for (auto [flags, qos] :
       {std::pair{2, 1}, std::pair{8, 2}, std::pair{10, -1}, std::pair{4, -1}}) {
    std::string q = env;
    q[1] = static_cast<char>(flags);
    auto qv = decode_binary_publish(
        std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(q.data()), q.size()),
        why);
    if (qos < 0) {
      EXPECT_FALSE(qv) << flags;
    } else {
      ASSERT_TRUE(qv) << flags;
      EXPECT_EQ(qv->qos, qos);
    }
  }
  // Truncated and unknown envelopes are refused with a reason.
  for (std::size_t n = 0; n < 6; ++n) {
    auto t = decode_binary_publish(
        std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(env.data()), n), why);
    EXPECT_FALSE(t) << n;
  }
  std::string bad = env;
  bad[0] = 0x07;
  EXPECT_FALSE(decode_binary_publish(
      std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(bad.data()), bad.size()),
      why));
}

TEST(NativeBinary, MessageRoundTrip) {
  outgoing_message m;
  m.tag = "t";
  m.from = "f";
  m.msgid = "id";
  m.timestamp_ms = 1700000000123;
  m.payload = "bytes";
  m.kind = payload_kind::bytes;
  std::string frame;
  encode_binary_message_frame(m, frame);
  EXPECT_EQ(static_cast<unsigned char>(frame[0]), 0x82);  // FIN + binary
  std::string why;
  auto v = decode_binary_message(std::string_view(frame).substr(2), why);
  ASSERT_TRUE(v) << why;
  EXPECT_EQ(v->tag, "t");
  EXPECT_EQ(v->from, "f");
  EXPECT_EQ(v->msgid, "id");
  EXPECT_EQ(v->timestamp_ms, 1700000000123);
  EXPECT_EQ(v->payload, "bytes");
}

// The IoT lesson's DataBatcher: {"type":"batch","data":[...]}, each element a reading (no
// type): routed as a device message of type "data".
TEST(NativeParse, ABatchOfReadings) {
  recorder r;
  parser p;
  std::string_view frame =
      R"({"type":"batch","data":[{"deviceId":"s-1","timestamp":5,"data":{"t":1}},)"
      R"({"type":"status","ok":true}]})";
  p.parse(frame.data(), frame.size(), frame.size(), r, 10);
  ASSERT_EQ(r.log.size(), 2u);
  EXPECT_EQ(r.log[0], "typed data tag= to= reading");
  EXPECT_EQ(r.log[1], "typed status tag= to=");
  typed_request reading{{}, reading_type, {}, {}, {}, true, R"("deviceId":"s-1")", 0, false, true};
  EXPECT_EQ(
      build_typed_payload(reading, "devices/gw/data", "gw", "m-1", 9),
      R"({"type":"data","deviceId":"s-1","from":"gw","msgid":"m-1","tag":"devices/gw/data"})");
}

// A frame without a type: an error, unless readings are asked for (native.untyped_frames).
TEST(NativeParse, AnUntypedFrameIsAReadingWhenAskedFor) {
  std::string_view frame = R"({"deviceId":"plc-101","values":[1,2],"quality":"good"})";
  EXPECT_EQ(one(frame), "error bad_request [] missing field 'type'");
  recorder r;
  parser p;
  p.parse(frame.data(), frame.size(), frame.size(), r, 10, true);
  ASSERT_EQ(r.log.size(), 1u);
  EXPECT_EQ(r.log[0], "typed data tag= to= reading");
  EXPECT_EQ(r.last_members, R"("deviceId":"plc-101","values":[1,2],"quality":"good")");
}

// The lesson's message format carries qos and retain: they say how it goes, not what it is,
// so they are not kept in the delivered object (the delivery adds its own qos).
TEST(NativeParse, ADeviceMessagesQosAndRetainAreRoutingNotContent) {
  recorder r;
  parser p;
  std::string_view frame = R"({"type":"event","qos":1,"retain":true,"msgid":"a1","payload":2})";
  p.parse(frame.data(), frame.size(), frame.size(), r, 10);
  ASSERT_EQ(r.log.size(), 1u);
  EXPECT_EQ(r.log[0], "typed event tag= to= qos1 retain");
  EXPECT_EQ(r.last_members, R"("type":"event","payload":2)");
}

}  // namespace
}  // namespace wsagent::protocol::native
