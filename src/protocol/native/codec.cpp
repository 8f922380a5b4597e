#include "protocol/native/codec.hpp"

#include <simdjson.h>

#include <algorithm>
#include <charconv>

#include "common/base64.hpp"
#include "common/json_writer.hpp"
#include "common/utf8.hpp"
#include "protocol/websocket/frame.hpp"

namespace wsagent::protocol::native {

namespace od = simdjson::ondemand;
using json_error_code = simdjson::error_code;
using common::json_writer;

const char* to_string(native::error_code c) noexcept {
  switch (c) {
    case native::error_code::bad_request:
      return "bad_request";
    case native::error_code::invalid_tag:
      return "invalid_tag";
    case native::error_code::forbidden:
      return "forbidden";
    case native::error_code::limit_exceeded:
      return "limit_exceeded";
    case native::error_code::unsupported:
      return "unsupported";
    case native::error_code::unavailable:
      return "unavailable";
    case native::error_code::unknown_client:
      return "unknown_client";
    case native::error_code::unauthorized:
      return "unauthorized";
  }
  return "bad_request";
}

namespace {

constexpr int max_depth = 64;
constexpr std::size_t max_msgid = 128;

// Words of the protocol. Words the agent sends, or keeps for later, may not be used as the
// type of an application message.
enum class word {
  none,
  auth,
  refresh,
  subscribe,
  unsubscribe,
  publish,
  batch,
  ping,
  ack,
  pubrec,
  pubrel,
  pubcomp,
  agent_only
};

word classify(std::string_view t) {
  if (t == "publish") return word::publish;
  if (t == "subscribe") return word::subscribe;
  if (t == "unsubscribe") return word::unsubscribe;
  if (t == "auth") return word::auth;
  if (t == "refresh") return word::refresh;
  if (t == "batch") return word::batch;
  if (t == "ping") return word::ping;
  if (t == "ack") return word::ack;
  if (t == "pubrec") return word::pubrec;
  if (t == "pubrel") return word::pubrel;
  if (t == "pubcomp") return word::pubcomp;
  static constexpr std::string_view reserved[] = {
      "message",   "auth_response",  "subscribed", "unsubscribed", "error",
      "pong",  // sent by us
      "refreshed", "token_expiring", "nack",       "history",      "presence",
      "sys",  // kept
  };
  for (auto r : reserved)
    if (t == r) return word::agent_only;
  return word::none;
}

bool valid_type_name(std::string_view t) {
  if (t.empty() || t.size() > 64) return false;
  return std::all_of(t.begin(), t.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
  });
}

// Visits a whole value so that simdjson checks every byte of it.
json_error_code validate(od::value v, int depth) {
  if (depth > max_depth) return simdjson::DEPTH_ERROR;
  od::json_type t;
  if (auto e = v.type().get(t)) return e;
  switch (t) {
    case od::json_type::object: {
      od::object o;
      if (auto e = v.get_object().get(o)) return e;
      for (auto field : o) {
        std::string_view key;
        if (auto e = field.unescaped_key().get(key)) return e;
        od::value fv;
        if (auto e = field.value().get(fv)) return e;
        if (auto e = validate(fv, depth + 1)) return e;
      }
      return simdjson::SUCCESS;
    }
    case od::json_type::array: {
      od::array a;
      if (auto e = v.get_array().get(a)) return e;
      for (auto element : a) {
        od::value ev;
        if (auto e = element.get(ev)) return e;
        if (auto e = validate(ev, depth + 1)) return e;
      }
      return simdjson::SUCCESS;
    }
    case od::json_type::string: {
      std::string_view s;
      return v.get_string().get(s);
    }
    case od::json_type::number: {
      od::number n;
      return v.get_number().get(n);
    }
    case od::json_type::boolean: {
      bool b;
      return v.get_bool().get(b);
    }
    case od::json_type::null: {
      bool is_null = false;
      if (auto e = v.is_null().get(is_null)) return e;
      return is_null ? simdjson::SUCCESS : simdjson::N_ATOM_ERROR;
    }
  }
  return simdjson::INCORRECT_TYPE;
}

std::string_view trim_right(std::string_view s) {
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\n' || s.back() == '\r' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

// Validates `v` and returns its JSON text as a slice of the input.
json_error_code value_span(od::value v, od::document& doc, std::string_view& out) {
  std::string_view token = v.raw_json_token();
  od::json_type t;
  if (auto e = v.type().get(t)) return e;
  if (t != od::json_type::object && t != od::json_type::array) {
    // A scalar is its token (with the spaces that follow it).
    if (auto e = validate(v, 0)) return e;
    out = trim_right(token);
    return simdjson::SUCCESS;
  }
  const char* start = token.data();
  if (auto e = validate(v, 0)) return e;
  const char* end;
  if (auto e = doc.current_location().get(end)) return e;
  out = trim_right(std::string_view(start, static_cast<std::size_t>(end - start)));
  return simdjson::SUCCESS;
}

// The fields a request may have, gathered in one pass in whatever order they come.
struct fields {
  std::string_view type, id, tag, token, client_id, msgid, to, payload;
  bool has_type = false, has_payload = false, retain = false, binary = false;
  bool has_timestamp = false;
  std::int64_t qos = 0;
  std::int64_t expiry = 0;
  std::string_view will;  // raw object, parsed for auth frames only
  std::string_view session;
  const will_request* will_parsed = nullptr;
  std::uint64_t seq = 0;
  bool has_seq = false;
  std::vector<std::string_view> tags;
  bool tags_ok = true;  // 'tags' was an array of strings
  std::vector<std::pair<std::string_view, std::uint64_t>> since;
  std::int64_t since_ms = -1;
  std::string_view messages;  // raw array of a batch
  bool has_messages = false;
  std::string_view data;  // raw value: a batch's array when it has no 'messages' (DataBatcher)
  bool has_data = false;
  publish_properties props;
  std::string_view correlation_encoding;
  std::vector<std::pair<std::string_view, std::string_view>> user_properties;
  std::string members;  // for typed messages
  bool collect_members = true;
};

struct problem {
  std::string text;
  bool ok() const { return text.empty(); }
};

std::string json_error(const char* what, json_error_code e) {
  return std::string(what) + simdjson::error_message(e);
}

json_error_code read_tags(od::value v, od::document& doc, fields& f, std::string_view& raw) {
  std::string_view token = v.raw_json_token();
  od::json_type t;
  if (auto e = v.type().get(t)) return e;
  if (t != od::json_type::array) {
    f.tags_ok = false;
    return value_span(v, doc, raw);
  }
  od::array a;
  if (auto e = v.get_array().get(a)) return e;
  for (auto element : a) {
    od::value ev;
    if (auto e = element.get(ev)) return e;
    od::json_type et;
    if (auto e = ev.type().get(et)) return e;
    if (et == od::json_type::string) {
      std::string_view s;
      if (auto e = ev.get_string().get(s)) return e;
      f.tags.push_back(s);
    } else {
      f.tags_ok = false;
      if (auto e = validate(ev, 1)) return e;
    }
  }
  const char* end;
  if (auto e = doc.current_location().get(end)) return e;
  raw = trim_right(std::string_view(token.data(), static_cast<std::size_t>(end - token.data())));
  return simdjson::SUCCESS;
}

// "since": {"<tag>": <offset>, ...}; `raw` gets its JSON text for a typed message.
problem read_since(od::value v, od::document& doc, fields& f, std::string_view& raw) {
  const problem wrong{"field 'since' must be an object of tag: offset (a non-negative integer)"};
  std::string_view token = v.raw_json_token();
  od::object o;
  if (v.get_object().get(o)) return wrong;
  for (auto field_result : o) {
    od::field field;
    if (auto e = std::move(field_result).get(field)) return {json_error("invalid JSON: ", e)};
    std::string_view tag;
    if (auto e = field.unescaped_key().get(tag)) return {json_error("invalid JSON: ", e)};
    std::uint64_t offset = 0;
    if (field.value().get_uint64().get(offset)) return wrong;
    f.since.emplace_back(tag, offset);
  }
  const char* end;
  if (auto e = doc.current_location().get(end)) return {json_error("invalid JSON: ", e)};
  raw = trim_right(std::string_view(token.data(), static_cast<std::size_t>(end - token.data())));
  return {};
}

constexpr std::int64_t max_expiry_s = 365 * 24 * 3600;

problem type_problem(std::string_view key, const char* expected) {
  return {"field '" + std::string(key) + "' must be " + expected};
}

problem read_string(od::value& v, std::string_view key, std::string_view& out) {
  if (v.get_string().get(out)) return type_problem(key, "a string");
  return {};
}

// "user_properties": [["key","value"], ...]; `raw` gets its JSON text for a typed message.
problem read_user_properties(od::value v, od::document& doc, fields& f, std::string_view& raw) {
  const problem wrong{"field 'user_properties' must be an array of [\"key\", \"value\"] pairs"};
  std::string_view token = v.raw_json_token();
  od::array a;
  if (v.get_array().get(a)) return wrong;
  for (auto element : a) {
    od::array pair;
    if (element.get_array().get(pair)) return wrong;
    std::string_view kv[2];
    std::size_t n = 0;
    for (auto item : pair) {
      if (n == 2 || item.get_string().get(kv[n])) return wrong;
      ++n;
    }
    if (n != 2) return wrong;
    f.user_properties.emplace_back(kv[0], kv[1]);
  }
  const char* end;
  if (auto e = doc.current_location().get(end)) return {json_error("invalid JSON: ", e)};
  raw = trim_right(std::string_view(token.data(), static_cast<std::size_t>(end - token.data())));
  return {};
}

// Keeps `"key":json` for a typed message (whose type may come later in the object).
void add_member(fields& f, std::string_view key, std::string_view json) {
  if (!f.collect_members) return;
  if (!f.members.empty()) f.members.push_back(',');
  common::json_append_string(f.members, key);
  f.members.push_back(':');
  f.members.append(json);
}

problem read_fields(od::object obj, od::document& doc, fields& f) {
  for (auto field_result : obj) {
    od::field field;
    if (auto e = std::move(field_result).get(field)) return {json_error("invalid JSON: ", e)};
    std::string_view key;
    if (auto e = field.unescaped_key().get(key)) return {json_error("invalid JSON: ", e)};
    od::value v = field.value();
    problem p;
    std::string_view raw;
    bool keep_member = true;  // typed messages keep this field as it is
    if (key == "type") {
      if (auto r = read_string(v, key, f.type); !r.ok()) return r;
      f.has_type = true;
      if (classify(f.type) != word::none) f.collect_members = false;
      raw = {};  // written below from f.type
      if (f.collect_members) {
        if (!f.members.empty()) f.members.push_back(',');
        common::json_append_string(f.members, key);
        f.members.push_back(':');
        common::json_append_string(f.members, f.type);
      }
      continue;
    } else if (key == "id") {
      if (auto r = read_string(v, key, f.id); !r.ok()) return r;
      raw = {};
      if (f.collect_members) {
        if (!f.members.empty()) f.members.push_back(',');
        common::json_append_string(f.members, key);
        f.members.push_back(':');
        common::json_append_string(f.members, f.id);
      }
      continue;
    } else if (key == "tag") {
      if (auto r = read_string(v, key, f.tag); !r.ok()) return r;
      keep_member = false;
    } else if (key == "from") {
      if (auto e = value_span(v, doc, raw)) return {json_error("invalid JSON: ", e)};
      keep_member = false;  // the agent says who sent it
    } else if (key == "msgid") {
      if (auto r = read_string(v, key, f.msgid); !r.ok()) return r;
      if (f.msgid.size() > max_msgid) return {"field 'msgid' is longer than 128 bytes"};
      keep_member = false;
    } else if (key == "payload") {
      if (auto e = value_span(v, doc, f.payload))
        return {json_error("invalid JSON in 'payload': ", e)};
      f.has_payload = true;
      raw = f.payload;
    } else if (key == "tags") {
      // Read as strings for subscribe, and kept as raw JSON for a typed message, since
      // the type may come after this field.
      if (auto e = read_tags(v, doc, f, raw)) return {json_error("invalid JSON in 'tags': ", e)};
    } else if (key == "messages") {
      if (auto e = value_span(v, doc, f.messages))
        return {json_error("invalid JSON in 'messages': ", e)};
      f.has_messages = true;
      raw = f.messages;
    } else if (key == "data") {
      if (auto e = value_span(v, doc, f.data)) return {json_error("invalid JSON in 'data': ", e)};
      f.has_data = true;
      raw = f.data;
    } else {
      if (key == "token" || key == "deviceId" || key == "clientId" || key == "to" ||
          key == "session") {
        std::string_view s;
        if (auto r = read_string(v, key, s); !r.ok()) return r;
        if (key == "token")
          f.token = s;
        else if (key == "session")
          f.session = s;
        else if (key == "to")
          f.to = s;
        else
          f.client_id = s;
        raw = {};
        if (f.collect_members && key != "token") {
          if (!f.members.empty()) f.members.push_back(',');
          common::json_append_string(f.members, key);
          f.members.push_back(':');
          common::json_append_string(f.members, s);
        }
        continue;
      }
      if (key == "retain" || key == "binary") {
        bool b;
        if (v.get_bool().get(b)) return type_problem(key, "true or false");
        (key == "retain" ? f.retain : f.binary) = b;
        if (f.collect_members && key != "retain") {  // retain: how it is routed, not content
          if (!f.members.empty()) f.members.push_back(',');
          common::json_append_string(f.members, key);
          f.members.append(b ? ":true" : ":false");
        }
        continue;
      }
      if (key == "qos") {
        std::int64_t q;
        if (v.get_int64().get(q) || q < 0 || q > 2) return type_problem(key, "0, 1 or 2");
        f.qos = q;  // how it is delivered, not content: the delivery says its own qos
        continue;
      }
      if (key == "expiry") {
        std::int64_t n;
        if (v.get_int64().get(n) || n < 1 || n > max_expiry_s)
          return type_problem(key, "a number of seconds from 1 to 31536000");
        f.expiry = n;
        add_member(f, key, std::to_string(n));
        continue;
      }
      if (key == "will") {
        if (auto e = value_span(v, doc, f.will))
          return {"invalid JSON in 'will': " + std::string(simdjson::error_message(e))};
        add_member(f, key, f.will);
        continue;
      }
      if (key == "since") {
        if (auto r = read_since(v, doc, f, raw); !r.ok()) return r;
        add_member(f, key, raw);
        continue;
      }
      if (key == "since_ms") {
        std::int64_t n;
        if (v.get_int64().get(n) || n < 0)
          return type_problem(key, "a time in milliseconds since the Unix epoch");
        f.since_ms = n;
        add_member(f, key, std::to_string(n));
        continue;
      }
      if (key == "seq") {
        std::uint64_t n;
        if (v.get_uint64().get(n) || n == 0) return type_problem(key, "a positive integer");
        f.seq = n;
        f.has_seq = true;
        add_member(f, key, std::to_string(n));
        continue;
      }
      if (key == "content_type" || key == "response_tag" || key == "correlation" ||
          key == "correlation_encoding") {
        std::string_view* to = key == "content_type"   ? &f.props.content_type
                               : key == "response_tag" ? &f.props.response_tag
                               : key == "correlation"  ? &f.props.correlation
                                                       : &f.correlation_encoding;
        if (auto r = read_string(v, key, *to); !r.ok()) return r;
        if (f.collect_members) {
          if (!f.members.empty()) f.members.push_back(',');
          common::json_append_string(f.members, key);
          f.members.push_back(':');
          common::json_append_string(f.members, *to);
        }
        continue;
      }
      if (key == "user_properties") {
        if (auto r = read_user_properties(v, doc, f, raw); !r.ok()) return r;
        add_member(f, key, raw);
        continue;
      }
      if (key == "timestamp") f.has_timestamp = true;
      if (auto e = value_span(v, doc, raw))
        return {"invalid JSON in '" + std::string(key) + "': " + simdjson::error_message(e)};
    }
    if (keep_member && f.collect_members) {
      if (!f.members.empty()) f.members.push_back(',');
      common::json_append_string(f.members, key);
      f.members.push_back(':');
      f.members.append(raw);
    }
  }
  return {};
}

}  // namespace

// For a frame that is not an object: is it JSON at all? (Only on the error path.)
bool is_valid_document(od::parser& p, const char* data, std::size_t size, std::size_t capacity) {
  if (size == 0) return false;
  od::document doc;
  if (p.iterate(data, size, capacity).get(doc)) return false;
  od::json_type t;
  if (doc.type().get(t)) return false;
  switch (t) {
    case od::json_type::array: {
      od::array a;
      if (doc.get_array().get(a)) return false;
      for (auto element : a) {
        od::value v;
        if (element.get(v) || validate(v, 1)) return false;
      }
      break;
    }
    case od::json_type::string: {
      std::string_view s;
      if (doc.get_string().get(s)) return false;
      break;
    }
    case od::json_type::number: {
      double d;
      if (doc.get_double().get(d)) return false;
      break;
    }
    case od::json_type::boolean: {
      bool b;
      if (doc.get_bool().get(b)) return false;
      break;
    }
    case od::json_type::null: {
      bool n = false;
      if (doc.is_null().get(n) || !n) return false;
      break;
    }
    case od::json_type::object:
      return false;
  }
  const char* trailing = nullptr;
  return doc.current_location().get(trailing) != simdjson::SUCCESS;
}

struct parser::impl {
  od::parser json;
  od::parser batch_json;  // a batch's messages are parsed while the frame's strings live on
  std::string padded;
};

parser::parser() : impl_(new impl) {}
parser::~parser() {
  delete impl_;
}

parser& parser::for_this_thread() {
  thread_local parser p;
  return p;
}

namespace {

void dispatch(fields& f, request_handler& h, bool in_batch, bool untyped_readings,
              std::string_view batch_id = {}) {
  if (f.id.empty()) f.id = batch_id;  // errors about a batch element name the batch
  if (!f.has_type) {
    // A reading: a batch's element (the IoT lesson's DataBatcher) or, when the agent is
    // told so, any frame without a type (its IIoT frame).
    if (in_batch || untyped_readings) {
      typed_request r{f.id,       reading_type,
                      f.tag,      f.to,
                      f.msgid,    f.has_timestamp,
                      f.members,  static_cast<int>(f.qos),
                      f.retain,   true,
                      f.client_id};
      return h.on_typed(r);
    }
    h.on_error(native::error_code::bad_request, "missing field 'type'", f.id);
    return;
  }
  switch (classify(f.type)) {
    case word::publish: {
      if (f.tag.empty())
        return h.on_error(native::error_code::bad_request, "publish needs a 'tag'", f.id);
      if (!f.has_payload)
        return h.on_error(native::error_code::bad_request, "publish needs a 'payload'", f.id);
      if (!f.correlation_encoding.empty() && f.correlation_encoding != "base64")
        return h.on_error(native::error_code::bad_request,
                          "field 'correlation_encoding' must be \"base64\"", f.id);
      publish_request r{
          f.id,     f.tag,  f.payload, f.msgid, f.to, f.retain, static_cast<int>(f.qos),
          f.expiry, f.props};
      r.props.correlation_base64 = !f.correlation_encoding.empty();
      r.props.user = f.user_properties;
      return h.on_publish(r);
    }
    case word::subscribe:
    case word::unsubscribe: {
      if (in_batch)
        return h.on_error(native::error_code::bad_request, "a batch carries only messages", f.id);
      if (!f.tags_ok)
        return h.on_error(native::error_code::bad_request,
                          "field 'tags' must be an array of strings", f.id);
      if (!f.tag.empty()) f.tags.push_back(f.tag);
      if (f.tags.empty())
        return h.on_error(native::error_code::bad_request, "'tags' must list at least one tag",
                          f.id);
      const bool unsubscribe = classify(f.type) == word::unsubscribe;
      if (unsubscribe && (!f.since.empty() || f.since_ms >= 0))
        return h.on_error(native::error_code::bad_request,
                          "'since' and 'since_ms' belong in a subscribe", f.id);
      subscribe_request r{f.id, f.tags, unsubscribe, static_cast<int>(f.qos), f.since, f.since_ms};
      return h.on_subscribe(r);
    }
    case word::auth: {
      if (in_batch)
        return h.on_error(native::error_code::bad_request, "a batch carries only messages", f.id);
      if (!f.session.empty() && f.session != "persistent" && f.session != "clean")
        return h.on_error(native::error_code::bad_request,
                          "field 'session' must be \"persistent\" or \"clean\"", f.id);
      auth_request r{
          f.id, f.token, f.client_id, f.binary, f.will_parsed, f.session == "persistent", f.expiry};
      return h.on_auth(r);
    }
    case word::refresh:
      if (in_batch)
        return h.on_error(native::error_code::bad_request, "a batch carries only messages", f.id);
      if (f.token.empty())
        return h.on_error(native::error_code::bad_request, "refresh needs a 'token'", f.id);
      return h.on_refresh(f.id, f.token);
    case word::ping:
      if (in_batch)
        return h.on_error(native::error_code::bad_request, "a batch carries only messages", f.id);
      return h.on_ping(f.id);
    case word::ack:
      if (in_batch)
        return h.on_error(native::error_code::bad_request, "a batch carries only messages", f.id);
      if (!f.has_seq) return h.on_error(native::error_code::bad_request, "ack needs 'seq'", f.id);
      return h.on_ack(f.id, f.seq);
    case word::pubrec:
    case word::pubcomp:
      if (in_batch)
        return h.on_error(native::error_code::bad_request, "a batch carries only messages", f.id);
      if (!f.has_seq)
        return h.on_error(native::error_code::bad_request, std::string(f.type) + " needs 'seq'",
                          f.id);
      return classify(f.type) == word::pubrec ? h.on_pubrec(f.id, f.seq)
                                              : h.on_pubcomp(f.id, f.seq);
    case word::pubrel:
      if (in_batch)
        return h.on_error(native::error_code::bad_request, "a batch carries only messages", f.id);
      if (f.msgid.empty())
        return h.on_error(native::error_code::bad_request, "pubrel needs 'msgid'", f.id);
      return h.on_pubrel(f.id, f.msgid);
    case word::batch:
      return h.on_error(native::error_code::bad_request, "a batch may not contain a batch", f.id);
    case word::agent_only:
      return h.on_error(
          native::error_code::bad_request,
          "'" + std::string(f.type) + "' is a protocol word the agent sends or reserves", f.id);
    case word::none: {
      if (!valid_type_name(f.type))
        return h.on_error(native::error_code::bad_request,
                          "'type' must be 1 to 64 letters, digits, '_', '-' or '.'", f.id);
      typed_request r{f.id,     f.type,          f.tag,      f.to,
                      f.msgid,  f.has_timestamp, f.members,  static_cast<int>(f.qos),
                      f.retain, false,           f.client_id};
      return h.on_typed(r);
    }
  }
}

// The "will" object of an auth frame: tag, payload, qos, retain; nothing else.
problem parse_will(od::parser& json, const char* base, std::size_t size, std::size_t room,
                   od::document& doc, will_request& w) {
  if (auto e = json.iterate(base, size, room).get(doc))
    return {json_error("invalid JSON in 'will': ", e)};
  od::object obj;
  if (doc.get_object().get(obj)) return {"field 'will' must be an object"};
  bool has_payload = false;
  for (auto field_result : obj) {
    od::field field;
    if (auto e = std::move(field_result).get(field))
      return {json_error("invalid JSON in 'will': ", e)};
    std::string_view key;
    if (auto e = field.unescaped_key().get(key)) return {json_error("invalid JSON in 'will': ", e)};
    od::value v = field.value();
    if (key == "tag") {
      if (v.get_string().get(w.tag)) return {"field 'will.tag' must be a string"};
    } else if (key == "payload") {
      if (auto e = value_span(v, doc, w.payload))
        return {json_error("invalid JSON in 'will.payload': ", e)};
      has_payload = true;
    } else if (key == "qos") {
      std::int64_t q;
      if (v.get_int64().get(q) || q < 0 || q > 2) return {"field 'will.qos' must be 0, 1 or 2"};
      w.qos = static_cast<int>(q);
    } else if (key == "retain") {
      if (v.get_bool().get(w.retain)) return {"field 'will.retain' must be true or false"};
    } else {
      return {"unknown field 'will." + std::string(key) +
              "': a will has tag, payload, qos, retain"};
    }
  }
  if (w.tag.empty()) return {"'will' needs a 'tag'"};
  if (!has_payload) return {"'will' needs a 'payload'"};
  return {};
}

}  // namespace

void parser::parse(const char* data, std::size_t size, std::size_t capacity, request_handler& h,
                   std::size_t max_batch, bool untyped_readings) {
  if (capacity < size + simdjson::SIMDJSON_PADDING) {
    impl_->padded.assign(data, size);
    impl_->padded.resize(size + simdjson::SIMDJSON_PADDING, ' ');
    data = impl_->padded.data();
    capacity = impl_->padded.size();
  }
  od::document doc;
  if (auto e = impl_->json.iterate(data, size, capacity).get(doc))
    return h.on_error(native::error_code::bad_request, json_error("not JSON: ", e), {});
  od::object obj;
  if (doc.get_object().get(obj)) {
    bool valid = is_valid_document(impl_->json, data, size, capacity);
    return h.on_error(native::error_code::bad_request,
                      valid ? "a frame must be a JSON object" : "not JSON", {});
  }
  fields f;
  if (auto p = read_fields(obj, doc, f); !p.ok())
    return h.on_error(native::error_code::bad_request, p.text, f.id);
  // Anything after the object is an error: there is a location only when tokens are left.
  if (const char* trailing = nullptr; doc.current_location().get(trailing) == simdjson::SUCCESS)
    return h.on_error(native::error_code::bad_request,
                      "not JSON: trailing content after the object", f.id);
  will_request will;
  if (f.has_type && classify(f.type) == word::auth && !f.will.empty()) {
    const char* base = f.will.data();
    std::size_t room = capacity - static_cast<std::size_t>(base - data);
    od::document wdoc;
    if (auto p = parse_will(impl_->batch_json, base, f.will.size(), room, wdoc, will); !p.ok())
      return h.on_error(native::error_code::bad_request, p.text, f.id);
    f.will_parsed = &will;
  }
  if (!f.has_type || classify(f.type) != word::batch)
    return dispatch(f, h, false, untyped_readings);

  // A batch: parse its array again, as a document of its own; each message alone. Its list
  // is 'messages', or 'data' (the IoT lesson's DataBatcher sends its readings so).
  if (!f.has_messages && !f.has_data)
    return h.on_error(native::error_code::bad_request, "batch needs 'messages' (or 'data')", f.id);
  const auto list = f.has_messages ? f.messages : f.data;
  const char* list_name = f.has_messages ? "'messages'" : "'data'";
  std::string batch_id(f.id);
  const char* base = list.data();
  std::size_t room = capacity - static_cast<std::size_t>(base - data);
  od::document bdoc;
  if (auto e = impl_->batch_json.iterate(base, list.size(), room).get(bdoc))
    return h.on_error(native::error_code::bad_request, json_error("not JSON: ", e), batch_id);
  od::array arr;
  if (bdoc.get_array().get(arr))
    return h.on_error(native::error_code::bad_request, std::string(list_name) + " must be an array",
                      batch_id);
  std::size_t count = 0;
  if (auto e = arr.count_elements().get(count))
    return h.on_error(native::error_code::bad_request, json_error("not JSON: ", e), batch_id);
  if (count > max_batch)
    return h.on_error(native::error_code::limit_exceeded,
                      "a batch may carry at most " + std::to_string(max_batch) + " messages",
                      batch_id);
  for (auto element : arr) {
    od::object o;
    if (element.get_object().get(o)) {
      h.on_error(native::error_code::bad_request, "every batch element must be an object",
                 batch_id);
      continue;
    }
    fields bf;
    if (auto p = read_fields(o, bdoc, bf); !p.ok()) {
      h.on_error(native::error_code::bad_request, p.text,
                 bf.id.empty() ? std::string_view(batch_id) : bf.id);
      return;  // the array's iteration cannot go on past a malformed element
    }
    dispatch(bf, h, true, untyped_readings, batch_id);
  }
}

// --- outgoing ---

namespace {

// Appends a text frame whose JSON is written by `body` into a scratch string.
template <class Body>
void append_text_frame(std::string& out, Body&& body) {
  thread_local std::string json;
  json.clear();
  body(json);
  auto header = websocket::make_header(websocket::opcode::text, json.size());
  out.reserve(out.size() + header.size + json.size());
  out.append(reinterpret_cast<const char*>(header.bytes.data()), header.size);
  out.append(json);
}

}  // namespace

namespace {

// A message's properties as fields of its frame; correlation data that is not UTF-8 in
// base64. The names are publish's (docs/protocol.md, "Message properties").
void write_properties(json_writer& w, const outgoing_properties& p) {
  if (!p.content_type.empty()) w.string("content_type", p.content_type);
  if (!p.response_tag.empty()) w.string("response_tag", p.response_tag);
  if (!p.correlation.empty()) {
    if (common::is_valid_utf8(p.correlation))
      w.string("correlation", p.correlation);
    else
      w.base64("correlation", p.correlation).string("correlation_encoding", "base64");
  }
  if (p.user.empty()) return;
  w.begin_array("user_properties");
  for (const auto& [k, v] : p.user) {
    w.begin_array().string_value(k).string_value(v).end_array();
  }
  w.end_array();
}

// The delivery's own fields of a device message: inside its object, before its '}'.
void write_device(std::string& json, const outgoing_message& m, int qos, bool dup) {
  if (!m.offset && qos == 0 && !dup && !m.retained) {
    json.append(m.payload);
    return;
  }
  json.append(m.payload.substr(0, m.payload.size() - 1));  // an object with members: '}' last
  json.push_back(',');
  json_writer w(json);  // starts without a comma
  if (m.retained) w.boolean("retained", true);
  if (m.offset) w.integer("offset", static_cast<std::int64_t>(m.offset));
  if (qos > 0) w.integer("qos", qos).integer("seq", static_cast<std::int64_t>(m.seq));
  if (dup) w.boolean("dup", true);
  json.push_back('}');
}

}  // namespace

void encode_message_frame(const outgoing_message& m, std::string& out, int qos, bool dup) {
  append_text_frame(out, [&](std::string& json) {
    if (m.device) return write_device(json, m, qos, dup);
    json.reserve(m.payload.size() * (m.kind == payload_kind::bytes ? 2 : 1) + m.tag.size() + 128);
    json_writer w(json);
    w.begin_object().string("type", "message").string("tag", m.tag);
    if (m.kind == payload_kind::json) {
      w.raw("payload", m.payload);
    } else if (m.kind == payload_kind::text) {
      w.string("payload", m.payload);
    } else {
      w.base64("payload", m.payload).string("encoding", "base64");
    }
    w.string("from", m.from).string("msgid", m.msgid).integer("timestamp", m.timestamp_ms);
    if (m.retained) w.boolean("retained", true);
    if (m.offset) w.integer("offset", static_cast<std::int64_t>(m.offset));
    if (m.props) write_properties(w, *m.props);
    if (qos > 0) w.integer("qos", qos).integer("seq", static_cast<std::int64_t>(m.seq));
    if (dup) w.boolean("dup", true);
    w.end_object();
  });
}

void encode_publish_ack(std::string& out, std::string_view msgid, std::string_view id,
                        std::string_view type) {
  append_text_frame(out, [&](std::string& json) {
    json_writer w(json);
    w.begin_object().string("type", type).string("msgid", msgid);
    if (!id.empty()) w.string("id", id);
    w.end_object();
  });
}

void encode_pubrel(std::string& out, std::uint64_t seq) {
  append_text_frame(out, [&](std::string& json) {
    json_writer(json)
        .begin_object()
        .string("type", "pubrel")
        .integer("seq", static_cast<std::int64_t>(seq))
        .end_object();
  });
}

void encode_auth_response(std::string& out, std::string_view client_id, std::int64_t now_ms,
                          bool persistent, bool resumed, std::int64_t expires_ms) {
  append_text_frame(out, [&](std::string& json) {
    json_writer w(json);
    w.begin_object()
        .string("type", "auth_response")
        .string("status", "success")
        .string("clientId", client_id)
        .integer("timestamp", now_ms);
    if (persistent) w.string("session", "persistent").boolean("resumed", resumed);
    if (expires_ms) w.integer("expiresAt", expires_ms);
    w.end_object();
  });
}

void encode_refreshed(std::string& out, std::string_view id, std::int64_t expires_ms,
                      std::span<const std::string> unsubscribed) {
  append_text_frame(out, [&](std::string& json) {
    json_writer w(json);
    w.begin_object().string("type", "refreshed");
    if (!id.empty()) w.string("id", id);
    if (expires_ms) w.integer("expiresAt", expires_ms);
    w.begin_array("unsubscribed");
    for (const auto& f : unsubscribed)
      w.string_value(f);
    w.end_array().end_object();
  });
}

void encode_token_expiring(std::string& out, std::int64_t expires_ms, std::int64_t now_ms) {
  append_text_frame(out, [&](std::string& json) {
    json_writer w(json);
    w.begin_object()
        .string("type", "token_expiring")
        .integer("expiresAt", expires_ms)
        .integer("timestamp", now_ms)
        .end_object();
  });
}

void encode_subscribed(std::string& out, std::string_view id,
                       std::span<const std::string_view> tags, bool unsubscribed,
                       const recovery_report& recovery) {
  append_text_frame(out, [&](std::string& json) {
    json_writer w(json);
    w.begin_object().string("type", unsubscribed ? "unsubscribed" : "subscribed");
    if (!id.empty()) w.string("id", id);
    w.begin_array("tags");
    for (auto t : tags)
      w.string_value(t);
    w.end_array();
    if (recovery.asked) {
      w.boolean("recovered", recovery.incomplete.empty());
      if (!recovery.incomplete.empty()) {
        w.begin_array("incomplete");
        for (const auto& t : recovery.incomplete)
          w.string_value(t);
        w.end_array();
      }
    }
    w.end_object();
  });
}

void encode_error(std::string& out, native::error_code code, std::string_view message,
                  std::string_view id, std::string_view msgid) {
  append_text_frame(out, [&](std::string& json) {
    json_writer w(json);
    w.begin_object()
        .string("type", "error")
        .string("code", to_string(code))
        .string("message", message);
    if (!id.empty()) w.string("id", id);
    if (!msgid.empty()) w.string("msgid", msgid);
    w.end_object();
  });
}

void encode_pong(std::string& out, std::string_view id, std::int64_t now_ms) {
  append_text_frame(out, [&](std::string& json) {
    json_writer w(json);
    w.begin_object().string("type", "pong");
    if (!id.empty()) w.string("id", id);
    w.integer("timestamp", now_ms).end_object();
  });
}

std::string build_typed_payload(const typed_request& r, std::string_view tag, std::string_view from,
                                std::string_view msgid, std::int64_t timestamp_ms) {
  std::string json;
  json.reserve(r.members.size() + tag.size() + from.size() + msgid.size() + 80);
  json.push_back('{');
  if (r.reading) {  // it had no type: it gets the one it is routed as
    json_writer(json).string("type", r.type);
    if (!r.members.empty()) json.push_back(',');
  }
  json.append(r.members);
  if (!r.members.empty()) json.push_back(',');
  json_writer w(json);  // starts without a comma
  w.string("from", from).string("msgid", msgid);
  if (!r.has_timestamp) w.integer("timestamp", timestamp_ms);
  w.string("tag", tag);
  json.push_back('}');
  return json;
}

}  // namespace wsagent::protocol::native
