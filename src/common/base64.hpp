#pragma once
// Standard base64 (RFC 4648, with padding): binary payloads to JSON clients, and the
// WebSocket handshake's Sec-WebSocket-Accept.

#include <optional>
#include <string>
#include <string_view>

namespace wsagent::common {

void base64_append(std::string& out, std::string_view bytes);
std::string base64_encode(std::string_view bytes);

// Nullopt when `text` is not canonical padded base64.
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace wsagent::common
