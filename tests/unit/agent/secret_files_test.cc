// agent/secret_files: a task's directory goes when it stops, and what an agent
// that crashed left behind goes at the next start (Sweep), but the running ones'.
#include "agent/secret_files.h"

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "support/test_loop.h"

using namespace berth;
using berth::testing::TempDir;

TEST_CASE("secret files: Sweep removes every task's directory but the kept ones", "[agent][secret]") {
  TempDir dir;
  std::string root = dir.File("secrets");
  REQUIRE(mkdir(root.c_str(), 0700) == 0);
  for (const char* task : {"a", "b", "c"}) {
    std::string d = root + "/" + task;
    REQUIRE(mkdir(d.c_str(), 0700) == 0);
    REQUIRE(mkdir((d + "/app").c_str(), 0700) == 0);
    std::ofstream(d + "/app/DB") << "hunter2";
  }
  agent::SecretFiles files(root);
  files.Sweep({"b"});
  struct stat st {};
  CHECK(stat((root + "/a").c_str(), &st) != 0);
  CHECK(stat((root + "/c").c_str(), &st) != 0);
  CHECK(stat((root + "/b/app/DB").c_str(), &st) == 0);
  files.Forget("b");
  CHECK(stat((root + "/b").c_str(), &st) != 0);
  files.Forget("b");  // nothing there: nothing to do
  files.Sweep({});    // nor here
}
