// Blob files: one per digest under <root>/blobs/sha256/<2 hex>/<64 hex>, written
// through an upload file under <root>/uploads/<id>, hashed as the bytes arrive,
// verified, fsynced and renamed into place (the directory fsynced after), so a
// blob visible under a digest is always whole and durable. Two uploads of the
// same bytes leave one file.
//
// The calls are synchronous file I/O on the caller's thread. Writes run on the
// loop (they land in the page cache); Commit, with its fsyncs, runs on a pool
// thread. Commit and RemoveIfOlder take one lock around "is it there / how old
// is it" and the rename or unlink that follows, so a collection can never remove
// a blob that a commit has just made or refreshed.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "base/crypto.h"
#include "base/result.h"

namespace berth::registry {

// One upload's temporary file.
class UploadFile {
 public:
  ~UploadFile();
  UploadFile(const UploadFile&) = delete;
  UploadFile& operator=(const UploadFile&) = delete;

  // Opens `path` (created when absent and `create`); the write offset is its size,
  // so a session resumes where its file ends.
  static Result<std::unique_ptr<UploadFile>> Open(const std::string& path, bool create);
  // Appends `data` at the end. On failure (a full disk) the file is cut back to
  // its size before the call.
  Status Append(std::string_view data);
  uint64_t size() const { return size_; }
  // The sha256 digest of the whole file: from the running hash when every byte
  // went through Append since the file was created, otherwise by reading it.
  Result<std::string> Digest();
  int fd() const { return fd_; }
  const std::string& path() const { return path_; }

 private:
  UploadFile() = default;
  int fd_ = -1;
  std::string path_;
  uint64_t size_ = 0;
  bool hash_complete_ = false;  // hasher_ has seen every byte of the file
  std::unique_ptr<crypto::Sha256Stream> hasher_;
};

class BlobStore {
 public:
  explicit BlobStore(std::string root) : root_(std::move(root)) {}
  // Creates the directories.
  Status Init();

  std::string BlobPath(std::string_view digest) const;
  std::string UploadPath(std::string_view id) const;
  const std::string& root() const { return root_; }

  // The blob's size, or -1 when there is none.
  int64_t Size(std::string_view digest) const;
  // Marks the blob as just used (its mtime), so a collection running now keeps
  // it; see gc.h.
  void Touch(std::string_view digest) const;
  // Makes `file` the blob `digest` (which it must hash to): fsync, rename, fsync of
  // the directory. When the blob exists already, the file is removed and the
  // blob touched. `file` is closed either way. Safe on any thread.
  Status Commit(std::unique_ptr<UploadFile> file, std::string_view digest);
  // Removes the blob if its mtime is before `mark_ms` (only checks when
  // `dry_run`); returns whether it did (would).
  Result<bool> RemoveIfOlder(std::string_view digest, int64_t mark_ms, bool dry_run);
  void RemoveUpload(std::string_view id) const;

  // Calls `fn(digest, size, mtime_ms)` for every blob file.
  void ForEachBlob(const std::function<void(const std::string&, int64_t, int64_t)>& fn) const;
  // Calls `fn(id, mtime_ms)` for every upload file.
  void ForEachUpload(const std::function<void(const std::string&, int64_t)>& fn) const;

 private:
  std::string root_;
  std::mutex mu_;  // see the file comment
};

}  // namespace berth::registry
