// The HTTP fuzz harness as a function, so the unit suite can replay the corpus
// and check what the server answered, not only that it did not crash.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace berth::fuzz {

struct HttpOutcome {
  std::string output;      // what the server wrote (the first 64 KiB)
  bool closed = false;     // the server closed the connection
  bool stalled = false;    // input left unread with nothing pending: a bug
  size_t pieces_left = 0;  // input pieces never read
  // "400 closed", "200 200 open": the status of each answer, in order, then the
  // connection's end state (and STALLED when it stalled).
  std::string Summary() const;
};

// Serves `data` (one client's bytes, fed in pieces cut by a hash of the input)
// to a fresh connection of the real HTTP server over an in-memory stream.
HttpOutcome ServeHttpInput(const uint8_t* data, size_t size);
// The same over a TLS session (a client TLS stream in front of the input, the
// server's TLS stream behind it, an in-memory wire between). The answers and the
// connection's end state are those of the plain path.
HttpOutcome ServeHttpInputOverTls(const uint8_t* data, size_t size);

}  // namespace berth::fuzz
