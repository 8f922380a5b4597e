#pragma once
// A small writer for the JSON the agent sends. It appends to a std::string the caller owns
// (reserve once, write many), escapes strings per RFC 8259 and never allocates on its own
// beyond the string's growth. Incoming JSON is parsed with simdjson, not here.

#include <cstdint>
#include <string>
#include <string_view>

namespace wsagent::common {

// Appends `s` as a JSON string literal, quotes included. Control characters, `"` and `\`
// are escaped; bytes >= 0x80 are copied as they are (the caller passes valid UTF-8).
void json_append_string(std::string& out, std::string_view s);

class json_writer {
 public:
  explicit json_writer(std::string& out) : out_(out) {}

  json_writer& begin_object() {
    comma();
    out_.push_back('{');
    first_ = true;
    return *this;
  }
  json_writer& end_object() {
    out_.push_back('}');
    first_ = false;
    return *this;
  }
  json_writer& begin_array(std::string_view key) {
    this->key(key);
    out_.push_back('[');
    first_ = true;
    return *this;
  }
  // An array as an element of an array.
  json_writer& begin_array() {
    comma();
    out_.push_back('[');
    first_ = true;
    return *this;
  }
  json_writer& end_array() {
    out_.push_back(']');
    first_ = false;
    return *this;
  }
  // Keys are the program's own ASCII identifiers ("type", "tag", ...): written as they are,
  // without the escaping scan that values get (it showed in the delivery path's profile).
  json_writer& key(std::string_view k) {
    comma();
    out_.push_back('"');
    out_.append(k);
    out_.append("\":", 2);
    first_ = true;  // the value that follows takes no comma
    return *this;
  }
  json_writer& string(std::string_view k, std::string_view v) {
    key(k);
    return string_value(v);
  }
  json_writer& string_value(std::string_view v) {
    comma();
    json_append_string(out_, v);
    first_ = false;
    return *this;
  }
  json_writer& integer(std::string_view k, std::int64_t v);
  json_writer& boolean(std::string_view k, bool v) {
    key(k);
    out_.append(v ? "true" : "false");
    first_ = false;
    return *this;
  }
  // A JSON string holding `bytes` in base64.
  json_writer& base64(std::string_view k, std::string_view bytes);
  // `json` must already be valid JSON text.
  json_writer& raw(std::string_view k, std::string_view json) {
    key(k);
    out_.append(json);
    first_ = false;
    return *this;
  }

 private:
  void comma() {
    if (!first_) out_.push_back(',');
    first_ = false;
  }

  std::string& out_;
  bool first_ = true;
};

}  // namespace wsagent::common
