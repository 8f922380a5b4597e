#include "store/sqlite_store.hpp"

#include <sqlite3.h>

#include <filesystem>
#include <system_error>

#include "core/tag.hpp"

namespace wsagent::store {

namespace ops = core::store_ops;

namespace {

// 2: messages and retained gained `props` (message_properties::serialize()).
constexpr int schema_version = 4;  // 2: message properties; 3: delayed wills; 4: meta

// A subscription's options in the `qos` column of `subscriptions`: bits 0-1 the QoS, bit 2
// no local, bit 3 retain as published, bits 8-39 the MQTT 5 Subscription Identifier. A row
// written before the options existed holds the QoS alone, and reads the same.
std::int64_t pack_options(const core::subscription_options& o) {
  return std::int64_t{o.qos} | (o.no_local ? 4 : 0) | (o.retain_as_published ? 8 : 0) |
         (std::int64_t{o.id} << 8);
}

core::subscription_options unpack_options(std::int64_t v) {
  core::subscription_options o(static_cast<std::uint8_t>(v & 3));
  o.no_local = v & 4;
  o.retain_as_published = v & 8;
  o.id = static_cast<std::uint32_t>(v >> 8);
  return o;
}

// The columns of a stored message after its key, in this order, in `messages` and
// `retained` alike.
constexpr const char* message_columns =
    "payload BLOB NOT NULL, format INTEGER NOT NULL, typed INTEGER NOT NULL, "
    "retain INTEGER NOT NULL, qos INTEGER NOT NULL, sender TEXT NOT NULL, "
    "msgid TEXT NOT NULL, timestamp_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL, "
    "props BLOB NOT NULL DEFAULT x''";
constexpr int message_column_count = 10;

template <class... F>
struct overloaded : F... {
  using F::operator()...;
};
template <class... F>
overloaded(F...) -> overloaded<F...>;

// One prepared statement: reset after every use.
class statement {
 public:
  statement() = default;
  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;
  ~statement() { sqlite3_finalize(stmt_); }

