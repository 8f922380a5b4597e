#pragma once
// MQTT return and reason codes: the CONNACK return codes of 3.1.1 (section 3.2.2.3) and the
// reason codes of 5.0 (section 2.4) that the codec and the agent use. The numbers are the
// specification's; a 3.1.1 peer only ever sees the CONNACK codes and SUBACK's 0x80.

#include <cstdint>

namespace wsagent::protocol::mqtt {

namespace connack_v311 {
inline constexpr std::uint8_t accepted = 0x00;
inline constexpr std::uint8_t unacceptable_protocol_version = 0x01;
inline constexpr std::uint8_t identifier_rejected = 0x02;
inline constexpr std::uint8_t server_unavailable = 0x03;
inline constexpr std::uint8_t bad_username_or_password = 0x04;
inline constexpr std::uint8_t not_authorized = 0x05;
}  // namespace connack_v311

// SUBACK's failure code in 3.1.1 (and "unspecified error" in 5.0).
inline constexpr std::uint8_t suback_failure = 0x80;

namespace reason {
inline constexpr std::uint8_t success = 0x00;  // also "normal disconnection", "granted QoS 0"
inline constexpr std::uint8_t continue_authentication = 0x18;  // AUTH
inline constexpr std::uint8_t re_authenticate = 0x19;          // AUTH
inline constexpr std::uint8_t granted_qos1 = 0x01;
inline constexpr std::uint8_t granted_qos2 = 0x02;
inline constexpr std::uint8_t no_matching_subscribers = 0x10;
inline constexpr std::uint8_t no_subscription_existed = 0x11;
inline constexpr std::uint8_t unspecified_error = 0x80;
inline constexpr std::uint8_t malformed_packet = 0x81;
inline constexpr std::uint8_t protocol_error = 0x82;
inline constexpr std::uint8_t implementation_specific_error = 0x83;
inline constexpr std::uint8_t unsupported_protocol_version = 0x84;
inline constexpr std::uint8_t client_identifier_not_valid = 0x85;
inline constexpr std::uint8_t bad_user_name_or_password = 0x86;
inline constexpr std::uint8_t not_authorized = 0x87;
inline constexpr std::uint8_t server_unavailable = 0x88;
inline constexpr std::uint8_t server_busy = 0x89;
inline constexpr std::uint8_t session_taken_over = 0x8E;
inline constexpr std::uint8_t topic_filter_invalid = 0x8F;
inline constexpr std::uint8_t topic_name_invalid = 0x90;
inline constexpr std::uint8_t packet_identifier_in_use = 0x91;
inline constexpr std::uint8_t packet_identifier_not_found = 0x92;
inline constexpr std::uint8_t receive_maximum_exceeded = 0x93;
inline constexpr std::uint8_t packet_too_large = 0x95;
inline constexpr std::uint8_t quota_exceeded = 0x97;
inline constexpr std::uint8_t payload_format_invalid = 0x99;
inline constexpr std::uint8_t qos_not_supported = 0x9B;
inline constexpr std::uint8_t keep_alive_timeout = 0x8D;
inline constexpr std::uint8_t server_shutting_down = 0x8B;
inline constexpr std::uint8_t use_another_server = 0x9C;
inline constexpr std::uint8_t bad_authentication_method = 0x8C;
inline constexpr std::uint8_t topic_alias_invalid = 0x94;
inline constexpr std::uint8_t shared_subscriptions_not_supported = 0x9E;
inline constexpr std::uint8_t connection_rate_exceeded = 0x9F;
inline constexpr std::uint8_t maximum_connect_time = 0xA0;
inline constexpr std::uint8_t subscription_identifiers_not_supported = 0xA1;
inline constexpr std::uint8_t disconnect_with_will = 0x04;
}  // namespace reason

}  // namespace wsagent::protocol::mqtt
