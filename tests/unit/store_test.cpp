// The store contract, run against every implementation; then what only the on-disk store
// promises (a reopened file holds what was written, a damaged or busy file is refused), and
// the writer thread's group commit.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <thread>

#include "core/store.hpp"
#include "core/store_writer.hpp"
#include "store/memory_store.hpp"
#include "store/sqlite_store.hpp"

namespace {

using namespace wsagent;
namespace ops = core::store_ops;

core::message_ptr msg(std::string tag, std::string payload, std::uint8_t qos = 1) {
  auto m = std::make_shared<core::message>();
  m->tag = std::move(tag);
  m->payload = std::move(payload);
  m->from = "dev-1";
  m->msgid = "m-" + m->payload;
  m->timestamp_ms = 1700000000123;
  m->expires_ms = 1700000060000;
  m->qos = qos;
  return m;
}

void expect_same(const core::message& a, const core::message& b) {
  EXPECT_EQ(a.tag, b.tag);
  EXPECT_EQ(a.payload, b.payload);
  EXPECT_EQ(a.from, b.from);
  EXPECT_EQ(a.msgid, b.msgid);
  EXPECT_EQ(a.timestamp_ms, b.timestamp_ms);
  EXPECT_EQ(a.expires_ms, b.expires_ms);
  EXPECT_EQ(a.qos, b.qos);
  EXPECT_EQ(a.format, b.format);
  EXPECT_EQ(a.flags, b.flags);
  EXPECT_EQ(a.retain, b.retain);
  EXPECT_EQ(a.published_retain, b.published_retain);
  ASSERT_EQ(!a.props, !b.props);
  if (a.props) {
    EXPECT_EQ(a.props->content_type, b.props->content_type);
    EXPECT_EQ(a.props->response_tag, b.props->response_tag);
    EXPECT_EQ(a.props->correlation, b.props->correlation);
    EXPECT_EQ(a.props->user, b.props->user);
  }
}

// A fresh temporary directory, removed at the end of the test.
struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    path = std::filesystem::temp_directory_path() /
           ("wsagent-store-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
    std::filesystem::remove_all(path);
  }
  ~temp_dir() { std::filesystem::remove_all(path); }
  static std::atomic<int>& counter() {
    static std::atomic<int> n{0};
    return n;
  }
};

struct store_kind {
  const char* name;
  std::function<std::unique_ptr<core::store>(const std::string& dir)> open;
};

class StoreContract : public ::testing::TestWithParam<store_kind> {
 protected:
  void SetUp() override { store = GetParam().open(dir.path.string()); }
  void write(std::vector<core::store_op> batch) { store->write(batch); }
  temp_dir dir;
  std::unique_ptr<core::store> store;
};

TEST_P(StoreContract, StartsEmpty) {
  auto s = store->load();
  EXPECT_TRUE(s.retained.empty());
  EXPECT_TRUE(s.sessions.empty());
  EXPECT_TRUE(s.queue.empty());
  EXPECT_TRUE(s.history.empty());
  EXPECT_TRUE(s.messages.empty());
  EXPECT_TRUE(s.incoming.empty());
  EXPECT_TRUE(s.wills.empty());
  EXPECT_TRUE(s.meta.empty());
}

TEST_P(StoreContract, MetaValuesAreReplacedByKey) {
  write({ops::put_meta{"cluster.inbox", "1-0"}, ops::put_meta{"other", std::string("\0b", 2)}});
  write({ops::put_meta{"cluster.inbox", "1700000000000-7"}});
  auto s = store->load();
  EXPECT_EQ(s.meta, (std::vector<std::pair<std::string, std::string>>{
                        {"cluster.inbox", "1700000000000-7"}, {"other", std::string("\0b", 2)}}));
}

TEST_P(StoreContract, RetainedMessagesAreReplacedAndClearedPerTag) {
  auto bin = std::make_shared<core::message>();
  bin->tag = "cam/1";
  bin->payload = std::string("\0\x01\xff", 3);
  bin->format = core::payload_format::binary;
  bin->retain = true;
  bin->published_retain = true;
  auto props = std::make_shared<core::message_properties>();  // MQTT 5 properties
  props->content_type = "image/raw";
  props->response_tag = "cam/1/reply";
  props->correlation = std::string("\0\xfe", 2);
  props->user = {{"k", "v1"}, {"k", "v2"}, {"", ""}};  // in order, keys repeat
  bin->props = props;
  auto text = std::make_shared<core::message>();  // an MQTT payload that is not JSON
  text->tag = "txt/1";
  text->payload = "21.5 C";
  text->format = core::payload_format::text;
  write({ops::put_retained{msg("a/b", "1")}, ops::put_retained{msg("a/c", "2")},
         ops::put_retained{bin}, ops::put_retained{text}});
  write({ops::put_retained{msg("a/b", "3")}, ops::clear_retained{"a/c"},
         ops::clear_retained{"never/set"}});
  auto s = store->load();
  ASSERT_EQ(s.retained.size(), 3u);  // in tag order
  expect_same(*s.retained[0], *msg("a/b", "3"));
  expect_same(*s.retained[1], *bin);
  expect_same(*s.retained[2], *text);
}

