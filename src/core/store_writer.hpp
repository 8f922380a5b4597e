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

#include "core/store.hpp"

namespace wsagent::core {

struct store_writer_stats {
  std::uint64_t batches = 0;  // write() calls
  std::uint64_t ops = 0;      // operations written
  std::uint64_t failed_batches = 0;
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
  void submit(std::vector<store_op> ops, completion done = {});
  // Blocks until everything submitted before the call is durable (or failed).
  void flush();
  // Writes what is queued and ends the thread. Later submits fail at once.
  void stop();

  store_writer_stats stats() const;

 private:
  void run();

  store& store_;
  error_handler on_error_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable written_;
  std::vector<store_op> pending_;
  std::vector<completion> pending_done_;
  std::uint64_t submitted_ = 0;  // submit() calls, numbered
  std::uint64_t durable_ = 0;    // submit() calls whose batch was written
  bool stopping_ = false;
  store_writer_stats stats_;
  std::thread thread_;
};

}  // namespace wsagent::core
