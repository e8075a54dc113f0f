// Online garbage collection of blobs. A blob file is removed only when, at the
// instant of its removal (on the loop thread, the state's only writer), all of
// these hold:
//   - no stored manifest references it (RegistryState::blob_refs);
//   - no manifest push in flight names it (`pending`: the front end claims a
//     manifest's blobs from its check until its command commits);
//   - its mtime is before `mark_ms`, the collection's start minus a grace
//     period. Every blob written, re-uploaded, mounted or probed with HEAD/GET
//     gets a fresh mtime, so a layer uploaded while a collection runs, or one a
//     client was told exists and is about to reference, is never removed. Blobs
//     are committed on pool threads: the age check and the unlink happen under
//     the same lock as a commit's check and rename (BlobStore::RemoveIfOlder).
// CNCF distribution marks first and sweeps later, with pushes running in
// between, which is how it loses layers; here there is no gap between decision
// and removal, and the grace period covers the gap between a layer's upload and
// the manifest that references it.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace berth::registry {

class BlobStore;
class RegistryState;

struct GcResult {
  std::vector<std::string> removed;  // digests (would be removed, on a dry run)
  int64_t removed_bytes = 0;
  int64_t kept = 0;
  int64_t errors = 0;
};

GcResult CollectGarbage(BlobStore& blobs, const RegistryState& state,
                        const std::function<bool(const std::string&)>& pending, int64_t mark_ms, bool dry_run);

}  // namespace berth::registry