TEST_P(StoreContract, SessionsKeepTheirSubscriptionsAndDropTakesEverything) {
  core::stored_session a{"dev-a", 3600, 0, {{"x/#", 1}, {"y/+", 2}}};
  core::subscription_options mqtt5(2);  // MQTT 5's options survive too
  mqtt5.no_local = true;
  mqtt5.retain_as_published = true;
  mqtt5.id = 268435455;  // the largest Subscription Identifier
  core::stored_session b{"dev-b", 60, 1700000000000, {{"$share/g/q", 1}, {"z", mqtt5}}};
  write({ops::put_session{a}, ops::put_session{b}});
  a.subscriptions = {{"only/this", 1}};  // replaced whole
  a.disconnected_ms = 1700000001000;
  write({ops::put_session{a}});
  write({ops::put_message{{7, msg("z", "q")}}, ops::enqueue{{"dev-b", 1, 7, 1, false}},
         ops::put_incoming{"dev-b", "m-9"}, ops::put_incoming{"dev-a", "m-1"}});
  auto s = store->load();
  ASSERT_EQ(s.sessions.size(), 2u);
  EXPECT_EQ(s.sessions[0].client_id, "dev-a");
  EXPECT_EQ(s.sessions[0].expiry_s, 3600);
  EXPECT_EQ(s.sessions[0].disconnected_ms, 1700000001000);
  EXPECT_EQ(s.sessions[0].subscriptions, a.subscriptions);
  EXPECT_EQ(s.sessions[1].subscriptions, b.subscriptions);

  write({ops::drop_session{"dev-b"}});
  s = store->load();
  ASSERT_EQ(s.sessions.size(), 1u);
  EXPECT_EQ(s.sessions[0].client_id, "dev-a");
  EXPECT_TRUE(s.queue.empty());
  ASSERT_EQ(s.incoming.size(), 1u);
  EXPECT_EQ(s.incoming[0], std::make_pair(std::string("dev-a"), std::string("m-1")));
  EXPECT_EQ(s.messages.size(), 1u);  // messages go only when the core drops them
}

TEST_P(StoreContract, QueuesKeepOrderAndState) {
  auto a = std::const_pointer_cast<core::message>(msg("t", "a"));
  a->seq = 1;
  auto b = std::const_pointer_cast<core::message>(msg("t", "b", 2));
  b->seq = 2;
  write({ops::put_message{{1, a}}, ops::put_message{{2, b}}, ops::enqueue{{"c", 5, 1, 1, false}},
         ops::enqueue{{"c", 6, 2, 2, false}}, ops::enqueue{{"b", 1, 2, 1, false}}});
  write({ops::mark_sent{"c", 5}, ops::dequeue{"b", 1}, ops::mark_sent{"c", 99}});
  auto s = store->load();
  ASSERT_EQ(s.queue.size(), 2u);
  EXPECT_EQ(s.queue[0].client_id, "c");
  EXPECT_EQ(s.queue[0].seq, 5u);
  EXPECT_EQ(s.queue[0].message_id, 1u);
  EXPECT_TRUE(s.queue[0].sent);
  EXPECT_EQ(s.queue[1].seq, 6u);
  EXPECT_EQ(s.queue[1].qos, 2);
  EXPECT_FALSE(s.queue[1].sent);
  ASSERT_EQ(s.messages.size(), 2u);
  EXPECT_EQ(s.messages[0].id, 1u);
  EXPECT_EQ(s.messages[0].msg->seq, 1u);  // the id is the message's seq
  expect_same(*s.messages[1].msg, *msg("t", "b", 2));
  write({ops::drop_message{1}});
  EXPECT_EQ(store->load().messages.size(), 1u);
}

