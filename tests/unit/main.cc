// The unit-test runner. Logs are quiet (errors only) unless BERTH_TEST_LOG names a
// level, so a failing test's output is not buried under the server's info lines.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <csignal>
#include <cstdlib>

#include "base/log.h"

int main(int argc, char* argv[]) {
  // A peer that closes early must fail a write, not kill the test process.
  signal(SIGPIPE, SIG_IGN);
  berth::log::Level level = berth::log::Level::kError;
  if (const char* env = std::getenv("BERTH_TEST_LOG")) (void)berth::log::ParseLevel(env, &level);
  berth::log::SetLevel(level);
  return Catch::Session().run(argc, argv);
}
