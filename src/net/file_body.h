// An answer's body read from a file: the registry's blobs and the server's own
// binary (/download/berth-linux-amd64) leave this way.
#pragma once

#include <cstdint>
#include <string>

#include "net/http_server.h"

namespace berth::net::http {

// Writes bytes [begin, end) of `fd` as the body of an answer already begun
// (Exchange::Begin with the length), a chunk at a time while the connection's
// backlog stays under a bound, resuming as it drains, and ends the answer after
// the last byte. A read error is logged under `what` and cuts the answer short:
// the client sees a truncated body and retries. With `close_fd` the stream owns
// `fd` and closes it when done, finished or not.
void SendFileRange(const ExchangePtr& ex, int fd, int64_t begin, int64_t end, bool close_fd, std::string what);

}  // namespace berth::net::http