TEST_P(StoreContract, HistoryIsOrderedPerTagAndTrimmedFromBelow) {
  std::vector<core::store_op> batch;
  for (std::uint64_t i = 1; i <= 5; ++i) {
    batch.push_back(ops::put_message{{i, msg("h/1", std::to_string(i))}});
    batch.push_back(ops::append_history{{"h/1", i, i}});
  }
  batch.push_back(ops::append_history{{"h/0", 1, 3}});
  write(batch);
  write({ops::trim_history{"h/1", 4}});
  auto s = store->load();
  ASSERT_EQ(s.history.size(), 3u);
  EXPECT_EQ(s.history[0].tag, "h/0");
  EXPECT_EQ(s.history[1].tag, "h/1");
  EXPECT_EQ(s.history[1].offset, 4u);
  EXPECT_EQ(s.history[2].offset, 5u);
  EXPECT_EQ(s.history[2].message_id, 5u);
}

TEST_P(StoreContract, IncomingQos2IdsAreASet) {
  write({ops::put_incoming{"c", "1"}, ops::put_incoming{"c", "1"}, ops::put_incoming{"c", "2"}});
  write({ops::drop_incoming{"c", "1"}, ops::drop_incoming{"c", "nope"}});
  auto s = store->load();
  ASSERT_EQ(s.incoming.size(), 1u);
  EXPECT_EQ(s.incoming[0].second, "2");
}

TEST_P(StoreContract, DelayedWillsAreReplacedAndDroppedPerClient) {
  auto first = std::const_pointer_cast<core::message>(msg("wills/a", "1"));
  auto second = std::const_pointer_cast<core::message>(msg("wills/a", "2"));
  second->qos = 1;
  auto props = std::make_shared<core::message_properties>();
  props->user.emplace_back("why", "gone");
  second->props = props;
  write({ops::put_will{{"a", first, false, 1000}},
         ops::put_will{{"b", msg("wills/b", "3"), true, 5}}});
  write({ops::put_will{{"a", second, true, 2000}}, ops::drop_will{"b"}, ops::drop_will{"nope"}});
  auto s = store->load();
  ASSERT_EQ(s.wills.size(), 1u);
  EXPECT_EQ(s.wills[0].client_id, "a");
  EXPECT_TRUE(s.wills[0].retain);
  EXPECT_EQ(s.wills[0].due_ms, 2000);
  expect_same(*s.wills[0].will, *second);
}

// The reads a shared store needs (one client's state, the retained messages a filter
// matches) answer exactly what load() holds for them.
TEST_P(StoreContract, OneClientsStateAndTheRetainedMessagesOfAFilter) {
  auto a = std::const_pointer_cast<core::message>(msg("t", "a"));
  a->seq = 1;
  core::stored_session c{"c", 60, 5, {{"t/#", 1}}};
  write({ops::put_message{{1, a}}, ops::put_session{c}, ops::put_session{{"d", 1, 0, {}}},
         ops::enqueue{{"c", 7, 1, 1, false}}, ops::enqueue{{"d", 1, 1, 1, false}},
         ops::put_incoming{"c", "q2"}, ops::put_will{{"c", msg("w", "bye"), true, 9}},
         ops::put_retained{msg("plant/1/temp", "1")}, ops::put_retained{msg("plant/2/temp", "2")},
         ops::put_retained{msg("other", "3")}});
  auto got = store->load_client("c");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->session.client_id, "c");
  EXPECT_EQ(got->session.expiry_s, 60);
  EXPECT_EQ(got->session.subscriptions, c.subscriptions);
  ASSERT_EQ(got->queue.size(), 1u);
  EXPECT_EQ(got->queue[0].seq, 7u);
  ASSERT_EQ(got->messages.size(), 1u);
  expect_same(*got->messages[0].msg, *a);
  EXPECT_EQ(got->incoming, std::vector<std::string>{"q2"});
  ASSERT_TRUE(got->will);
  EXPECT_EQ(got->will->due_ms, 9);
  EXPECT_FALSE(store->load_client("nobody"));
  EXPECT_FALSE(store->load_client("d")->will);
  auto retained = store->load_retained("plant/+/temp");
  ASSERT_EQ(retained.size(), 2u);
  EXPECT_EQ(retained[0]->tag, "plant/1/temp");
  EXPECT_EQ(retained[1]->tag, "plant/2/temp");
  EXPECT_EQ(store->load_retained("#").size(), 3u);
}

