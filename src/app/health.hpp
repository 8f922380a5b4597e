#pragma once
// GET /healthz: a JSON summary of the agent while it serves (docs/operations.md, "Health").

#include "core/router.hpp"
#include "net/connection.hpp"
#include "net/routes.hpp"

namespace wsagent::app {

net::http_handler health_handler(core::router& router, net::net_probe& net);

}  // namespace wsagent::app
