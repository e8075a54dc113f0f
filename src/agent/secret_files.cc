#include "agent/secret_files.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <set>

#include "base/log.h"

namespace berth::agent {

namespace {

bool IsTmpfs(const std::string& path) {
  struct statfs fs {};
  return statfs(path.c_str(), &fs) == 0 && static_cast<unsigned long>(fs.f_type) == TMPFS_MAGIC;
}

Status RemoveTree(const std::string& path) {
  if (DIR* d = opendir(path.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      std::string full = path + "/" + name;
      struct stat st {};
      if (lstat(full.c_str(), &st) != 0) continue;
      if (S_ISDIR(st.st_mode)) {
        (void)RemoveTree(full);
      } else {
        unlink(full.c_str());
      }
    }
    closedir(d);
  }
  if (rmdir(path.c_str()) != 0 && errno != ENOENT) return Error::Internal("rmdir " + path + ": " + strerror(errno));
  return {};
}

// Task ids and container names are checked by the server; refused here too, as
// they name directories.
bool SafeName(const std::string& s) {
  if (s.empty() || s == "." || s == ".." || s.size() > 255) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.';
  });
}

}  // namespace

SecretFiles::SecretFiles(std::string root) {
  if (!root.empty() && root[0] != '/') {
    char cwd[PATH_MAX];
    root = std::string(getcwd(cwd, sizeof cwd) ? cwd : "/") + "/" + root;
  }
  root_ = std::move(root);
}

Status SecretFiles::EnsureTmpfs() {
  if (ready_) return {};
  if (mkdir(root_.c_str(), 0700) != 0 && errno != EEXIST) {
    return Error::Internal("cannot create " + root_ + ": " + strerror(errno));
  }
  chmod(root_.c_str(), 0700);
  if (!IsTmpfs(root_)) {
    if (mount("tmpfs", root_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0700,size=64m") != 0) {
      return Error::Internal("secret files are kept only on a tmpfs, and " + root_ +
                             " is none and cannot be made one (mount: " + strerror(errno) +
                             "); run the agent as root, or mount a tmpfs there");
    }
    log::Info("agent", "mounted a tmpfs for secret files", {{"path", root_}});
  }
  ready_ = true;
  return {};
}

Result<std::string> SecretFiles::Write(const std::string& task_id, const std::string& container,
                                       const std::vector<std::pair<std::string, std::string>>& files) {
  if (!SafeName(task_id) || !SafeName(container)) return Error::Invalid("unusable task or container name");
  if (Status s = EnsureTmpfs(); !s) return s.take_error();
  std::string task_dir = root_ + "/" + task_id;
  if (mkdir(task_dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return Error::Internal("cannot create " + task_dir + ": " + strerror(errno));
  }
  std::string dir = task_dir + "/" + container;
  (void)RemoveTree(dir);  // a plan made again starts from nothing
  if (mkdir(dir.c_str(), 0755) != 0) return Error::Internal("cannot create " + dir + ": " + strerror(errno));
  for (const auto& [name, value] : files) {
    if (!SafeName(name)) return Error::Invalid("unusable secret file name " + name);
    std::string path = dir + "/" + name;
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0444);
    if (fd < 0) return Error::Internal("cannot create " + path + ": " + strerror(errno));
    size_t done = 0;
    while (done < value.size()) {
      ssize_t n = write(fd, value.data() + done, value.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        int err = errno;
        close(fd);
        return Error::Internal("cannot write " + path + ": " + strerror(err));
      }
      done += static_cast<size_t>(n);
    }
    fchmod(fd, 0444);
    close(fd);
  }
  return dir;
}

void SecretFiles::Forget(const std::string& task_id) {
  if (!SafeName(task_id)) return;
  if (Status s = RemoveTree(root_ + "/" + task_id); !s) {
    log::Warn("agent", "cannot remove a task's secret files", {{"task", task_id}, {"error", s.error().message}});
  }
}

void SecretFiles::Sweep(const std::set<std::string>& keep) {
  std::vector<std::string> gone;
  if (DIR* d = opendir(root_.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string name = e->d_name;
      if (name != "." && name != ".." && !keep.count(name)) gone.push_back(name);
    }
    closedir(d);
  }
  for (const std::string& task_id : gone) {
    log::Info("agent", "removing the secret files of a task no longer here", {{"task", task_id}});
    Forget(task_id);
  }
}

}  // namespace berth::agent
