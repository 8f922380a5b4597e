#include "auth/revocation.hpp"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>

namespace wsagent::auth {

namespace {

// Seconds since the epoch of a TOML date-time with an offset; nullopt for a local one (no
// offset: which zone it means is not known).
std::optional<std::int64_t> epoch_seconds(const toml::date_time& dt) {
  if (!dt.offset) return std::nullopt;
  namespace ch = std::chrono;
  const ch::sys_days day = ch::year{dt.date.year} / ch::month{dt.date.month} / ch::day{dt.date.day};
  return day.time_since_epoch() / ch::seconds(1) + dt.time.hour * 3600 + dt.time.minute * 60 +
         dt.time.second - static_cast<std::int64_t>(dt.offset->minutes) * 60;
}

}  // namespace

std::optional<revocation_entries> read_revocation_file(
    const std::string& path, std::vector<common::config_problem>& problems) {
  const auto first_problem = problems.size();
  auto problem = [&](int line, std::string key, std::string message) {
    problems.push_back({path, line, std::move(key), std::move(message)});
  };
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    problem(0, "", std::string("cannot read the revocation file: ") + std::strerror(errno));
    return std::nullopt;
  }
  std::ostringstream text;
  text << in.rdbuf();
  toml::table doc;
  try {
    doc = toml::parse(std::string_view(text.str()), std::string_view(path));
  } catch (const toml::parse_error& e) {
    problem(static_cast<int>(e.source().begin.line), "",
            "TOML syntax error: " + std::string(e.description()));
    return std::nullopt;
  }
  revocation_entries out;
  for (auto&& entry : doc) {
    const std::string field(entry.first.str());
    const int at = common::line_of(entry.first, entry.second);
    if (field == "jti") {
      std::vector<std::string> ids;
      if (common::read_string_array(entry.second, path, at, "jti", ids, problems))
        out.ids.insert(ids.begin(), ids.end());
    } else if (field == "subject") {
      auto* list = entry.second.as_array();
      if (!list || !list->is_array_of_tables()) {
        problem(at, "subject", "expected an array of tables ([[subject]])");
        continue;
      }
      for (auto& item : *list) {
        const int line = common::line_of(item) > 0 ? common::line_of(item) : at;
        std::string sub;
        std::optional<std::int64_t> before;
        for (auto&& e2 : *item.as_table()) {
          const std::string f2(e2.first.str());
          const int at2 = common::line_of(e2.first, e2.second);
          if (f2 == "sub") {
            if (auto* s = e2.second.as_string())
              sub = s->get();
            else
              problem(at2, "subject.sub", "expected a string, got " + common::type_of(e2.second));
          } else if (f2 == "issued_before") {
            if (auto* i = e2.second.as_integer(); i && i->get() >= 0)
              before = i->get();
            else if (auto* d = e2.second.as_date_time())
              before = epoch_seconds(d->get());
            if (!before)
              problem(
                  at2, "subject.issued_before",
                  "expected a date-time with its offset (2026-12-01T12:00:00Z) or seconds since "
                  "the epoch");
          } else {
            problem(at2, "subject." + f2,
                    "unknown key" + common::did_you_mean(f2, {"sub", "issued_before"}));
          }
        }
        if (sub.empty() || !before) {
          problem(line, "subject", "a [[subject]] needs sub and issued_before");
          continue;
        }
        out.subjects[sub] = std::max(out.subjects[sub], *before);
      }
    } else {
      problem(at, field, "unknown key" + common::did_you_mean(field, {"jti", "subject"}));
    }
  }
  if (problems.size() != first_problem) return std::nullopt;
  return out;
}

void revocation_list::set_file_entries(revocation_entries e) {
  common::lock lock(mutex_);
  file_ = std::move(e);
}

void revocation_list::revoke_id(std::string jti) {
  common::lock lock(mutex_);
  added_.ids.insert(std::move(jti));
}

void revocation_list::revoke_subject(std::string subject, std::int64_t issued_before_s) {
  common::lock lock(mutex_);
  auto& t = added_.subjects[std::move(subject)];
  t = std::max(t, issued_before_s);
}

std::string revocation_list::check(std::string_view jti, std::string_view subject,
                                   std::int64_t issued_s) const {
  common::lock lock(mutex_);
  for (const auto* e : {&file_, &added_}) {
    if (!jti.empty() && e->ids.contains(jti)) return "JWT: revoked (jti)";
    if (auto it = e->subjects.find(subject); it != e->subjects.end() && issued_s < it->second)
      return "JWT: revoked (its subject's tokens issued before " + std::to_string(it->second) + ")";
  }
  return {};
}

bool revocation_list::first_use(std::string_view jti, std::int64_t expires_s, std::int64_t now_s,
                                std::size_t limit) {
  common::lock lock(mutex_);
  if (now_s >= next_purge_s_) {  // what has expired cannot be used again anyway
    std::erase_if(used_, [&](const auto& u) { return u.second < now_s; });
    next_purge_s_ = now_s + 60;
  }
  if (used_.size() >= limit) return false;
  return used_.emplace(std::string(jti), expires_s).second;
}

std::size_t revocation_list::size() const {
  common::lock lock(mutex_);
  return file_.ids.size() + file_.subjects.size() + added_.ids.size() + added_.subjects.size();
}

}  // namespace wsagent::auth
