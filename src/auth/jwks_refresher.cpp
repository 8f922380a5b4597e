#include "auth/jwks_refresher.hpp"

#include <spdlog/spdlog.h>

namespace wsagent::auth {

jwks_refresher::jwks_refresher(fetch_fn fetch) : fetch_(std::move(fetch)) {}

jwks_refresher::~jwks_refresher() {
  {
    common::lock lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void jwks_refresher::use(std::shared_ptr<jwt_key_store> store, jwt_key_store::key_set fixed,
                         jwks_url_settings s) {
  common::lock lock(mutex_);
  store_ = std::move(store);
  fixed_ = std::move(fixed);
  const bool same = s.url == fetched_from_;
  settings_ = std::move(s);
  auto keys = fixed_;
  if (same && !settings_.url.empty()) keys.insert(keys.end(), fetched_.begin(), fetched_.end());
  store_->set(std::move(keys));
  if (settings_.url.empty()) return;
  if (!same) next_fetch_ = clock::now();  // a new URL: at once
  wake_.notify_all();
}

void jwks_refresher::start() {
  common::lock lock(mutex_);
  if (started_) return;
  started_ = true;
  thread_ = std::thread([this] { run(); });
}

std::string jwks_refresher::fetch_now() {
  jwks_url_settings from;
  {
    common::lock lock(mutex_);
    from = settings_;
  }
  return from.url.empty() ? std::string() : fetch_and_apply(from);
}

void jwks_refresher::unknown_kid() {
  common::lock lock(mutex_);
  if (settings_.url.empty()) return;
  const auto soonest = last_fetch_ + settings_.refetch_min;
  if (next_fetch_ <= soonest) return;  // due by then already
  next_fetch_ = soonest;
  wake_.notify_all();
}

std::string jwks_refresher::fetch_and_apply(const jwks_url_settings& from) {
  const auto& url = from.url;
  {
    common::lock lock(mutex_);
    last_fetch_ = clock::now();
  }
  fetches.fetch_add(1, std::memory_order_relaxed);
  auto got = fetch_(from);
  std::vector<std::string> skipped;
  std::optional<jwt_key_store::key_set> keys;
  std::string error;
  if (!got.ok)
    error = got.error;
  else if (!(keys = parse_jwks(got.body, skipped)))
    error = "not a JWKS document (a JSON object with a \"keys\" array)";
  else if (keys->empty())
    error = "no usable key in it";
  common::lock lock(mutex_);
  if (!error.empty()) {
    failures.fetch_add(1, std::memory_order_relaxed);
    next_fetch_ = clock::now() + std::min(settings_.refetch_min, settings_.refresh);
    spdlog::error("auth.jwt.jwks_url {}: {}; the last good key set stays in use ({} key(s))", url,
                  error, fetched_from_ == url ? fetched_.size() : 0);
    return error;
  }
  for (const auto& why : skipped)
    spdlog::warn("auth.jwt.jwks_url {}: {}", url, why);
  if (url != settings_.url) return {};  // reconfigured meanwhile: not for the store now
  fetched_ = std::move(*keys);
  fetched_from_ = url;
  auto all = fixed_;
  all.insert(all.end(), fetched_.begin(), fetched_.end());
  store_->set(std::move(all));
  next_fetch_ = clock::now() + settings_.refresh;
  spdlog::info("auth.jwt.jwks_url {}: {} key(s)", url, fetched_.size());
  return {};
}

void jwks_refresher::run() {
  common::unique_lock lock(mutex_);
  while (!stopping_) {
    if (settings_.url.empty() || clock::now() < next_fetch_) {
      if (settings_.url.empty()) {
        wake_.wait(lock);
      } else {
        // A copy: the wait reads its deadline while the lock is let go, and unknown_kid()
        // may move next_fetch_ meanwhile (then it wakes this thread).
        const auto until = next_fetch_;
        wake_.wait_until(lock, until);
      }
      continue;
    }
    const auto from = settings_;
    next_fetch_ = clock::now() + settings_.refresh;  // (fetch_and_apply sets it again)
    lock.unlock();
    fetch_and_apply(from);
    lock.lock();
  }
}

}  // namespace wsagent::auth
