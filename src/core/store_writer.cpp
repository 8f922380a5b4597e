#include "core/store_writer.hpp"

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
  return stats_;
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
    if (!batch.empty()) {
      try {
        store_.write(batch);
      } catch (const std::exception& e) {
        ok = false;
        error = e.what();
      }
    }
    for (auto& d : done)
      if (d) d(ok);
    if (!ok && on_error_) on_error_(error);

    lock.lock();
    stats_.batches += batch.empty() ? 0 : 1;
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
