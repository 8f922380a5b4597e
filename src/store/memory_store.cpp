#include "store/memory_store.hpp"

#include <algorithm>

#include "core/tag.hpp"

namespace wsagent::store {

namespace ops = core::store_ops;

namespace {
template <class... F>
struct overloaded : F... {
  using F::operator()...;
};
template <class... F>
overloaded(F...) -> overloaded<F...>;

// The client id of an entry keyed (or made) by pair<client id, ...>.
template <class K, class V>
const std::string& client_of(const std::pair<const K, V>& entry) {
  return entry.first.first;
}
inline const std::string& client_of(const std::pair<std::string, std::string>& entry) {
  return entry.first;
}

// Erases the entries of `c` (ordered by pair<client id, ...>) that belong to `client`.
template <class Container>
void erase_client(Container& c, const std::string& client) {
  auto it = c.lower_bound({client, {}});
  while (it != c.end() && client_of(*it) == client)
    it = c.erase(it);
}
}  // namespace

core::store_snapshot memory_store::load() {
  core::store_snapshot s;
  for (const auto& [tag, m] : retained_)
    s.retained.push_back(m);
  for (const auto& [id, sess] : sessions_)
    s.sessions.push_back(sess);
  for (const auto& [key, q] : queue_)
    s.queue.push_back(q);
  for (const auto& [key, id] : history_)
    s.history.push_back({key.first, key.second, id});
  for (const auto& [id, m] : messages_)
    s.messages.push_back({id, m});
  for (const auto& i : incoming_)
    s.incoming.push_back(i);
  s.meta.assign(meta_.begin(), meta_.end());
  for (const auto& [id, w] : wills_)
    s.wills.push_back(w);
  return s;
}

std::optional<core::stored_client> memory_store::load_client(std::string_view client_id) {
  auto it = sessions_.find(client_id);
  if (it == sessions_.end()) return std::nullopt;
  core::stored_client c;
  c.session = it->second;
  for (auto q = queue_.lower_bound({std::string(client_id), 0});
       q != queue_.end() && q->first.first == client_id; ++q) {
    c.queue.push_back(q->second);
    if (auto m = messages_.find(q->second.message_id); m != messages_.end())
      c.messages.push_back({m->first, m->second});
  }
  std::sort(c.messages.begin(), c.messages.end(),
            [](const auto& a, const auto& b) { return a.id < b.id; });
  c.messages.erase(std::unique(c.messages.begin(), c.messages.end(),
                               [](const auto& a, const auto& b) { return a.id == b.id; }),
                   c.messages.end());
  for (const auto& [id, msgid] : incoming_)
    if (id == client_id) c.incoming.push_back(msgid);
  if (auto w = wills_.find(std::string(client_id)); w != wills_.end()) c.will = w->second;
  return c;
}

std::vector<core::message_ptr> memory_store::load_retained(std::string_view filter) {
  std::vector<core::message_ptr> out;
  for (const auto& [tag, m] : retained_)
    if (core::filter_matches(filter, tag)) out.push_back(m);
  return out;
}

void memory_store::write(std::span<const core::store_op> batch) {
  // All or nothing: nothing here can fail part-way but an allocation, and a process out of
  // memory does not keep its in-memory store anyway.
  for (const auto& op : batch)
    apply(op);
}

void memory_store::apply(const core::store_op& op) {
  std::visit(
      overloaded{
          [&](const ops::put_message& o) { messages_[o.m.id] = o.m.msg; },
          [&](const ops::drop_message& o) { messages_.erase(o.id); },
          [&](const ops::put_retained& o) { retained_[o.msg->tag] = o.msg; },
          [&](const ops::clear_retained& o) {
            if (auto it = retained_.find(o.tag); it != retained_.end()) retained_.erase(it);
          },
          [&](const ops::put_session& o) { sessions_[o.s.client_id] = o.s; },
          [&](const ops::drop_session& o) {
            if (auto it = sessions_.find(o.client_id); it != sessions_.end()) sessions_.erase(it);
            erase_client(queue_, o.client_id);
            erase_client(incoming_, o.client_id);
          },
          [&](const ops::enqueue& o) {
            queue_[{o.q.client_id, o.q.seq}] = o.q;
          },
          [&](const ops::mark_sent& o) {
            if (auto it = queue_.find({o.client_id, o.seq}); it != queue_.end())
              it->second.sent = true;
          },
          [&](const ops::dequeue& o) {
            queue_.erase({o.client_id, o.seq});
          },
          [&](const ops::append_history& o) {
            history_[{o.e.tag, o.e.offset}] = o.e.message_id;
          },
          [&](const ops::trim_history& o) {
            auto it = history_.lower_bound({o.tag, 0});
            while (it != history_.end() && it->first.first == o.tag && it->first.second < o.below)
              it = history_.erase(it);
          },
          [&](const ops::put_incoming& o) {
            incoming_.insert({o.client_id, o.msgid});
          },
          [&](const ops::drop_incoming& o) {
            incoming_.erase({o.client_id, o.msgid});
          },
          [&](const ops::put_will& o) { wills_[o.w.client_id] = o.w; },
          [&](const ops::drop_will& o) {
            if (auto it = wills_.find(o.client_id); it != wills_.end()) wills_.erase(it);
          },
          [&](const ops::put_meta& o) { meta_[o.key] = o.value; },
      },
      op);
}

}  // namespace wsagent::store
