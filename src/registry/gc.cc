#include "registry/gc.h"

#include "base/log.h"
#include "registry/blobs.h"
#include "registry/state.h"

namespace berth::registry {

GcResult CollectGarbage(BlobStore& blobs, const RegistryState& state,
                        const std::function<bool(const std::string&)>& pending, int64_t mark_ms, bool dry_run) {
  GcResult out;
  blobs.ForEachBlob([&](const std::string& digest, int64_t size, int64_t mtime_ms) {
    if (state.BlobRefs(digest) > 0 || (pending && pending(digest)) || mtime_ms >= mark_ms) {
      out.kept++;
      return;
    }
    // Checked again, under the commit lock: a push may have refreshed it since the walk saw it.
    Result<bool> removed = blobs.RemoveIfOlder(digest, mark_ms, dry_run);
    if (!removed) {
      log::Warn("registry", "gc could not remove a blob", {{"digest", digest}, {"error", removed.error().message}});
      out.errors++;
      return;
    }
    if (!*removed) {
      out.kept++;
      return;
    }
    out.removed.push_back(digest);
    out.removed_bytes += size;
  });
  return out;
}

}  // namespace berth::registry
