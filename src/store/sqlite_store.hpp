#pragma once
// The on-disk store, the default: one SQLite 3 database, `<data_dir>/wsagent.db`, in WAL
// mode. Each write() is one transaction (the store_writer batches many changes into it);
// with `sync = full` the commit is on disk when write() returns, with `normal` it survives
// a crash of the agent but the last commits may be lost if the machine loses power.
//
// Opening checks the file (PRAGMA quick_check) and takes an exclusive lock, so that a
// damaged file or a second agent on the same directory is reported (path and cause) and
// the agent never starts empty over existing data. The schema's version is the database's
// user_version; a file from a newer wsagent is refused.

#include <memory>
#include <string>

#include "core/store.hpp"

struct sqlite3;

namespace wsagent::store {

enum class sync_mode { full, normal };

class sqlite_store final : public core::store {
 public:
  // Opens (creating the directory and the file when missing). Throws core::store_error.
  sqlite_store(const std::string& data_dir, sync_mode sync = sync_mode::full);
  ~sqlite_store() override;
  sqlite_store(const sqlite_store&) = delete;
  sqlite_store& operator=(const sqlite_store&) = delete;

  const char* kind() const noexcept override { return "sqlite"; }
  core::store_snapshot load() override;
  void write(std::span<const core::store_op> batch) override;
  std::optional<core::stored_client> load_client(std::string_view client_id) override;
  std::vector<core::message_ptr> load_retained(std::string_view filter) override;

  const std::string& path() const noexcept { return path_; }

 private:
  struct statements;
  void open(const std::string& data_dir, sync_mode sync);
  [[noreturn]] void fail(const std::string& what) const;
  void exec(const char* sql);
  // Runs `sql` with text parameter 1 = `param` (when given), `row` per result row.
  template <class F>
  void each(const char* sql, F&& row, std::string_view param = {}, bool bind = false);
  void apply(const core::store_op& op);

  std::string path_;
  sqlite3* db_ = nullptr;
  std::unique_ptr<statements> st_;
};

}  // namespace wsagent::store
