#pragma once
// The protocols' reservations in core::wire_registry, made in one fixed order at start-up
// (message flags are stored with messages: the order is part of the store's format, so a
// new protocol's reservations go at the end).

namespace wsagent::protocol {

// The native protocol's (its slots, and message flag bit 0: a device message), then MQTT's.
void reserve_wire_formats();

}  // namespace wsagent::protocol
