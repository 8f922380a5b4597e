// The protocol adapters without sockets (the middle test layer, fake_transport.hpp): the
// auth seam's answers that come later (input held, then handed over in order), an identity
// that expires, QoS 1 resends on the manual clock, and MQTT's CONNECT pipelined with what
// follows it.
#include <gtest/gtest.h>

#include <thread>

#include "fake_transport.hpp"
#include "protocol/close_codes.hpp"
#include "protocol/mqtt/adapter.hpp"
#include "protocol/mqtt/reason_codes.hpp"
#include "protocol/native/adapter.hpp"

namespace wsagent::testing {
namespace {

namespace mqtt = protocol::mqtt;
namespace native = protocol::native;

bool has(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

// One agent's core with an authenticator that answers when told, and one client.
struct AdapterTest : ::testing::Test {
  common::manual_clock clock;
  core::router router{{}};
  std::shared_ptr<later_authenticator> later = std::make_shared<later_authenticator>();
  core::auth_holder auth{later};
  recording_audit audit;
  protocol::adapter_context ctx{router, auth, audit};
  fake_transport link;
  std::unique_ptr<protocol::client_adapter> adapter;

  ~AdapterTest() override {
    if (adapter) link.end();
  }

  void open_native(native::upgrade_info info = {}) {
    info.remote = "192.0.2.7:5000";
    adapter = std::make_unique<native::adapter>(ctx, link, std::move(info));
    link.attach(*adapter);
    adapter->on_open();
  }
  void open_mqtt(bool websocket = false) {
    adapter = std::make_unique<mqtt::adapter>(ctx, link, "192.0.2.8:6000", 1 << 20, websocket);
    link.attach(*adapter);
    adapter->on_open();
  }
  // A native client elsewhere that publishes (authenticated by the same authenticator).
  std::shared_ptr<core::session> publisher() {
    auto s = std::make_shared<core::session>("pub", "pub", core::acl::allow_all(), nullptr);
    router.attach(s);
    return s;
  }
  void publish(const std::shared_ptr<core::session>& from, std::string tag, std::uint8_t qos) {
    auto m = std::make_shared<core::message>();
    m->tag = std::move(tag);
    m->payload = "1";
    m->qos = qos;
    m->msgid = core::make_msgid();
    if (qos) m->seq = router.next_seq();
    ASSERT_TRUE(router.publish(*from, m).ok());
  }
};

// --- native ---

TEST_F(AdapterTest, NativeAuthAnsweredLaterHoldsWhatFollowsAndHandsItOverInOrder) {
  open_native();
  link.text(R"({"type":"auth","token":"t1","deviceId":"dev-1"})");
  link.text(R"({"type":"subscribe","id":"s1","tags":["a/#"]})");
  EXPECT_TRUE(link.frames.empty());
  EXPECT_TRUE(link.input_held());
  EXPECT_EQ(link.waiting_input(), 1u);  // the subscribe waits for the answer
  EXPECT_FALSE(adapter->authenticated());
  ASSERT_EQ(later->waiting(), 1u);
  const auto& q = later->asked(0);
  EXPECT_EQ(q.token, "t1");
  EXPECT_EQ(q.client_id, "dev-1");
  EXPECT_EQ(q.remote, "192.0.2.7:5000");
  EXPECT_EQ(q.protocol, "ws");
  EXPECT_TRUE(link.held_by_others());  // the question keeps the connection
  // The answer comes on another thread; it reaches the adapter on the connection's.
  std::thread service([&] { later->answer(0, later_authenticator::accept()); });
  service.join();
  EXPECT_FALSE(link.held_by_others());
  EXPECT_TRUE(link.frames.empty());
  link.run_posted();
  auto msgs = link.messages();
  ASSERT_EQ(msgs.size(), 2u);
  EXPECT_TRUE(has(msgs[0], R"("type":"auth_response")")) << msgs[0];
  EXPECT_TRUE(has(msgs[0], R"("clientId":"dev-1")")) << msgs[0];
  EXPECT_TRUE(has(msgs[1], R"("type":"subscribed")")) << msgs[1];
  EXPECT_FALSE(link.input_held());
  EXPECT_EQ(router.subscription_count(), 1u);
}

TEST_F(AdapterTest, AQuestionAskedWhileAnsweringAnotherKeepsTheInputHeld) {
  open_native();
  link.text(R"({"type":"auth","token":"t1"})");  // no client id: the agent names it
  later->answer(0, later_authenticator::accept());
  link.run_posted();
  ASSERT_TRUE(adapter->authenticated());
  // A fresh token and a name: the token is checked (a question), then the rename asks again.
  link.text(R"({"type":"auth","token":"t2","deviceId":"named"})");
  link.text(R"({"type":"subscribe","id":"s1","tags":["a/#"]})");
  ASSERT_EQ(later->waiting(), 2u);
  later->answer(1, later_authenticator::accept());
  link.run_posted();
  ASSERT_EQ(later->waiting(), 3u);  // the rename's question
  EXPECT_TRUE(link.input_held());   // the subscribe still waits
  EXPECT_EQ(router.subscription_count(), 0u);
  later->answer(2, later_authenticator::accept());
  link.run_posted();
  EXPECT_EQ(adapter->client_id(), "named");
  ASSERT_EQ(router.subscription_count(), 1u);  // on the named session
  EXPECT_FALSE(link.input_held());
}

TEST_F(AdapterTest, NativeRefusalThatComesLaterClosesWith4403) {
  open_native();
  link.text(R"({"type":"auth","token":"bad"})");
  link.text(R"({"type":"subscribe","tags":["a/#"]})");
  later->answer(0, core::auth_result{false, {}, 0, "unknown token"});
  link.run_posted();
  EXPECT_EQ(link.closed(), core::close_reason::auth_failed);
  EXPECT_EQ(router.subscription_count(), 0u);  // the held subscribe is never handled
  ASSERT_FALSE(audit.events.empty());
  EXPECT_EQ(audit.events.back().what, core::audit_event::auth_failure);
  EXPECT_EQ(audit.events.back().detail, "unknown token");
}

TEST_F(AdapterTest, AnAnswerAfterTheConnectionClosedEstablishesNothing) {
  open_native();
  link.text(R"({"type":"auth","token":"t1","deviceId":"late"})");
  link.close(core::close_reason::auth_required, "Authentication timeout");
  later->answer(0, later_authenticator::accept());
  link.run_posted();
  EXPECT_EQ(router.session_count(), 0u);
  EXPECT_FALSE(adapter->authenticated());
}

TEST_F(AdapterTest, NativeIdentityThatExpiresIsToldThenClosedWith4401AndARefreshMovesIt) {
  ctx.expiry_grace_ms = 5'000;
  open_native();
  link.text(R"({"type":"auth","token":"t1","deviceId":"dev-2"})");
  later->answer(0, later_authenticator::accept({}, clock.wall() + 60'000));
  link.run_posted();
  ASSERT_TRUE(adapter->authenticated());
  const auto first = link.messages();
  ASSERT_EQ(first.size(), 1u);
  EXPECT_TRUE(has(first[0], R"("expiresAt":)" + std::to_string(clock.wall() + 65'000)));
  // The connection's next deadline is the notice: at half the identity's life, since that is
  // shorter than refresh_notice_ms.
  ASSERT_TRUE(adapter->next_due());
  EXPECT_EQ(*adapter->next_due(), clock.steady() + 30'000);
  clock.advance(30'000);
  link.tick();
  auto told = link.messages();
  ASSERT_EQ(told.size(), 2u);
  EXPECT_TRUE(has(
      told[1], R"({"type":"token_expiring","expiresAt":)" + std::to_string(clock.wall() + 35'000)));
  // A fresh token before it expires: a refresh.
  link.text(R"({"type":"refresh","id":"r1","token":"t2"})");
  ASSERT_EQ(later->waiting(), 2u);
  EXPECT_EQ(later->asked(1).client_id, "dev-2");
  EXPECT_EQ(later->asked(1).token, "t2");
  later->answer(1, later_authenticator::accept({}, clock.wall() + 60'000));
  link.run_posted();
  auto refreshed = link.messages();
  ASSERT_EQ(refreshed.size(), 3u);
  EXPECT_TRUE(has(refreshed[2], R"({"type":"refreshed","id":"r1","expiresAt":)" +
                                    std::to_string(clock.wall() + 65'000) +
                                    R"(,"unsubscribed":[]})"));
  clock.advance(40'000);  // past the first expiry and its grace
  link.tick();
  EXPECT_FALSE(link.closed());
  clock.advance(20'000);  // past the refreshed one, within its grace
  link.tick();
  EXPECT_FALSE(link.closed());
  clock.advance(5'000);
  link.tick();
  EXPECT_EQ(link.closed(), core::close_reason::auth_expired);
  EXPECT_EQ(protocol::websocket_close_code(*link.closed()), 4401);
  EXPECT_EQ(link.close_text(), "Authentication expired");
}

TEST_F(AdapterTest, NativeRefreshWithNarrowerRightsRemovesAndReportsWhatTheyNoLongerAllow) {
  open_native();
  link.text(R"({"type":"auth","token":"t1","deviceId":"dev-3"})");
  later->answer(0, later_authenticator::accept({}, clock.wall() + 600'000));
  link.run_posted();
  link.text(R"({"type":"subscribe","id":"s1","tags":["plant/#","devices/dev-3/control"]})");
  ASSERT_EQ(router.subscription_count(), 2u);
  auto narrow = std::make_shared<core::grants>();
  narrow->subscribe = {"devices/%c/#"};
  narrow->publish = {"devices/%c/#"};
  link.text(R"({"type":"refresh","id":"r2","token":"t2"})");
  later->answer(1, {true, core::identity{"", "u", narrow, {}, {}}, clock.wall() + 600'000, {}});
  link.run_posted();
  const auto out = link.messages();
  EXPECT_TRUE(has(out.back(), R"("unsubscribed":["plant/#"])")) << out.back();
  EXPECT_EQ(router.subscription_count(), 1u);
  // The new rights hold: publishing where they no longer allow is forbidden.
  link.text(R"({"type":"publish","id":"p1","tag":"plant/x","payload":1})");
  EXPECT_TRUE(has(link.messages().back(), R"("code":"forbidden")"));
  EXPECT_EQ(audit.events.back().what, core::audit_event::forbidden);
}

TEST_F(AdapterTest, NativeRefreshRefusedOrForAnotherClientIsAnErrorAndTheConnectionStays) {
  open_native();
  link.text(R"({"type":"auth","token":"t1","deviceId":"dev-4"})");
  later->answer(0, later_authenticator::accept({}, clock.wall() + 600'000));
  link.run_posted();
  link.text(R"({"type":"refresh","id":"r3","token":"bad"})");
  later->answer(1, core::auth_result{false, {}, 0, "JWT: bad signature"});
  link.run_posted();
  EXPECT_TRUE(has(link.messages().back(),
                  R"("code":"unauthorized","message":"refresh refused: JWT: bad signature")"))
      << link.messages().back();
  link.text(R"({"type":"refresh","id":"r4","token":"other"})");
  later->answer(2, later_authenticator::accept("dev-5", clock.wall() + 600'000));
  link.run_posted();
  EXPECT_TRUE(has(link.messages().back(), "the token stands for client 'dev-5', not 'dev-4'"));
  EXPECT_FALSE(link.closed());
  EXPECT_EQ(audit.events.back().what, core::audit_event::auth_failure);
  // The old identity still holds, with its expiry.
  ASSERT_TRUE(adapter->next_due());
}

// An authenticator that answers at once and says which credentials are revoked.
struct revoking_authenticator final : core::authenticator {
  std::string revoked_digest;
  void authenticate(const core::auth_request& r, core::auth_done done) const override {
    auto g = std::make_shared<core::grants>();
    g->allow_all = true;
    core::auth_result res{true, core::identity{"", "u", g, {}, {}}, 0, {}};
    res.who.from.token_digest = std::string(r.token);
    done(res);
  }
  bool open() const noexcept override { return false; }
  std::string revoked(const core::credential& c) const override {
    return c.token_digest == revoked_digest ? "token removed from the configuration" : "";
  }
};

TEST_F(AdapterTest, ARecheckClosesTheConnectionsWhoseCredentialWasRevoked) {
  auto revoking = std::make_shared<revoking_authenticator>();
  auth.set(revoking);
  open_native();
  link.text(R"({"type":"auth","token":"kept","deviceId":"dev-6"})");
  ASSERT_TRUE(adapter->authenticated());
  adapter->recheck_credentials();
  EXPECT_FALSE(link.closed());
  revoking->revoked_digest = "kept";
  adapter->recheck_credentials();
  EXPECT_EQ(link.closed(), core::close_reason::auth_revoked);
  EXPECT_EQ(protocol::websocket_close_code(*link.closed()), 4403);
  EXPECT_EQ(audit.events.back().detail, "closed: token removed from the configuration");
}

TEST_F(AdapterTest, NativeIdentityExpiredAlreadyIsRefused) {
  open_native();
  link.text(R"({"type":"auth","token":"t1"})");
  later->answer(0, later_authenticator::accept({}, clock.wall() - 1));
  link.run_posted();
  EXPECT_EQ(link.closed(), core::close_reason::auth_failed);
  EXPECT_FALSE(adapter->authenticated());
}

TEST_F(AdapterTest, NativeQoS1DeliveryIsResentWhenItsRetryFallsDueOnTheClock) {
  ctx.retry_ms = 5000;
  open_native();
  link.text(R"({"type":"auth","token":"t","deviceId":"sub"})");
  later->answer(0, later_authenticator::accept());
  link.run_posted();
  link.text(R"({"type":"subscribe","tags":["q/#"],"qos":1})");
  link.frames.clear();
  auto pub = publisher();
  publish(pub, "q/1", 1);
  link.pump();
  auto first = link.messages();
  ASSERT_EQ(first.size(), 1u);
  EXPECT_TRUE(has(first[0], R"("qos":1)")) << first[0];
  EXPECT_FALSE(has(first[0], R"("dup":true)")) << first[0];
  link.frames.clear();
  clock.advance(4999);
  link.tick();
  EXPECT_TRUE(link.frames.empty());  // not yet
  clock.advance(1);
  link.tick();
  auto again = link.messages();
  ASSERT_EQ(again.size(), 1u);
  EXPECT_TRUE(has(again[0], R"("dup":true)")) << again[0];
}

// --- MQTT ---

std::string connect_packet(mqtt::version v, std::string_view client_id, std::string_view user,
                           std::string_view password) {
  mqtt::connect_options o;
  o.ver = v;
  o.client_id = client_id;
  o.username = user;
  o.password = password;
  std::string out;
  mqtt::encode_connect(out, o);
  return out;
}

std::string subscribe_packet(mqtt::version v, std::string_view filter) {
  mqtt::subscription s;
  s.filter = filter;
  s.qos = 1;
  std::string out;
  mqtt::encode_subscribe(out, v, 7, std::span<const mqtt::subscription>(&s, 1));
  return out;
}

std::string joined(const std::vector<std::string>& frames) {
  std::string out;
  for (const auto& f : frames)
    out += f;
  return out;
}

TEST_F(AdapterTest, MqttConnectPipelinedWithASubscribeWaitsForTheAnswer) {
  open_mqtt();
  // One read holding CONNECT and SUBSCRIBE, as clients send them.
  link.stream(connect_packet(mqtt::version::v5, "m1", "alice", "secret") +
              subscribe_packet(mqtt::version::v5, "a/#"));
  EXPECT_TRUE(link.frames.empty());
  EXPECT_TRUE(link.input_held());
  EXPECT_EQ(link.waiting_input(), 1u);  // the SUBSCRIBE's bytes
  ASSERT_EQ(later->waiting(), 1u);
  const auto& q = later->asked(0);
  EXPECT_EQ(q.token, "secret");  // the password is the token
  EXPECT_EQ(q.username, "alice");
  EXPECT_EQ(q.client_id, "m1");
  EXPECT_EQ(q.protocol, "mqtt");
  EXPECT_EQ(q.remote, "192.0.2.8:6000");
  later->answer(0, later_authenticator::accept());
  link.run_posted();
  EXPECT_EQ(
      packet_types(joined(link.frames)),
      (std::vector<mqtt::packet_type>{mqtt::packet_type::connack, mqtt::packet_type::suback}));
  EXPECT_EQ(router.subscription_count(), 1u);
}

TEST_F(AdapterTest, MqttOverWebSocketKeepsThePacketsAfterTheConnectUntilTheAnswer) {
  open_mqtt(true);
  // CONNECT and SUBSCRIBE in one binary message.
  link.binary(connect_packet(mqtt::version::v311, "w1", "", "tok") +
              subscribe_packet(mqtt::version::v311, "b/#"));
  EXPECT_TRUE(link.frames.empty());
  ASSERT_EQ(later->waiting(), 1u);
  EXPECT_EQ(later->asked(0).protocol, "mqtt-ws");
  later->answer(0, later_authenticator::accept());
  link.run_posted();
  auto msgs = link.messages();  // each packet in a binary frame of its own
  ASSERT_EQ(msgs.size(), 2u);
  EXPECT_EQ(packet_types(msgs[0]), std::vector<mqtt::packet_type>{mqtt::packet_type::connack});
  EXPECT_EQ(packet_types(msgs[1]), std::vector<mqtt::packet_type>{mqtt::packet_type::suback});
}

TEST_F(AdapterTest, MqttRefusalThatComesLaterIsACONNACKRefusal) {
  open_mqtt();
  link.stream(connect_packet(mqtt::version::v311, "m2", "u", "wrong"));
  later->answer(0, core::auth_result{false, {}, 0, "unknown token"});
  link.run_posted();
  const auto bytes = joined(link.frames);
  ASSERT_EQ(packet_types(bytes), std::vector<mqtt::packet_type>{mqtt::packet_type::connack});
  EXPECT_EQ(static_cast<std::uint8_t>(bytes.back()), mqtt::connack_v311::bad_username_or_password);
  EXPECT_EQ(link.closed(), core::close_reason::auth_failed);
}

TEST_F(AdapterTest, Mqtt5IdentityThatExpiresGetsDisconnectMaximumConnectTime) {
  open_mqtt();
  link.stream(connect_packet(mqtt::version::v5, "m3", "", "tok"));
  later->answer(0, later_authenticator::accept({}, clock.wall() + 10'000));
  link.run_posted();
  ASSERT_TRUE(adapter->authenticated());
  link.frames.clear();
  clock.advance(10'000);
  link.tick();
  EXPECT_EQ(link.closed(), core::close_reason::auth_expired);
  const auto bytes = joined(link.frames);
  ASSERT_EQ(packet_types(bytes), std::vector<mqtt::packet_type>{mqtt::packet_type::disconnect});
  EXPECT_EQ(static_cast<std::uint8_t>(bytes[2]), mqtt::reason::maximum_connect_time);
}

}  // namespace
}  // namespace wsagent::testing
