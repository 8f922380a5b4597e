#include "core/retained_store.hpp"

#include "core/store_writer.hpp"

namespace wsagent::core {

std::shared_ptr<message> retained_store::set(const message& m, std::uint64_t seq,
                                             std::vector<store_op>* ops) {
  auto kept = m.copy();
  kept->retain = true;
  kept->published_retain = true;
  if (kept->qos > 0) kept->seq = seq;
  common::lock lock(mutex_);
  if (!tree_.set(kept, max_)) return nullptr;
  // Under the lock: the store sees a tag's changes in the order the tree does.
  if (ops)
    ops->push_back(store_ops::put_retained{kept});
  else if (store_)
    store_->submit({store_ops::put_retained{kept}});
  return kept;
}

void retained_store::clear(std::string_view tag) {
  common::lock lock(mutex_);
  if (tree_.clear(tag) && store_) store_->submit({store_ops::clear_retained{std::string(tag)}});
}

void retained_store::match(std::string_view filter, std::vector<message_ptr>& out) const {
  common::lock lock(mutex_);
  tree_.match(filter, out);
}

void retained_store::restore(const std::vector<message_ptr>& retained) {
  common::lock lock(mutex_);
  for (const auto& m : retained)
    tree_.set(m, SIZE_MAX);  // what was kept stays, whatever the limit is now
}

std::size_t retained_store::size() const {
  common::lock lock(mutex_);
  return tree_.size();
}

}  // namespace wsagent::core
