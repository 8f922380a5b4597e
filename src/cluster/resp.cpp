#include "cluster/resp.hpp"

#include <hiredis/hiredis.h>

#include <charconv>
#include <string>

namespace wsagent::cluster {

namespace {

void append_number(std::string& out, std::size_t n) {
  char digits[24];
  const auto end = std::to_chars(digits, digits + sizeof digits, n).ptr;
  out.append(digits, end);
}

// hiredis allocates an array's element pointers when it reads the array's header, so a
// header claiming billions of elements would take gigabytes before a byte of them arrives
// (the fuzzer found it). The reader's object functions are hiredis's own but for arrays,
// which are refused past max_array_elements.
thread_local bool array_refused = false;

const redisReplyObjectFunctions& bounded_functions() {
  static const redisReplyObjectFunctions fns = [] {
    redisReader* probe = redisReaderCreate();
    redisReplyObjectFunctions f = *probe->fn;
    redisReaderFree(probe);
    return f;
  }();
  static redisReplyObjectFunctions bounded = [] {
    redisReplyObjectFunctions f = fns;
    f.createArray = [](const redisReadTask* task, int elements) -> void* {
      if (elements > static_cast<int>(max_array_elements)) {
        array_refused = true;
        return nullptr;  // hiredis: an error, the stream is not read further
      }
      return fns.createArray(task, elements);
    };
    return f;
  }();
  return bounded;
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

resp_reader::resp_reader()
    : reader_(redisReaderCreateWithFunctions(
          const_cast<redisReplyObjectFunctions*>(&bounded_functions()))) {}

resp_reader::~resp_reader() {
  redisReaderFree(reader_);
}

void resp_reader::feed(const char* data, std::size_t size) {
  if (size) redisReaderFeed(reader_, data, size);
}

resp_reader::status resp_reader::next(resp_value& out) {
  void* reply = nullptr;
  array_refused = false;
  if (redisReaderGetReply(reader_, &reply) != REDIS_OK) {
    if (array_refused)
      error_ = "an array of more than " + std::to_string(max_array_elements) + " elements";
    else if (error_.empty())
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
