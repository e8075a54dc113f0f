// Fuzzes the log's entries as a server reads them back (store::DecodeBatch over
// the state machine's decoders, the registry's commands included): once servers
// replicate, these bytes come from a peer.
//
// Invariant checked besides the sanitizers: what decodes re-encodes to an entry
// that decodes to the same commands (the leader applies its own commands, a
// follower the decoded ones: both must be the same change).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.h"
#include "model/state.h"
#include "registry/state.h"
#include "store/store.h"

namespace {

using namespace berth;

std::vector<std::string> Encodings(const std::vector<store::CommandPtr>& commands) {
  std::vector<std::string> out;
  for (const store::CommandPtr& c : commands) {
    out.push_back(std::string(c->Type()) + "@" + std::to_string(c->time_ms) + ":" + c->Encode());
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) { return fuzz::QuietLogs(); }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static model::State* state = [] {
    auto* s = new model::State();
    s->AddPart(new registry::RegistryState());
    return s;
  }();
  std::string_view entry(reinterpret_cast<const char*>(data), size);
  Result<std::vector<store::CommandPtr>> decoded = store::DecodeBatch(entry, state);
  if (!decoded) {
    if (decoded.error().message.empty()) fuzz::Fail("a refusal without a message");
    return 0;
  }
  std::vector<const store::Command*> commands;
  for (const store::CommandPtr& c : decoded.value()) commands.push_back(c.get());
  std::string again = store::EncodeBatch(commands);
  if (again.size() % 8 != 0) fuzz::Fail("an entry not in whole 8-byte words", again);
  Result<std::vector<store::CommandPtr>> redecoded = store::DecodeBatch(again, state);
  if (!redecoded) fuzz::Fail("a re-encoded entry does not decode", redecoded.error().message);
  if (Encodings(decoded.value()) != Encodings(redecoded.value())) {
    fuzz::Fail("decoding a re-encoded entry gives other commands", again);
  }
  return 0;
}