INSTANTIATE_TEST_SUITE_P(
    Stores, StoreContract,
    ::testing::Values(store_kind{"memory",
                                 [](const std::string&) {
                                   return std::make_unique<store::memory_store>();
                                 }},
                      store_kind{"sqlite",
                                 [](const std::string& dir) {
                                   return std::make_unique<store::sqlite_store>(dir);
                                 }}),
    [](const auto& p) { return std::string(p.param.name); });

// --- the on-disk store only ---

TEST(SqliteStore, AReopenedFileHoldsWhatWasWritten) {
  temp_dir dir;
  {
    store::sqlite_store s(dir.path.string());
    std::vector<core::store_op> batch{ops::put_retained{msg("r/1", "x")},
                                      ops::put_session{{"dev", 10, 0, {{"a/#", 1}}}}};
    s.write(batch);
  }
  store::sqlite_store again(dir.path.string());
  auto snap = again.load();
  ASSERT_EQ(snap.retained.size(), 1u);
  expect_same(*snap.retained[0], *msg("r/1", "x"));
  ASSERT_EQ(snap.sessions.size(), 1u);
  EXPECT_EQ(snap.sessions[0].subscriptions.size(), 1u);
}

TEST(SqliteStore, ASecondOpenOfTheSameDirectoryIsRefused) {
  temp_dir dir;
  store::sqlite_store first(dir.path.string());
  try {
    store::sqlite_store second(dir.path.string());
    FAIL() << "opened twice";
  } catch (const core::store_error& e) {
    EXPECT_NE(std::string(e.what()).find("in use by another process"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("wsagent.db"), std::string::npos) << e.what();
  }
}

TEST(SqliteStore, ADamagedFileIsReportedNotReplaced) {
  temp_dir dir;
  std::filesystem::create_directories(dir.path);
  const auto file = dir.path / "wsagent.db";
  {
    std::ofstream out(file, std::ios::binary);
    out << std::string(4096, 'x');  // not a database
  }
  try {
    store::sqlite_store s(dir.path.string());
    FAIL() << "opened a damaged file";
  } catch (const core::store_error& e) {
    EXPECT_NE(std::string(e.what()).find(file.string()), std::string::npos) << e.what();
  }
  EXPECT_EQ(std::filesystem::file_size(file), 4096u);  // left as it was
}

TEST(SqliteStore, ASchema1FileGainsMessagePropertiesAndWills) {
  temp_dir dir;
  std::filesystem::create_directories(dir.path);
  {
    // The file as wsagent wrote it before message properties (schema 1).
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir.path / "wsagent.db").c_str(), &db), SQLITE_OK);
    const char* cols =
        "payload BLOB NOT NULL, format INTEGER NOT NULL, typed INTEGER NOT NULL, retain INTEGER "
        "NOT NULL, qos INTEGER NOT NULL, sender TEXT NOT NULL, msgid TEXT NOT NULL, timestamp_ms "
        "INTEGER NOT NULL, expires_ms INTEGER NOT NULL";
    const std::string sql = std::string(
                                "CREATE TABLE messages (id INTEGER PRIMARY KEY, tag TEXT "
                                "NOT NULL, ") +
                            cols + "); CREATE TABLE retained (tag TEXT PRIMARY KEY, " + cols +
                            ") WITHOUT ROWID; INSERT INTO retained VALUES ('old', '1', 0, 0, 1, "
                            "0, 'dev', 'm-1', 5, 0); PRAGMA user_version = 1;";
    ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
  }
  store::sqlite_store s(dir.path.string());
  auto snap = s.load();
  ASSERT_EQ(snap.retained.size(), 1u);
  EXPECT_EQ(snap.retained[0]->tag, "old");
  EXPECT_FALSE(snap.retained[0]->props);
  auto m = std::const_pointer_cast<core::message>(msg("new", "2"));
  auto props = std::make_shared<core::message_properties>();
  props->content_type = "text/plain";
  m->props = props;
  std::vector<core::store_op> batch{ops::put_retained{m}, ops::put_will{{"dev", m, false, 7}}};
  s.write(batch);
  snap = s.load();
  ASSERT_EQ(snap.retained.size(), 2u);
  expect_same(*snap.retained[0], *m);
  ASSERT_EQ(snap.wills.size(), 1u);  // and delayed wills (schema 3)
  expect_same(*snap.wills[0].will, *m);
}

