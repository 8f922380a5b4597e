#pragma once
// The rule every protocol applies to a client id: 1 to 128 bytes of UTF-8 with no '/', '+',
// '#' or control characters, since ids are substituted into tags and ACL patterns (%c).

#include <string_view>

namespace wsagent::core {

bool valid_client_id(std::string_view id) noexcept;

}  // namespace wsagent::core
