#include "core/auth.hpp"

namespace wsagent::core {

open_authenticator::open_authenticator(std::shared_ptr<const grants> anonymous)
    : all_(std::move(anonymous)) {
  if (all_) return;
  auto g = std::make_shared<grants>();
  g->allow_all = true;
  all_ = std::move(g);
}

void open_authenticator::authenticate(const auth_request&, auth_done done) const {
  done({true, identity{"", "", all_, {}, {}}, 0, {}});
}

}  // namespace wsagent::core
