#include "protocol/wire_formats.hpp"

#include "protocol/mqtt/adapter.hpp"
#include "protocol/native/adapter.hpp"

namespace wsagent::protocol {

void reserve_wire_formats() {
  (void)native::adapter::wire();
  (void)mqtt::adapter::wire();
}

}  // namespace wsagent::protocol
