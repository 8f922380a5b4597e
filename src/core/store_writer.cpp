#include "core/store_writer.hpp"

#include <chrono>

namespace wsagent::core {

store_writer::store_writer(store& s, error_handler on_error)
    : store_(s), on_error_(std::move(on_error)), thread_([this] { run(); }) {}

store_writer::~store_writer() {
  stop();
}

void store_writer::submit(std::vector<store_op> ops, completion done) {
  {
    common::lock lock(mutex_);
    if (!stopping_) {
      ++submitted_;
      if (pending_.empty())
        pending_ = std::move(ops);
      else
        pending_.insert(pending_.end(), std::make_move_iterator(ops.begin()),
                        std::make_move_iterator(ops.end()));
      pending_done_.push_back(std::move(done));
      wake_.notify_one();
      return;
    }
  }
  if (done) done(false);
}

void store_writer::flush() {
  common::unique_lock lock(mutex_);
  const std::uint64_t target = submitted_;
  while (durable_ < target)
    written_.wait(lock);
}

void store_writer::stop() {
  {
    common::lock lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
    wake_.notify_one();
  }
  if (thread_.joinable()) thread_.join();
}

store_writer_stats store_writer::stats() const {
  common::lock lock(mutex_);
  auto s = stats_;
  s.waiting_ops = pending_.size();
  return s;
}

void store_writer::write_metrics(common::metric_set& out) const {
  const auto s = stats();
  out.counter("store_commits_total", "Batches written to the store (one transaction each).",
              static_cast<double>(s.batches));
  out.counter("store_operations_total", "Store operations written.", static_cast<double>(s.ops));
  out.counter("store_commit_failures_total", "Batches the store could not write.",
              static_cast<double>(s.failed_batches));
  out.add_histogram("store_commit_seconds", "Time to write one batch, sync included.",
                    s.commit_seconds);
  out.gauge("store_queue_operations", "Store operations submitted and waiting to be written.",
            static_cast<double>(s.waiting_ops));
}

void store_writer::run() {
  std::vector<store_op> batch;
  std::vector<completion> done;
  common::unique_lock lock(mutex_);
  while (true) {
    while (!stopping_ && pending_done_.empty())
      wake_.wait(lock);
    if (pending_done_.empty()) break;  // stopping, nothing left
    batch.swap(pending_);
    done.swap(pending_done_);
    lock.unlock();

    bool ok = true;
    std::string error;
    double took = 0;
    if (!batch.empty()) {
      const auto start = std::chrono::steady_clock::now();
      try {
        store_.write(batch);
      } catch (const std::exception& e) {
        ok = false;
        error = e.what();
      }
      took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    for (auto& d : done)
      if (d) d(ok);
    if (!ok && on_error_) on_error_(error);

    lock.lock();
    if (!batch.empty()) {
      ++stats_.batches;
      stats_.commit_seconds.observe(took);
    }
    stats_.ops += batch.size();
    if (!ok) ++stats_.failed_batches;
    durable_ += done.size();
    batch.clear();
    done.clear();
    written_.notify_all();
  }
  written_.notify_all();
}

}  // namespace wsagent::core