  int prepare(sqlite3* db, const std::string& sql) {
    return sqlite3_prepare_v3(db, sql.c_str(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr);
  }
  sqlite3_stmt* get() const noexcept { return stmt_; }

  statement& bind(int i, std::string_view s) {
    sqlite3_bind_text(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_STATIC);
    return *this;
  }
  statement& bind_blob(int i, std::string_view s) {
    sqlite3_bind_blob(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_STATIC);
    return *this;
  }
  // A blob SQLite copies: `s` may go before the statement runs.
  statement& bind_copy(int i, std::string_view s) {
    sqlite3_bind_blob(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
    return *this;
  }
  statement& bind(int i, std::int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  // Runs a statement that returns no row; SQLITE_DONE or an error code.
  int run() {
    int rc = sqlite3_step(stmt_);
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
    return rc == SQLITE_ROW ? SQLITE_DONE : rc;
  }

 private:
  sqlite3_stmt* stmt_ = nullptr;
};

std::string_view column_text(sqlite3_stmt* s, int i) {
  auto* p = reinterpret_cast<const char*>(sqlite3_column_blob(s, i));
  return p ? std::string_view(p, static_cast<std::size_t>(sqlite3_column_bytes(s, i)))
           : std::string_view();
}

// Binds `m`'s columns (message_columns) from parameter `first` on.
void bind_message(statement& st, int first, const core::message& m) {
  st.bind_blob(first, m.payload)
      .bind(first + 1, static_cast<std::int64_t>(m.format))
      .bind(first + 2, static_cast<std::int64_t>(m.flags))  // the column named `typed` before
      // bit 0: retained; bit 1: published with retain (Retain As Published)
      .bind(first + 3, static_cast<std::int64_t>(m.retain) | (m.published_retain ? 2 : 0))
      .bind(first + 4, static_cast<std::int64_t>(m.qos))
      .bind(first + 5, m.from)
      .bind(first + 6, m.msgid)
      .bind(first + 7, m.timestamp_ms)
      .bind(first + 8, m.expires_ms)
      .bind_copy(first + 9, m.props ? m.props->serialize() : std::string());
}

// Reads a message whose tag is column `tag_col` and whose message_columns start at `first`.
std::shared_ptr<core::message> read_message(sqlite3_stmt* s, int tag_col, int first) {
  auto m = std::make_shared<core::message>();
  m->tag = column_text(s, tag_col);
  m->payload = column_text(s, first);
  switch (sqlite3_column_int(s, first + 1)) {
    case 1:
      m->format = core::payload_format::binary;
      break;
    case 2:
      m->format = core::payload_format::text;
      break;
    case 3:
      m->format = core::payload_format::unspecified;
      break;
    default:
      m->format = core::payload_format::json;
  }
  // Schemas 1 to 3 wrote 0 or 1 (a native device message): bit 0, native.device, the only flag
  // reserved first.
  m->flags = static_cast<std::uint8_t>(sqlite3_column_int(s, first + 2));
  m->retain = (sqlite3_column_int(s, first + 3) & 1) != 0;
  m->published_retain = (sqlite3_column_int(s, first + 3) & 2) != 0;
  m->qos = static_cast<std::uint8_t>(sqlite3_column_int(s, first + 4));
  m->from = column_text(s, first + 5);
  m->msgid = column_text(s, first + 6);
  m->timestamp_ms = sqlite3_column_int64(s, first + 7);
  m->expires_ms = sqlite3_column_int64(s, first + 8);
  m->props = core::message_properties::parse(column_text(s, first + 9));
  return m;
}

std::string placeholders(int n) {
  std::string s;
  for (int i = 0; i < n; ++i)
    s += i ? ",?" : "?";
  return s;
}

}  // namespace

struct sqlite_store::statements {
  statement put_message, drop_message, put_retained, clear_retained, put_session, drop_session,
      drop_subscriptions, put_subscription, drop_queue, drop_incoming_all, enqueue, mark_sent,
      dequeue, append_history, trim_history, put_incoming, drop_incoming, put_will, drop_will,
      put_meta;
};

sqlite_store::sqlite_store(const std::string& data_dir, sync_mode sync)
    : path_((std::filesystem::path(data_dir) / "wsagent.db").string()) {
  try {
    open(data_dir, sync);
  } catch (...) {
    // The destructor does not run for a constructor that throws: close here.
    st_.reset();
    sqlite3_close_v2(db_);
    db_ = nullptr;
    throw;
  }
}

void sqlite_store::open(const std::string& data_dir, sync_mode sync) {
  std::error_code ec;
  std::filesystem::create_directories(data_dir, ec);
  if (ec) fail("cannot create the data directory " + data_dir + ": " + ec.message());
  const bool existed = std::filesystem::exists(path_, ec);
  int rc =
      sqlite3_open_v2(path_.c_str(), &db_,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) fail("cannot open");
  sqlite3_extended_result_codes(db_, 1);
  sqlite3_busy_timeout(db_, 0);

  // One agent per data directory: hold the lock for the life of the process.
  exec("PRAGMA locking_mode = EXCLUSIVE");
  if (sqlite3_exec(db_, "BEGIN EXCLUSIVE; COMMIT;", nullptr, nullptr, nullptr) != SQLITE_OK) {
    if ((sqlite3_errcode(db_) & 0xff) == SQLITE_BUSY)
      fail("is in use by another process (another wsagent with the same data_dir?)");
    fail("cannot be read");
  }
  if (existed) {
    // A damaged file is reported, never silently replaced.
    sqlite3_stmt* check = nullptr;
    if (sqlite3_prepare_v2(db_, "PRAGMA quick_check", -1, &check, nullptr) != SQLITE_OK)
      fail("cannot be read");
    std::string verdict;
    if (sqlite3_step(check) == SQLITE_ROW) verdict = column_text(check, 0);
    const int step_rc = sqlite3_errcode(db_);
    sqlite3_finalize(check);
    if (verdict.empty() && step_rc != SQLITE_OK && step_rc != SQLITE_DONE && step_rc != SQLITE_ROW)
      fail("cannot be read");
    if (verdict != "ok")
      fail("is damaged (" + verdict +
           "); the agent will not start over it: restore a backup, or move the file away to "
           "start empty");
  }
  exec("PRAGMA journal_mode = WAL");
  exec(sync == sync_mode::full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");

  int version = 0;
  {
    sqlite3_stmt* v = nullptr;
    sqlite3_prepare_v2(db_, "PRAGMA user_version", -1, &v, nullptr);
    if (v && sqlite3_step(v) == SQLITE_ROW) version = sqlite3_column_int(v, 0);
    sqlite3_finalize(v);
  }
  if (version > schema_version)
    fail("was written by a newer wsagent (schema " + std::to_string(version) + ", this one knows " +
         std::to_string(schema_version) + ")");
  const std::string mc = message_columns;
  if (version == 1)  // before message properties
    exec(
        "BEGIN;"
        "ALTER TABLE messages ADD COLUMN props BLOB NOT NULL DEFAULT x'';"
        "ALTER TABLE retained ADD COLUMN props BLOB NOT NULL DEFAULT x'';"
        "COMMIT;");
  exec(("BEGIN;"
        "CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, tag TEXT NOT NULL, " +
        mc +
        ");"
        "CREATE TABLE IF NOT EXISTS retained (tag TEXT PRIMARY KEY, " +
        mc +
        ") WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS sessions (client_id TEXT PRIMARY KEY, expiry_s INTEGER "
        "NOT NULL, disconnected_ms INTEGER NOT NULL) WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS subscriptions (client_id TEXT NOT NULL, filter TEXT NOT "
        "NULL, qos INTEGER NOT NULL, PRIMARY KEY (client_id, filter)) WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS queue (client_id TEXT NOT NULL, seq INTEGER NOT NULL, "
        "message_id INTEGER NOT NULL, qos INTEGER NOT NULL, sent INTEGER NOT NULL, "
        "PRIMARY KEY (client_id, seq)) WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS history (tag TEXT NOT NULL, offset INTEGER NOT NULL, "
        "message_id INTEGER NOT NULL, PRIMARY KEY (tag, offset)) WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS incoming (client_id TEXT NOT NULL, msgid TEXT NOT NULL, "
        "PRIMARY KEY (client_id, msgid)) WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS wills (client_id TEXT PRIMARY KEY, due_ms INTEGER NOT NULL, "
        "will_retain INTEGER NOT NULL, tag TEXT NOT NULL, " +
        mc +
        ") WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) "
        "WITHOUT ROWID;"
        "PRAGMA user_version = " +
        std::to_string(schema_version) + ";COMMIT;")
           .c_str());

  st_ = std::make_unique<statements>();
  auto prep = [&](statement& s, const std::string& sql) {
    if (s.prepare(db_, sql) != SQLITE_OK) fail("cannot prepare '" + sql + "'");
  };
  const std::string mp = placeholders(message_column_count);
  prep(st_->put_message, "INSERT OR REPLACE INTO messages VALUES (?,?," + mp + ")");
  prep(st_->drop_message, "DELETE FROM messages WHERE id = ?");
  prep(st_->put_retained, "INSERT OR REPLACE INTO retained VALUES (?," + mp + ")");
  prep(st_->clear_retained, "DELETE FROM retained WHERE tag = ?");
  prep(st_->put_session, "INSERT OR REPLACE INTO sessions VALUES (?,?,?)");
  prep(st_->drop_session, "DELETE FROM sessions WHERE client_id = ?");
  prep(st_->drop_subscriptions, "DELETE FROM subscriptions WHERE client_id = ?");
  prep(st_->put_subscription, "INSERT OR REPLACE INTO subscriptions VALUES (?,?,?)");
  prep(st_->drop_queue, "DELETE FROM queue WHERE client_id = ?");
  prep(st_->drop_incoming_all, "DELETE FROM incoming WHERE client_id = ?");
  prep(st_->enqueue, "INSERT OR REPLACE INTO queue VALUES (?,?,?,?,?)");
  prep(st_->mark_sent, "UPDATE queue SET sent = 1 WHERE client_id = ? AND seq = ?");
  prep(st_->dequeue, "DELETE FROM queue WHERE client_id = ? AND seq = ?");
  prep(st_->append_history, "INSERT OR REPLACE INTO history VALUES (?,?,?)");
  prep(st_->trim_history, "DELETE FROM history WHERE tag = ? AND offset < ?");
  prep(st_->put_incoming, "INSERT OR IGNORE INTO incoming VALUES (?,?)");
  prep(st_->drop_incoming, "DELETE FROM incoming WHERE client_id = ? AND msgid = ?");
  prep(st_->put_will, "INSERT OR REPLACE INTO wills VALUES (?,?,?,?," + mp + ")");
  prep(st_->drop_will, "DELETE FROM wills WHERE client_id = ?");
  prep(st_->put_meta, "INSERT OR REPLACE INTO meta VALUES (?,?)");
}

sqlite_store::~sqlite_store() {
  st_.reset();  // statements before the connection
  sqlite3_close_v2(db_);
}

void sqlite_store::fail(const std::string& what) const {
  std::string msg = "data file " + path_ + " " + what;
  if (db_ && sqlite3_errcode(db_) != SQLITE_OK && sqlite3_errcode(db_) != SQLITE_DONE &&
      sqlite3_errcode(db_) != SQLITE_ROW)
    msg += std::string(": ") + sqlite3_errmsg(db_);
  throw core::store_error(msg);
}

void sqlite_store::exec(const char* sql) {
  if (sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) != SQLITE_OK)
    fail(std::string("cannot run '") + std::string(sql).substr(0, 60) + "'");
}

template <class F>
void sqlite_store::each(const char* sql, F&& row, std::string_view param, bool bind) {
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db_, sql, -1, &s, nullptr) != SQLITE_OK) fail("cannot be read");
  if (bind) sqlite3_bind_text(s, 1, param.data(), static_cast<int>(param.size()), SQLITE_TRANSIENT);
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW)
    row(s);
  sqlite3_finalize(s);
  if (rc != SQLITE_DONE) fail("cannot be read");
}

// One row of each table, as load() and load_client() both read it.
namespace {

core::stored_session session_of(sqlite3_stmt* s) {  // client_id, expiry_s, disconnected_ms
  core::stored_session sess;
  sess.client_id = column_text(s, 0);
  sess.expiry_s = sqlite3_column_int64(s, 1);
  sess.disconnected_ms = sqlite3_column_int64(s, 2);
  return sess;
}

core::queued_message queued_of(sqlite3_stmt* s) {  // client_id, seq, message_id, qos, sent
  core::queued_message q;
  q.client_id = column_text(s, 0);
  q.seq = static_cast<std::uint64_t>(sqlite3_column_int64(s, 1));
  q.message_id = static_cast<std::uint64_t>(sqlite3_column_int64(s, 2));
  q.qos = static_cast<std::uint8_t>(sqlite3_column_int(s, 3));
  q.sent = sqlite3_column_int(s, 4) != 0;
  return q;
}

core::stored_message stored_message_of(sqlite3_stmt* s) {  // SELECT * FROM messages
  const auto id = static_cast<std::uint64_t>(sqlite3_column_int64(s, 0));
  auto m = read_message(s, 1, 2);
  m->seq = id;  // a stored message's id is its seq
  return {id, std::move(m)};
}

core::stored_will will_of(sqlite3_stmt* s) {  // SELECT * FROM wills
  return {std::string(column_text(s, 0)), read_message(s, 3, 4), sqlite3_column_int(s, 2) != 0,
          sqlite3_column_int64(s, 1)};
}

}  // namespace

core::store_snapshot sqlite_store::load() {
  core::store_snapshot snap;
  each("SELECT * FROM retained ORDER BY tag",
       [&](sqlite3_stmt* s) { snap.retained.push_back(read_message(s, 0, 1)); });
  each("SELECT client_id, expiry_s, disconnected_ms FROM sessions ORDER BY client_id",
       [&](sqlite3_stmt* s) { snap.sessions.push_back(session_of(s)); });
  {
    std::size_t i = 0;
    each("SELECT client_id, filter, qos FROM subscriptions ORDER BY client_id, filter",
         [&](sqlite3_stmt* s) {
           const auto client = column_text(s, 0);
           while (i < snap.sessions.size() && snap.sessions[i].client_id < client)
             ++i;
           if (i == snap.sessions.size() || snap.sessions[i].client_id != client) return;
           snap.sessions[i].subscriptions.push_back(
               {std::string(column_text(s, 1)), unpack_options(sqlite3_column_int64(s, 2))});
         });
  }
  each("SELECT client_id, seq, message_id, qos, sent FROM queue ORDER BY client_id, seq",
       [&](sqlite3_stmt* s) { snap.queue.push_back(queued_of(s)); });
  each("SELECT tag, offset, message_id FROM history ORDER BY tag, offset", [&](sqlite3_stmt* s) {
    snap.history.push_back({std::string(column_text(s, 0)),
                            static_cast<std::uint64_t>(sqlite3_column_int64(s, 1)),
                            static_cast<std::uint64_t>(sqlite3_column_int64(s, 2))});
  });
  each("SELECT * FROM messages ORDER BY id",
       [&](sqlite3_stmt* s) { snap.messages.push_back(stored_message_of(s)); });
  each("SELECT client_id, msgid FROM incoming ORDER BY client_id, msgid", [&](sqlite3_stmt* s) {
    snap.incoming.emplace_back(std::string(column_text(s, 0)), std::string(column_text(s, 1)));
  });
  each("SELECT * FROM wills ORDER BY client_id",
       [&](sqlite3_stmt* s) { snap.wills.push_back(will_of(s)); });
  each("SELECT key, value FROM meta ORDER BY key", [&](sqlite3_stmt* s) {
    snap.meta.emplace_back(std::string(column_text(s, 0)), std::string(column_text(s, 1)));
  });
  return snap;
}

std::optional<core::stored_client> sqlite_store::load_client(std::string_view client_id) {
  std::optional<core::stored_client> c;
  each(
      "SELECT client_id, expiry_s, disconnected_ms FROM sessions WHERE client_id = ?1",
      [&](sqlite3_stmt* s) { c.emplace().session = session_of(s); }, client_id, true);
  if (!c) return c;
  each(
      "SELECT filter, qos FROM subscriptions WHERE client_id = ?1 ORDER BY filter",
      [&](sqlite3_stmt* s) {
        c->session.subscriptions.push_back(
            {std::string(column_text(s, 0)), unpack_options(sqlite3_column_int64(s, 1))});
      },
      client_id, true);
  each(
      "SELECT client_id, seq, message_id, qos, sent FROM queue WHERE client_id = ?1 ORDER BY seq",
      [&](sqlite3_stmt* s) { c->queue.push_back(queued_of(s)); }, client_id, true);
  each(
      "SELECT * FROM messages WHERE id IN (SELECT message_id FROM queue WHERE client_id = ?1) "
      "ORDER BY id",
      [&](sqlite3_stmt* s) { c->messages.push_back(stored_message_of(s)); }, client_id, true);
  each(
      "SELECT msgid FROM incoming WHERE client_id = ?1 ORDER BY msgid",
      [&](sqlite3_stmt* s) { c->incoming.emplace_back(column_text(s, 0)); }, client_id, true);
  each(
      "SELECT * FROM wills WHERE client_id = ?1", [&](sqlite3_stmt* s) { c->will = will_of(s); },
      client_id, true);
  return c;
}

std::vector<core::message_ptr> sqlite_store::load_retained(std::string_view filter) {
  std::vector<core::message_ptr> out;
  each("SELECT * FROM retained ORDER BY tag", [&](sqlite3_stmt* s) {
    auto m = read_message(s, 0, 1);
    if (core::filter_matches(filter, m->tag)) out.push_back(std::move(m));
  });
  return out;
}

void sqlite_store::write(std::span<const core::store_op> batch) {
  if (batch.empty()) return;
  exec("BEGIN IMMEDIATE");
  try {
    for (const auto& op : batch)
      apply(op);
  } catch (...) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
  if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
    std::string why = sqlite3_errmsg(db_);
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    throw core::store_error("data file " + path_ + " cannot be written: " + why);
  }
}

