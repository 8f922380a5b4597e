// An authentication that answers later, through the real connection: the agent's server on
// loopback sockets, with an authenticator that answers when the test says so. What the client
// sent after its CONNECT (or its auth frame) in the same write waits in the connection's
// read buffer and is handled, in order, once the answer came.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "app/protocols.hpp"
#include "fake_transport.hpp"
#include "protocol/mqtt/codec.hpp"
#include "protocol/websocket/frame.hpp"

namespace wsagent::testing {
namespace {

namespace mqtt = protocol::mqtt;
namespace ws = protocol::websocket;

// A blocking loopback client with a receive timeout (a failing test ends, it does not hang).
class client {
 public:
  explicit client(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~client() { ::close(fd_); }
  bool connected() const { return connected_; }
  void send(std::string_view bytes) {
    while (!bytes.empty()) {
      auto n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return;
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
  }
  // Nothing has arrived (without waiting).
  bool nothing_yet() {
    char b;
    return ::recv(fd_, &b, 1, MSG_DONTWAIT | MSG_PEEK) < 0;
  }
  // Reads until the agent closes (true) or the timeout (false).
  bool closed_by_peer() {
    char buf[4096];
    while (true) {
      auto n = ::recv(fd_, buf, sizeof buf, 0);
      if (n == 0) return true;
      if (n < 0) return false;
      in_.append(buf, static_cast<std::size_t>(n));
    }
  }
  // Reads until `enough(bytes)` or the timeout.
  template <class F>
  std::string read_until(F&& enough) {
    while (!enough(in_)) {
      char buf[4096];
      auto n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      in_.append(buf, static_cast<std::size_t>(n));
    }
    return in_;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  std::string in_;
};

// A client's (masked) text frame.
std::string client_text(std::string_view text) {
  const std::uint32_t key = 0x12345678;
  auto h = ws::make_header(ws::opcode::text, text.size(), true, &key);
  std::string payload(text);
  ws::mask_payload({reinterpret_cast<std::uint8_t*>(payload.data()), payload.size()}, key);
  return std::string(reinterpret_cast<const char*>(h.bytes.data()), h.size) + payload;
}

std::vector<std::string> server_texts(std::string_view bytes) {
  std::vector<std::string> out;
  std::string copy(bytes);
  ws::frame_reader r(ws::frame_reader::role::client, 1 << 20);
  std::span<std::uint8_t> in(reinterpret_cast<std::uint8_t*>(copy.data()), copy.size());
  while (!in.empty()) {
    auto ev = r.next(in);
    if (ev.what == ws::frame_reader::kind::need_more) break;
    if (ev.what == ws::frame_reader::kind::message)
      out.emplace_back(reinterpret_cast<const char*>(ev.payload.data()), ev.payload.size());
    in = in.subspan(ev.consumed);
  }
  return out;
}

struct HeldInput : ::testing::Test {
  core::router router{{}};
  std::shared_ptr<later_authenticator> later = std::make_shared<later_authenticator>();
  core::auth_holder auth{later};
  recording_audit audit;
  protocol::adapter_context ctx{router, auth, audit};
  net::net_probe probe;
  std::unique_ptr<net::server> srv;
  std::thread io;

  HeldInput() {
    app::config cfg;
    net::server_settings settings;
    settings.listeners = {{"127.0.0.1:0", {"mqtt"}, {}}, {"127.0.0.1:0", {"ws"}, {}}};
    settings.connection.auth_timeout_ms = 2000;
    settings.connection.close_timeout_ms = 10000;  // a close handshake that fails shows
    srv = std::make_unique<net::server>(settings, app::make_protocols(ctx, cfg, {}), probe);
    srv->listen();
    io = std::thread([this] { srv->run(); });
  }
  ~HeldInput() override {
    srv->stop(1000);
    io.join();
  }
  std::uint16_t port(std::size_t i) const { return srv->listeners()[i]->port(); }
  void wait_for_question(std::size_t n) {
    for (int i = 0; i < 500 && later->waiting() < n; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_EQ(later->waiting(), n);
  }
};

TEST_F(HeldInput, MqttPacketsAfterTheConnectWaitForTheAnswer) {
  client c(port(0));
  ASSERT_TRUE(c.connected());
  mqtt::connect_options o;
  o.ver = mqtt::version::v311;
  o.client_id = "held-1";
  o.username = "dev";  // 3.1.1: a password needs a user name
  o.password = "tok";
  std::string bytes;
  mqtt::encode_connect(bytes, o);
  mqtt::subscription s;
  s.filter = "a/#";
  mqtt::encode_subscribe(bytes, o.ver, 1, std::span<const mqtt::subscription>(&s, 1));
  c.send(bytes);  // one write: CONNECT and SUBSCRIBE
  wait_for_question(1);
  EXPECT_TRUE(c.nothing_yet());
  later->answer(0, later_authenticator::accept());
  auto got = c.read_until([](const std::string& in) { return packet_types(in).size() >= 2; });
  EXPECT_EQ(packet_types(got), (std::vector<mqtt::packet_type>{mqtt::packet_type::connack,
                                                               mqtt::packet_type::suback}));
  EXPECT_EQ(router.subscription_count(), 1u);
}

TEST_F(HeldInput, NativeFramesAfterTheAuthFrameWaitForTheAnswer) {
  client c(port(1));
  ASSERT_TRUE(c.connected());
  // The upgrade, the auth frame and a subscribe, in one write.
  c.send(
      "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n" +
      client_text(R"({"type":"auth","token":"t","deviceId":"held-2"})") +
      client_text(R"({"type":"subscribe","id":"s","tags":["b/#"]})"));
  wait_for_question(1);
  later->answer(0, later_authenticator::accept());
  auto got = c.read_until([](const std::string& in) {
    auto end = in.find("\r\n\r\n");
    return end != std::string::npos && server_texts(in.substr(end + 4)).size() >= 2;
  });
  const auto end = got.find("\r\n\r\n");
  ASSERT_NE(end, std::string::npos);
  EXPECT_EQ(got.substr(0, 12), "HTTP/1.1 101");
  auto texts = server_texts(got.substr(end + 4));
  ASSERT_EQ(texts.size(), 2u);
  EXPECT_NE(texts[0].find(R"("type":"auth_response")"), std::string::npos) << texts[0];
  EXPECT_NE(texts[1].find(R"("type":"subscribed")"), std::string::npos) << texts[1];
}

TEST_F(HeldInput, AnAuthenticatorThatDoesNotAnswerIsCutOffByTheAuthTimeout) {
  client c(port(0));
  mqtt::connect_options o;
  o.client_id = "held-3";
  o.username = "dev";
  std::string bytes;
  mqtt::encode_connect(bytes, o);
  c.send(bytes);
  wait_for_question(1);
  EXPECT_TRUE(c.closed_by_peer());  // after heartbeat.auth_timeout_ms, with nothing said
  // The answer after the connection is gone reaches nobody.
  later->answer(0, later_authenticator::accept());
  EXPECT_EQ(router.session_count(), 0u);
}

TEST_F(HeldInput, AnAnswerThatComesLaterLiftsTheAuthDeadline) {
  client c(port(0));
  mqtt::connect_options o;
  o.client_id = "held-4";
  o.username = "dev";
  o.keep_alive = 60;
  std::string bytes;
  mqtt::encode_connect(bytes, o);
  c.send(bytes);  // the CONNECT alone: nothing follows it
  wait_for_question(1);
  later->answer(0, later_authenticator::accept());
  auto got = c.read_until([](const std::string& in) { return !packet_types(in).empty(); });
  ASSERT_EQ(packet_types(got), std::vector<mqtt::packet_type>{mqtt::packet_type::connack});
  // Past heartbeat.auth_timeout_ms: still connected (its keep alive applies now).
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  std::string ping;
  mqtt::encode_pingreq(ping);
  c.send(ping);
  got = c.read_until([](const std::string& in) { return packet_types(in).size() >= 2; });
  EXPECT_EQ(packet_types(got), (std::vector<mqtt::packet_type>{mqtt::packet_type::connack,
                                                               mqtt::packet_type::pingresp}));
}

TEST_F(HeldInput, ARefusalThatComesLaterEndsTheCloseHandshake) {
  client c(port(1));
  c.send(
      "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n" +
      client_text(R"({"type":"auth","token":"bad"})") +
      client_text(R"({"type":"subscribe","id":"s","tags":["b/#"]})"));
  wait_for_question(1);
  later->answer(0, core::auth_result{false, {}, 0, "unknown token"});
  // The agent's close frame (4403), then the client's answer to it: the agent ends the
  // connection then, reading the held frames and the close frame, not at its close timeout.
  auto got = c.read_until([](const std::string& in) {
    auto end = in.find("\r\n\r\n");
    return end != std::string::npos && in.size() > end + 4 + 2;
  });
  const auto end = got.find("\r\n\r\n");
  ASSERT_NE(end, std::string::npos);
  ASSERT_GE(got.size(), end + 8);
  EXPECT_EQ(static_cast<std::uint8_t>(got[end + 4]), 0x88);  // a close frame
  EXPECT_EQ(
      (static_cast<std::uint8_t>(got[end + 6]) << 8) | static_cast<std::uint8_t>(got[end + 7]),
      4403);
  const std::uint32_t key = 1;
  auto h = ws::make_header(ws::opcode::close, 0, true, &key);
  c.send(std::string_view(reinterpret_cast<const char*>(h.bytes.data()), h.size));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(c.closed_by_peer());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_EQ(router.subscription_count(), 0u);
}

}  // namespace
}  // namespace wsagent::testing
