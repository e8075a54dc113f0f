#include "registry/blobs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "registry/names.h"

namespace berth::registry {

namespace {

Error IoError(const std::string& what, int err) {
  Error e = Error::Internal(what + ": " + strerror(err));
  e.code = err == ENOSPC || err == EDQUOT ? "STORAGE_FULL" : "STORAGE_ERROR";
  if (err == ENOSPC || err == EDQUOT) e.message = what + ": the registry's disk is full";
  return e;
}

Status MakeDir(const std::string& path) {
  if (mkdir(path.c_str(), 0700) == 0 || errno == EEXIST) return {};
  return IoError("cannot create " + path, errno);
}

Status FsyncDir(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return IoError("cannot open " + path, errno);
  int rc = fsync(fd);
  int err = errno;
  close(fd);
  if (rc != 0) return IoError("cannot fsync " + path, err);
  return {};
}

int64_t MtimeMs(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000 + st.st_mtim.tv_nsec / 1000000;
}

std::vector<std::string> List(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    out.emplace_back(e->d_name);
  }
  closedir(d);
  return out;
}

}  // namespace

UploadFile::~UploadFile() {
  if (fd_ >= 0) close(fd_);
}

Result<std::unique_ptr<UploadFile>> UploadFile::Open(const std::string& path, bool create) {
  std::unique_ptr<UploadFile> f(new UploadFile());
  f->path_ = path;
  f->fd_ = open(path.c_str(), O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0600);
  if (f->fd_ < 0) return IoError("cannot open upload file " + path, errno);
  struct stat st {};
  if (fstat(f->fd_, &st) != 0) return IoError("cannot stat " + path, errno);
  f->size_ = static_cast<uint64_t>(st.st_size);
  f->hasher_ = std::make_unique<crypto::Sha256Stream>();
  f->hash_complete_ = f->size_ == 0;
  return f;
}

Status UploadFile::Append(std::string_view data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = pwrite(fd_, data.data() + done, data.size() - done, static_cast<off_t>(size_ + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = n < 0 ? errno : ENOSPC;
      if (ftruncate(fd_, static_cast<off_t>(size_)) != 0) hash_complete_ = false;
      return IoError("cannot write the upload", err);
    }
    done += static_cast<size_t>(n);
  }
  if (hash_complete_) hasher_->Update(data);
  size_ += data.size();
  return {};
}

Result<std::string> UploadFile::Digest() {
  if (!hash_complete_) {
    hasher_ = std::make_unique<crypto::Sha256Stream>();
    std::vector<char> buf(1 << 20);
    uint64_t off = 0;
    while (off < size_) {
      ssize_t n = pread(fd_, buf.data(), buf.size(), static_cast<off_t>(off));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return IoError("cannot read the upload back", n < 0 ? errno : EIO);
      hasher_->Update(std::string_view(buf.data(), static_cast<size_t>(n)));
      off += static_cast<uint64_t>(n);
    }
  }
  crypto::Sha256Digest d = hasher_->Finish();
  hasher_ = std::make_unique<crypto::Sha256Stream>();
  hash_complete_ = false;  // the running hash is spent
  return "sha256:" + crypto::Hex(d);
}

Status BlobStore::Init() {
  for (const std::string& d : {root_, root_ + "/blobs", root_ + "/blobs/sha256", root_ + "/uploads"}) {
    if (Status s = MakeDir(d); !s) return s;
  }
  return {};
}

std::string BlobStore::BlobPath(std::string_view digest) const {
  std::string_view hex = digest.substr(7);
  return root_ + "/blobs/sha256/" + std::string(hex.substr(0, 2)) + "/" + std::string(hex);
}

std::string BlobStore::UploadPath(std::string_view id) const { return root_ + "/uploads/" + std::string(id); }

int64_t BlobStore::Size(std::string_view digest) const {
  struct stat st {};
  if (stat(BlobPath(digest).c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return -1;
  return st.st_size;
}

void BlobStore::Touch(std::string_view digest) const {
  (void)utimensat(AT_FDCWD, BlobPath(digest).c_str(), nullptr, 0);
}

Status BlobStore::Commit(std::unique_ptr<UploadFile> file, std::string_view digest) {
  std::string target = BlobPath(digest);
  std::string tmp = file->path();
  if (fsync(file->fd()) != 0) return IoError("cannot fsync the upload", errno);
  file.reset();
  std::string dir = root_ + "/blobs/sha256/" + std::string(digest.substr(7, 2));
  bool new_dir = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (Size(digest) >= 0) {
      unlink(tmp.c_str());
      Touch(digest);
      return {};
    }
    struct stat st {};
    new_dir = stat(dir.c_str(), &st) != 0;
    if (Status s = MakeDir(dir); !s) return s;
    // A fresh mtime: the collection that is running keeps what was just written.
    (void)utimensat(AT_FDCWD, tmp.c_str(), nullptr, 0);
    if (rename(tmp.c_str(), target.c_str()) != 0) return IoError("cannot move the blob into place", errno);
  }
  if (new_dir) {
    if (Status s = FsyncDir(root_ + "/blobs/sha256"); !s) return s;
  }
  if (Status s = FsyncDir(dir); !s) return s;
  return FsyncDir(root_ + "/uploads");
}

Result<bool> BlobStore::RemoveIfOlder(std::string_view digest, int64_t mark_ms, bool dry_run) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string path = BlobPath(digest);
  struct stat st {};
  if (stat(path.c_str(), &st) != 0 || MtimeMs(st) >= mark_ms) return false;
  if (dry_run) return true;
  if (unlink(path.c_str()) != 0 && errno != ENOENT) return IoError("cannot remove blob", errno);
  return true;
}

void BlobStore::RemoveUpload(std::string_view id) const { unlink(UploadPath(id).c_str()); }

void BlobStore::ForEachBlob(const std::function<void(const std::string&, int64_t, int64_t)>& fn) const {
  std::string base = root_ + "/blobs/sha256";
  for (const std::string& sub : List(base)) {
    if (sub.size() != 2) continue;
    for (const std::string& name : List(base + "/" + sub)) {
      std::string digest = "sha256:" + name;
      if (!IsSha256Digest(digest) || name.compare(0, 2, sub) != 0) continue;
      struct stat st {};
      if (stat((base + "/" + sub + "/" + name).c_str(), &st) != 0) continue;
      fn(digest, st.st_size, MtimeMs(st));
    }
  }
}

void BlobStore::ForEachUpload(const std::function<void(const std::string&, int64_t)>& fn) const {
  std::string base = root_ + "/uploads";
  for (const std::string& name : List(base)) {
    struct stat st {};
    if (stat((base + "/" + name).c_str(), &st) != 0) continue;
    fn(name, MtimeMs(st));
  }
}

}  // namespace berth::registry