// Files of every past schema version, as those wsagent versions wrote them
// (tests/data/sqlite/make.py says how), and a damaged one: each opens (upgraded in place)
// with everything it held.
class GoldenFiles : public ::testing::TestWithParam<int> {
 protected:
  // A copy of `name` in a fresh data directory.
  std::string copy_of(const std::string& name) {
    std::filesystem::create_directories(dir.path);
    std::filesystem::copy_file(
        std::filesystem::path(WSAGENT_SOURCE_DIR) / "tests/data/sqlite" / name,
        dir.path / "wsagent.db");
    return dir.path.string();
  }
  temp_dir dir;
};

int user_version(const std::filesystem::path& file) {
  sqlite3* db = nullptr;
  sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, nullptr);
  int v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

TEST_P(GoldenFiles, OpenWithEverythingTheirVersionWrote) {
  const int schema = GetParam();
  const auto path = copy_of("schema-" + std::to_string(schema) + ".db");
  EXPECT_EQ(user_version(dir.path / "wsagent.db"), schema);
  {
    store::sqlite_store s(path);
    const auto snap = s.load();
    // The persistent subscriber, offline with its subscription and three QoS 1 messages.
    auto keeper = s.load_client("keeper");
    ASSERT_TRUE(keeper);
    EXPECT_EQ(keeper->session.expiry_s, 86400);
    ASSERT_EQ(keeper->session.subscriptions.size(), 1u);
    EXPECT_EQ(keeper->session.subscriptions[0].filter, "golden/#");
    EXPECT_EQ(keeper->session.subscriptions[0].options.qos, 1);
    ASSERT_EQ(keeper->queue.size(), 3u);
    std::vector<std::string> queued;
    for (const auto& m : keeper->messages)
      queued.push_back(m.msg->tag);
    EXPECT_EQ(queued, (std::vector<std::string>{"golden/retained", "golden/q1", "golden/q2"}));
    EXPECT_EQ(keeper->messages[1].msg->payload, R"({"n": 1})");
    EXPECT_EQ(keeper->messages[1].msg->from, "sender");
    EXPECT_EQ(keeper->messages[1].msg->msgid, "q1");
    // The retained message.
    auto retained = s.load_retained("golden/#");
    ASSERT_EQ(retained.size(), 1u);
    EXPECT_EQ(retained[0]->payload, R"({"v": 1})");
    EXPECT_FALSE(retained[0]->props);  // schema 1 had none: the upgrade adds an empty column
    // The history of hist/a, offsets 1 to 3.
    std::vector<std::uint64_t> offsets;
    for (const auto& h : snap.history)
      if (h.tag == "hist/a") offsets.push_back(h.offset);
    EXPECT_EQ(offsets, (std::vector<std::uint64_t>{1, 2, 3}));
    // The QoS 2 publish received and not yet released.
    auto sender = s.load_client("sender");
    ASSERT_TRUE(sender);
    EXPECT_EQ(sender->incoming, std::vector<std::string>{"in-flight-1"});
    // The MQTT 5 will waiting for its delay (schema 3 and later).
    if (schema >= 3) {
      ASSERT_EQ(snap.wills.size(), 1u);
      EXPECT_EQ(snap.wills[0].client_id, "willer");
      EXPECT_EQ(snap.wills[0].will->tag, "golden/will");
      EXPECT_EQ(snap.wills[0].will->payload, "gone");
    } else {
      EXPECT_TRUE(snap.wills.empty());
    }
    // Writes go on in the upgraded file.
    std::vector<core::store_op> batch{ops::put_retained{msg("golden/new", "7")}};
    s.write(batch);
  }
  EXPECT_EQ(user_version(dir.path / "wsagent.db"), 4);  // upgraded in place
  store::sqlite_store again(path);
  EXPECT_EQ(again.load_retained("golden/#").size(), 2u);
}

INSTANTIATE_TEST_SUITE_P(Schemas, GoldenFiles, ::testing::Values(1, 2, 3),
                         [](const auto& p) { return "schema_" + std::to_string(p.param); });

TEST(SqliteStore, TheDamagedGoldenFileIsRefusedAndLeftAsItWas) {
  temp_dir dir;
  std::filesystem::create_directories(dir.path);
  const auto file = dir.path / "wsagent.db";
  std::filesystem::copy_file(
      std::filesystem::path(WSAGENT_SOURCE_DIR) / "tests/data/sqlite/damaged.db", file);
  const auto size = std::filesystem::file_size(file);
  try {
    store::sqlite_store s(dir.path.string());
    FAIL() << "opened a damaged file";
  } catch (const core::store_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(file.string()), std::string::npos) << what;
    EXPECT_NE(what.find("is damaged"), std::string::npos) << what;
    EXPECT_NE(what.find("restore a backup"), std::string::npos) << what;
  }
  EXPECT_EQ(std::filesystem::file_size(file), size);
}

