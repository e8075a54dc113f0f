// Small files the binary keeps beside its data: tokens, the agent's node id, its
// list of pulled images. Written whole and durably, never half.
#pragma once

#include <string>

#include "base/result.h"

namespace berth::files {

// Writes `content` to `path` (mode `mode`) through a temporary file beside it,
// fsynced, then renamed over `path`, and the directory fsynced: after a crash
// the file holds the old content or the new, never a part.
Status WriteAtomically(const std::string& path, const std::string& content, int mode = 0600);

// The whole of a small file ("" when it cannot be read), trailing white space removed.
std::string ReadTrimmed(const std::string& path);

}  // namespace berth::files
