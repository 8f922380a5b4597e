#include "cluster/resp.hpp"

#include <hiredis/hiredis.h>

#include <charconv>

namespace wsagent::cluster {

namespace {

void append_number(std::string& out, std::size_t n) {
  char digits[24];
  const auto end = std::to_chars(digits, digits + sizeof digits, n).ptr;
  out.append(digits, end);
}

resp_value convert(const redisReply& r) {
  resp_value v;
  switch (r.type) {
    case REDIS_REPLY_STRING:
      v.type = resp_value::kind::string;
      v.text.assign(r.str, r.len);
      break;
    case REDIS_REPLY_STATUS:
      v.type = resp_value::kind::status;
      v.text.assign(r.str, r.len);
      break;
    case REDIS_REPLY_ERROR:
      v.type = resp_value::kind::error;
      v.text.assign(r.str, r.len);
      break;
    case REDIS_REPLY_INTEGER:
      v.type = resp_value::kind::integer;
      v.integer = r.integer;
      break;
    case REDIS_REPLY_ARRAY:
      v.type = resp_value::kind::array;
      v.elements.reserve(r.elements);
      for (std::size_t i = 0; i < r.elements; ++i)
        v.elements.push_back(convert(*r.element[i]));
      break;
    default:  // REDIS_REPLY_NIL
      break;
  }
  return v;
}

}  // namespace

std::string_view resp_value::push_kind() const noexcept {
  if (type != kind::array || elements.empty() || !elements[0].is(kind::string)) return {};
  return elements[0].text;
}

void append_command(std::string& out, std::span<const std::string_view> args) {
  out.push_back('*');
  append_number(out, args.size());
  out.append("\r\n");
  for (auto a : args) {
    out.push_back('$');
    append_number(out, a.size());
    out.append("\r\n");
    out.append(a);
    out.append("\r\n");
  }
}

void append_command(std::string& out, std::initializer_list<std::string_view> args) {
  append_command(out, std::span<const std::string_view>(args.begin(), args.size()));
}

resp_reader::resp_reader() : reader_(redisReaderCreate()) {}

resp_reader::~resp_reader() {
  redisReaderFree(reader_);
}

void resp_reader::feed(const char* data, std::size_t size) {
  if (size) redisReaderFeed(reader_, data, size);
}

resp_reader::status resp_reader::next(resp_value& out) {
  void* reply = nullptr;
  if (redisReaderGetReply(reader_, &reply) != REDIS_OK) {
    error_ = reader_->errstr[0] ? reader_->errstr : "malformed RESP";
    return status::error;
  }
  if (!reply) return status::need_more;
  auto* r = static_cast<redisReply*>(reply);
  out = convert(*r);
  freeReplyObject(r);
  return status::value;
}

}  // namespace wsagent::cluster