TEST(SqliteStore, AFailedBatchAppliesNothing) {
  temp_dir dir;
  {
    store::sqlite_store s(dir.path.string());  // creates the schema
  }
  {
    // A trigger makes the second insert of the batch fail, as a full disk would.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir.path / "wsagent.db").c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db,
                           "CREATE TRIGGER boom BEFORE INSERT ON retained WHEN NEW.tag = 'boom' "
                           "BEGIN SELECT RAISE(ABORT, 'no room'); END;",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  store::sqlite_store s(dir.path.string());
  std::vector<core::store_op> batch{ops::put_retained{msg("a", "1")},
                                    ops::put_retained{msg("boom", "2")}};
  try {
    s.write(batch);
    FAIL() << "the batch was written";
  } catch (const core::store_error& e) {
    EXPECT_NE(std::string(e.what()).find("no room"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(s.load().retained.empty());
  std::vector<core::store_op> next{ops::put_retained{msg("a", "1")}};
  s.write(next);  // the store goes on after a failed batch
  EXPECT_EQ(s.load().retained.size(), 1u);
}

// --- the writer thread ---

// A store that counts write() calls and can be told to fail.
class counting_store final : public core::store {
 public:
  const char* kind() const noexcept override { return "counting"; }
  core::store_snapshot load() override { return inner.load(); }
  void write(std::span<const core::store_op> batch) override {
    if (slow) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (fail) throw core::store_error("disk full");
    ++writes;
    inner.write(batch);
  }
  std::optional<core::stored_client> load_client(std::string_view id) override {
    return inner.load_client(id);
  }
  std::vector<core::message_ptr> load_retained(std::string_view f) override {
    return inner.load_retained(f);
  }
  wsagent::store::memory_store inner;
  std::atomic<int> writes{0};
  std::atomic<bool> fail{false};
  std::atomic<bool> slow{false};
};

TEST(StoreWriter, CompletesAfterTheWriteAndGroupsWhatWaited) {
  counting_store s;
  s.slow = true;
  core::store_writer w(s);
  std::atomic<int> done{0};
  for (int i = 0; i < 50; ++i)
    w.submit({ops::put_retained{msg("t/" + std::to_string(i), "x")}}, [&](bool ok) {
      EXPECT_TRUE(ok);
      ++done;
    });
  w.flush();
  EXPECT_EQ(done.load(), 50);
  EXPECT_EQ(s.inner.load().retained.size(), 50u);
  // 20 ms per write: 50 submissions cannot have taken 50 writes.
  EXPECT_LT(s.writes.load(), 50);
  EXPECT_EQ(w.stats().ops, 50u);
}

TEST(StoreWriter, AFailedWriteIsReportedToItsCompletionsAndTheWriterGoesOn) {
  counting_store s;
  std::atomic<int> errors{0};
  core::store_writer w(s, [&](const std::string& what) {
    EXPECT_EQ(what, "disk full");
    ++errors;
  });
  s.fail = true;
  std::atomic<int> failed{0};
  w.submit({ops::put_retained{msg("a", "1")}}, [&](bool ok) { failed += ok ? 0 : 1; });
  w.flush();
  s.fail = false;
  std::atomic<int> ok{0};
  w.submit({ops::put_retained{msg("b", "2")}}, [&](bool good) { ok += good ? 1 : 0; });
  w.flush();
  EXPECT_EQ(failed.load(), 1);
  EXPECT_EQ(ok.load(), 1);
  EXPECT_EQ(errors.load(), 1);
  EXPECT_EQ(w.stats().failed_batches, 1u);
}

TEST(StoreWriter, StopWritesWhatWasSubmittedAndRefusesLaterWork) {
  counting_store s;
  s.slow = true;
  auto w = std::make_unique<core::store_writer>(s);
  for (int i = 0; i < 5; ++i)
    w->submit({ops::put_retained{msg("s/" + std::to_string(i), "x")}});
  w->stop();
  EXPECT_EQ(s.inner.load().retained.size(), 5u);
  bool called = false, result = true;
  w->submit({ops::put_retained{msg("late", "x")}}, [&](bool ok) {
    called = true;
    result = ok;
  });
  EXPECT_TRUE(called);
  EXPECT_FALSE(result);
  w->flush();  // returns: nothing is owed
}

}  // namespace
