#pragma once
// The store's writer thread: I/O threads submit changes and go on; the writer applies
// everything submitted since its last write as one batch (one transaction, one sync), then
// runs the completions of that batch. Durability costs latency (one commit), not
// throughput: under load each commit carries many changes (group commit).
//
// Lifecycle: started by the constructor, stopped by stop() or the destructor, which write
// what was submitted first. Completions run on the writer thread: they must only hand work
// to another thread (post to a connection's executor) and return.
//
// When write() fails (disk full, I/O error) the batch's completions get `false`, the
// failure is counted and reported through `on_error`, and the writer goes on with the next
// batch: a QoS 1 publisher then gets an error instead of an acknowledgement.

#include <condition_variable>

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>
#include "common/metrics.hpp"
#include "common/mutex.hpp"

#include "core/store.hpp"

namespace wsagent::core {

struct store_writer_stats {
  std::uint64_t batches = 0;  // write() calls
  std::uint64_t ops = 0;      // operations written
  std::uint64_t failed_batches = 0;
  std::size_t waiting_ops = 0;  // submitted, not yet being written
  // How long each write() took (the commit: transaction and sync), in seconds.
  common::histogram commit_seconds{common::latency_buckets()};
};

class store_writer {
 public:
  using completion = std::function<void(bool durable)>;
  using error_handler = std::function<void(const std::string& what)>;

  store_writer(store& s, error_handler on_error = {});
  ~store_writer();
  store_writer(const store_writer&) = delete;
  store_writer& operator=(const store_writer&) = delete;

  // Any thread: queue `ops` (applied after everything submitted before); `done` runs on
  // the writer thread once they are durable (or failed). Empty `ops` with a `done`: done
  // runs once everything submitted before is durable.
  void submit(std::vector<store_op> ops, completion done = {}) EXCLUDES(mutex_);
  // Blocks until everything submitted before the call is durable (or failed).
  void flush() EXCLUDES(mutex_);
  // Writes what is queued and ends the thread. Later submits fail at once.
  void stop() EXCLUDES(mutex_);

  store_writer_stats stats() const EXCLUDES(mutex_);
  // The figures as metrics: commits, operations, failures, their latency, what waits.
  void write_metrics(common::metric_set& out) const EXCLUDES(mutex_);

 private:
  void run() EXCLUDES(mutex_);

  store& store_;  // used by the writer thread only (after start-up)
  error_handler on_error_;
  // The last lock of the agent's order: submit() is called with any other held, and the
  // writer thread runs completions (which take the routing lock) without it.
  mutable common::mutex mutex_;
  std::condition_variable_any wake_;
  std::condition_variable_any written_;
  std::vector<store_op> pending_ GUARDED_BY(mutex_);
  std::vector<completion> pending_done_ GUARDED_BY(mutex_);
  std::uint64_t submitted_ GUARDED_BY(mutex_) = 0;  // submit() calls, numbered
  std::uint64_t durable_ GUARDED_BY(mutex_) = 0;    // submit() calls whose batch was written
  bool stopping_ GUARDED_BY(mutex_) = false;
  store_writer_stats stats_ GUARDED_BY(mutex_);
  std::thread thread_;
};

}  // namespace wsagent::core
