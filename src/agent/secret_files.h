// Secret files (berthTarget "file"): written by the agent into a directory of
// their own per task and container, on a tmpfs the agent mounts if it must, and
// bound read-only at /run/secrets in the container. They never touch a disk.
#pragma once

#include <set>
#include <string>
#include <utility>
#include <vector>

#include "base/result.h"

namespace berth::agent {

class SecretFiles {
 public:
  // `root`: the directory to keep them in (made 0700, mounted as a tmpfs unless
  // it is one already); made absolute.
  explicit SecretFiles(std::string root);

  // Writes `files` (name, value) into ROOT/<task>/<container>/, each 0444, and
  // returns that directory. Fails when no tmpfs can be had at ROOT.
  Result<std::string> Write(const std::string& task_id, const std::string& container,
                            const std::vector<std::pair<std::string, std::string>>& files);
  // Removes ROOT/<task> and what it holds (nothing there: nothing to do).
  void Forget(const std::string& task_id);
  // Removes every task's directory but those of `keep` (the tasks the agent
  // found running when it started: what an agent that crashed left behind).
  void Sweep(const std::set<std::string>& keep);

 private:
  Status EnsureTmpfs();
  std::string root_;
  bool ready_ = false;
};

}  // namespace berth::agent
