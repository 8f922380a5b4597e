#pragma once
// The in-memory store: the store interface over ordered maps, for tests and for users who
// want no disk. Nothing survives the process; within it, load() returns what was written,
// exactly as the on-disk store would (both run the same test suite).

#include <map>
#include <set>
#include <string>
#include <utility>

#include "core/store.hpp"

namespace wsagent::store {

class memory_store final : public core::store {
 public:
  const char* kind() const noexcept override { return "memory"; }
  core::store_snapshot load() override;
  void write(std::span<const core::store_op> batch) override;
  std::optional<core::stored_client> load_client(std::string_view client_id) override;
  std::vector<core::message_ptr> load_retained(std::string_view filter) override;

 private:
  void apply(const core::store_op& op);

  std::map<std::string, core::message_ptr, std::less<>> retained_;
  std::map<std::string, core::stored_session, std::less<>> sessions_;
  std::map<std::pair<std::string, std::uint64_t>, core::queued_message> queue_;
  std::map<std::pair<std::string, std::uint64_t>, std::uint64_t> history_;
  std::map<std::uint64_t, core::message_ptr> messages_;
  std::set<std::pair<std::string, std::string>> incoming_;
  std::map<std::string, core::stored_will> wills_;
  std::map<std::string, std::string> meta_;
};

}  // namespace wsagent::store
