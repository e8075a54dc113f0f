// GET /v1/overview?cluster=: the dashboard's summary of one cluster (nodes by
// status, resources in all and by zone, task counts, the services not steady
// first, recent service events), of bounded size at any scale.
#pragma once

namespace berth::net::http {
class Router;
}

namespace berth::api {

struct Context;

void AddOverviewRoutes(net::http::Router* router, Context* ctx);

}  // namespace berth::api
