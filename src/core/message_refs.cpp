#include "core/message_refs.hpp"

namespace wsagent::core {

void message_refs::add(std::uint64_t seq, std::uint32_t n) {
  common::lock lock(mutex_);
  refs_[seq] += n;
}

void message_refs::release_locked(std::uint64_t seq, std::vector<store_op>& ops) {
  auto it = refs_.find(seq);
  if (it == refs_.end() || --it->second > 0) return;
  refs_.erase(it);
  ops.push_back(store_ops::drop_message{seq});
}

void message_refs::release(std::uint64_t seq, std::vector<store_op>& ops) {
  common::lock lock(mutex_);
  release_locked(seq, ops);
}

void message_refs::release(std::span<const message_ptr> msgs, std::vector<store_op>& ops) {
  common::lock lock(mutex_);
  for (const auto& m : msgs)
    release_locked(m->seq, ops);
}

bool message_refs::contains(std::uint64_t seq) const {
  common::lock lock(mutex_);
  return refs_.contains(seq);
}

std::size_t message_refs::size() const {
  common::lock lock(mutex_);
  return refs_.size();
}

}  // namespace wsagent::core