void sqlite_store::apply(const core::store_op& op) {
  auto& st = *st_;
  auto check = [&](int rc) {
    if (rc != SQLITE_DONE) fail("cannot be written");
  };
  auto i64 = [](std::uint64_t v) { return static_cast<std::int64_t>(v); };
  std::visit(
      overloaded{
          [&](const ops::put_message& o) {
            st.put_message.bind(1, i64(o.m.id)).bind(2, o.m.msg->tag);
            bind_message(st.put_message, 3, *o.m.msg);
            check(st.put_message.run());
          },
          [&](const ops::drop_message& o) { check(st.drop_message.bind(1, i64(o.id)).run()); },
          [&](const ops::put_retained& o) {
            st.put_retained.bind(1, o.msg->tag);
            bind_message(st.put_retained, 2, *o.msg);
            check(st.put_retained.run());
          },
          [&](const ops::clear_retained& o) { check(st.clear_retained.bind(1, o.tag).run()); },
          [&](const ops::put_session& o) {
            check(st.put_session.bind(1, o.s.client_id)
                      .bind(2, o.s.expiry_s)
                      .bind(3, o.s.disconnected_ms)
                      .run());
            check(st.drop_subscriptions.bind(1, o.s.client_id).run());
            for (const auto& sub : o.s.subscriptions)
              check(st.put_subscription.bind(1, o.s.client_id)
                        .bind(2, sub.filter)
                        .bind(3, pack_options(sub.options))
                        .run());
          },
          [&](const ops::drop_session& o) {
            check(st.drop_session.bind(1, o.client_id).run());
            check(st.drop_subscriptions.bind(1, o.client_id).run());
            check(st.drop_queue.bind(1, o.client_id).run());
            check(st.drop_incoming_all.bind(1, o.client_id).run());
          },
          [&](const ops::enqueue& o) {
            check(st.enqueue.bind(1, o.q.client_id)
                      .bind(2, i64(o.q.seq))
                      .bind(3, i64(o.q.message_id))
                      .bind(4, static_cast<std::int64_t>(o.q.qos))
                      .bind(5, static_cast<std::int64_t>(o.q.sent))
                      .run());
          },
          [&](const ops::mark_sent& o) {
            check(st.mark_sent.bind(1, o.client_id).bind(2, i64(o.seq)).run());
          },
          [&](const ops::dequeue& o) {
            check(st.dequeue.bind(1, o.client_id).bind(2, i64(o.seq)).run());
          },
          [&](const ops::append_history& o) {
            check(st.append_history.bind(1, o.e.tag)
                      .bind(2, i64(o.e.offset))
                      .bind(3, i64(o.e.message_id))
                      .run());
          },
          [&](const ops::trim_history& o) {
            check(st.trim_history.bind(1, o.tag).bind(2, i64(o.below)).run());
          },
          [&](const ops::put_incoming& o) {
            check(st.put_incoming.bind(1, o.client_id).bind(2, o.msgid).run());
          },
          [&](const ops::drop_incoming& o) {
            check(st.drop_incoming.bind(1, o.client_id).bind(2, o.msgid).run());
          },
          [&](const ops::put_will& o) {
            st.put_will.bind(1, o.w.client_id)
                .bind(2, o.w.due_ms)
                .bind(3, std::int64_t{o.w.retain})
                .bind(4, o.w.will->tag);
            bind_message(st.put_will, 5, *o.w.will);
            check(st.put_will.run());
          },
          [&](const ops::drop_will& o) { check(st.drop_will.bind(1, o.client_id).run()); },
          [&](const ops::put_meta& o) {
            check(st.put_meta.bind(1, o.key).bind_blob(2, o.value).run());
          },
      },
      op);
}

}  // namespace wsagent::store
