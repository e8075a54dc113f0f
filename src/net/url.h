// Servers named by URL: the origin of an absolute URL (a 307's Location) and a
// comma-separated list of server addresses (BERTH_SERVER, the agent's --server).
// Both give net::Endpoint (socket.h), so every caller reaches the same place.
#pragma once

#include <string_view>
#include <vector>

#include "base/result.h"
#include "net/socket.h"

namespace berth::net {

// The origin of an absolute http:// or https:// URL ("https://10.0.0.2:7070/v1/x?y"
// gives host 10.0.0.2, port 7070, tls), path and query dropped. Fails on a
// relative URL, another scheme, or one without a host; without a port,
// `default_port` (fails when that is 0).
Result<Endpoint> ParseOrigin(std::string_view url, int default_port = 0);

// Addresses separated by commas, each as Endpoint::Parse takes it (spaces around
// one ignored, empty ones skipped, a repeated one kept once, in order). Fails on
// the first it cannot parse (naming it), and on none at all.
Result<std::vector<Endpoint>> ParseServerList(std::string_view text, int default_port = 0);

}  // namespace berth::net
