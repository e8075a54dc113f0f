// Replays the checked-in fuzz corpus (tests/fuzz/corpus/http_request/) through the
// fuzz harness in the normal unit suite, so every build — release and sanitized —
// runs the HTTP server's regression inputs, not only the clang fuzz build.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

TEST_CASE("http server: the fuzz corpus replays cleanly", "[net][http_server][fuzz]") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(BERTH_FUZZ_CORPUS_DIR) / "http_request";
  REQUIRE(fs::is_directory(dir));
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.is_regular_file()) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  CHECK(files.size() >= 20);
  for (const fs::path& file : files) {
    std::ifstream in(file, std::ios::binary);
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    INFO(file.filename().string());
    // The harness aborts on a stalled connection; sanitizers abort on the rest.
    CHECK(LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(data.data()), data.size()) == 0);
  }
}
