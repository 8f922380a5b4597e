#include "core/session_registry.hpp"

namespace wsagent::core {

std::shared_ptr<session> session_registry::put(const std::shared_ptr<session>& s) {
  auto [it, inserted] = sessions_.try_emplace(s->client_id(), s);
  if (inserted) return nullptr;
  auto old = std::move(it->second);
  it->second = s;
  return old;
}

bool session_registry::is_current(const session& s) const {
  auto it = sessions_.find(s.client_id());
  return it != sessions_.end() && it->second.get() == &s;
}

bool session_registry::erase(const session& s) {
  auto it = sessions_.find(s.client_id());
  if (it == sessions_.end() || it->second.get() != &s) return false;
  sessions_.erase(it);
  return true;
}

std::shared_ptr<session> session_registry::find(std::string_view client_id) const {
  auto it = sessions_.find(client_id);
  return it == sessions_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<session>> session_registry::expired(std::int64_t now_ms) const {
  std::vector<std::shared_ptr<session>> out;
  for (const auto& [id, s] : sessions_) {
    const auto away = s->disconnected_ms();
    if (s->persistent() && away && away + s->expiry_s() * 1000 <= now_ms) out.push_back(s);
  }
  return out;
}

}  // namespace wsagent::core
