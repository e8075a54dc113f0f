// Replays the checked-in fuzz corpus (tests/fuzz/corpus/http_request/) through the
// fuzz harness in the normal unit suite, so every build — release and sanitized —
// runs the HTTP server's regression inputs, not only the clang fuzz build. Each
// input's answers (their statuses, in order, and whether the connection ended
// closed) must be those recorded in tests/fuzz/http_request.expected: a change
// in what the server answers to any of them fails here. After a deliberate
// change, rewrite the file with BERTH_FUZZ_EXPECT_UPDATE=1 and review its diff.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "../../fuzz/http_request_fuzzer.h"

TEST_CASE("http server: the fuzz corpus replays with the answers recorded", "[net][http_server][fuzz]") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(BERTH_FUZZ_CORPUS_DIR) / "http_request";
  const fs::path expected_file = fs::path(BERTH_FUZZ_CORPUS_DIR).parent_path() / "http_request.expected";
  REQUIRE(fs::is_directory(dir));
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.is_regular_file()) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  CHECK(files.size() >= 20);

  std::map<std::string, std::string> expected;
  {
    std::ifstream in(expected_file);
    std::string line;
    while (std::getline(in, line)) {
      size_t colon = line.find(": ");
      if (line.empty() || line[0] == '#' || colon == std::string::npos) continue;
      expected[line.substr(0, colon)] = line.substr(colon + 2);
    }
  }
  const char* update = getenv("BERTH_FUZZ_EXPECT_UPDATE");
  std::string written = "# tests/fuzz/corpus/http_request/<input>: statuses answered, then closed|open\n";
  for (const fs::path& file : files) {
    std::ifstream in(file, std::ios::binary);
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string name = file.filename().string();
    INFO(name);
    berth::fuzz::HttpOutcome outcome =
        berth::fuzz::ServeHttpInput(reinterpret_cast<const uint8_t*>(data.data()), data.size());
    CHECK_FALSE(outcome.stalled);
    written += name + ": " + outcome.Summary() + "\n";
    if (update && *update) continue;
    auto it = expected.find(name);
    INFO("no line for it in " << expected_file.string());
    REQUIRE(it != expected.end());
    CHECK(outcome.Summary() == it->second);
  }
  if (update && *update) {
    std::ofstream(expected_file) << written;
  } else {
    CHECK(expected.size() == files.size());  // no line for an input that is gone
  }
}

TEST_CASE("http server: the fuzz corpus over a TLS session gets the same answers", "[net][http_server][fuzz][tls]") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(BERTH_FUZZ_CORPUS_DIR) / "http_request";
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.is_regular_file()) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  REQUIRE(files.size() >= 20);
  for (const fs::path& file : files) {
    std::ifstream in(file, std::ios::binary);
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    INFO(file.filename().string());
    const auto* bytes = reinterpret_cast<const uint8_t*>(data.data());
    berth::fuzz::HttpOutcome plain = berth::fuzz::ServeHttpInput(bytes, data.size());
    berth::fuzz::HttpOutcome tls = berth::fuzz::ServeHttpInputOverTls(bytes, data.size());
    CHECK_FALSE(tls.stalled);
    CHECK(tls.Summary() == plain.Summary());
  }
}
