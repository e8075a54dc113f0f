// Fuzzes what the agent reads from the Docker engine, and the names it puts into
// the engine's paths: the answers to inspect, container and network lists (the
// input as JSON), /events lines, the multiplexed log stream and JSON-lines
// splitting (the input cut into pieces at points hashed from it), API version
// comparison, image references, and the path checks (CheckObjectName,
// CheckImageName, CheckTarget) on each line of the input.
//
// Invariants checked besides the sanitizers:
// - the log demuxer and the line splitter give the same frames and lines however
//   the bytes are cut, and never more payload than they were fed;
// - an inspected container's bindings are a JSON array, its exit code an int;
// - version comparison is antisymmetric;
// - a name CheckObjectName accepts, or an image CheckImageName accepts, makes a
//   target CheckTarget accepts; a target it accepts has no '..' segment, no
//   space, control or '#' byte.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "agent/container_engine.h"
#include "agent/docker.h"
#include "base/json.h"

namespace {

using namespace berth;
namespace docker = agent::docker;

[[noreturn]] void Fail(const char* what) {
  fprintf(stderr, "docker_answer_fuzzer: %s\n", what);
  abort();
}

uint64_t Fnv1a(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// The input cut at up to three points chosen by its hash.
std::vector<std::string_view> Pieces(std::string_view text) {
  uint64_t h = Fnv1a(text);
  std::vector<size_t> cuts = {0, text.size()};
  for (int i = 0; i < 3 && !text.empty(); i++) cuts.push_back((h >> (i * 17)) % (text.size() + 1));
  std::sort(cuts.begin(), cuts.end());
  std::vector<std::string_view> out;
  for (size_t i = 0; i + 1 < cuts.size(); i++) out.push_back(text.substr(cuts[i], cuts[i + 1] - cuts[i]));
  return out;
}

struct Frames {
  std::vector<std::pair<int, std::string>> frames;
  size_t bytes = 0;
};

Frames Demux(const std::vector<std::string_view>& pieces) {
  Frames out;
  docker::LogDemuxer demux([&](int stream, std::string_view payload) {
    out.frames.emplace_back(stream, std::string(payload));
    out.bytes += payload.size();
  });
  for (std::string_view p : pieces) demux.Feed(p);
  return out;
}

std::vector<std::string> Lines(const std::vector<std::string_view>& pieces, size_t max_line) {
  std::vector<std::string> out;
  docker::LineSplitter lines([&](std::string_view line) { out.emplace_back(line); }, max_line);
  for (std::string_view p : pieces) lines.Feed(p);
  return out;
}

bool TargetLooksSafe(std::string_view target) {
  for (unsigned char c : target) {
    if (c <= 0x20 || c >= 0x7f || c == '#') return false;
  }
  std::string_view path = target.substr(0, target.find('?'));
  return path.find("/../") == std::string_view::npos && !path.ends_with("/..") &&
         path.find("//") == std::string_view::npos;
}

void CheckNames(std::string_view line) {
  if (docker::CheckObjectName("container", line).ok()) {
    if (!docker::CheckTarget("/containers/" + std::string(line) + "/json").ok()) Fail("accepted name, refused target");
  }
  if (docker::CheckImageName(line).ok()) {
    if (!docker::CheckTarget("/images/" + std::string(line) + "/json").ok()) Fail("accepted image, refused target");
    docker::ImageRef ref = docker::ParseImageRef(line);
    (void)ref;
  }
  if (docker::CheckTarget(line).ok() && !TargetLooksSafe(line)) Fail("CheckTarget accepted an unsafe target");
  (void)docker::QueryEscape(line);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);

  // The input as an engine's JSON answer.
  if (Result<json::Doc> d = json::Doc::Parse(text)) {
    agent::ContainerStatus s = agent::ParseContainerInspect(d->view());
    Result<json::Doc> bindings = json::Doc::Parse(s.bindings);
    if (!bindings || !bindings->view().IsArray()) Fail("bindings are not a JSON array");
    if (s.exit_code < INT_MIN || s.exit_code > INT_MAX) Fail("exit code out of int's range");
    (void)agent::ParseContainerList(d->view());
    (void)agent::ParseNetworkList(d->view());
  }

  // The log stream and JSON lines, whole and in pieces.
  std::vector<std::string_view> whole = {text};
  std::vector<std::string_view> cut = Pieces(text);
  Frames a = Demux(whole), b = Demux(cut);
  if (a.frames != b.frames) Fail("log frames depend on how the bytes were cut");
  if (a.bytes > size) Fail("more payload than input");
  size_t max_line = 16 + Fnv1a(text) % 512;
  std::vector<std::string> la = Lines(whole, max_line), lb = Lines(cut, max_line);
  if (la != lb) Fail("lines depend on how the bytes were cut");
  for (const std::string& line : la) {
    if (line.size() > max_line) Fail("a line over the bound was delivered");
    (void)agent::ParseContainerEvent(line);
    CheckNames(line);
  }

  // Two versions from the first line's halves.
  std::string_view first = text.substr(0, text.find('\n'));
  std::string_view v1 = first.substr(0, first.size() / 2), v2 = first.substr(first.size() / 2);
  int ab = docker::CompareApiVersions(v1, v2), ba = docker::CompareApiVersions(v2, v1);
  if ((ab < 0) != (ba > 0) || (ab == 0) != (ba == 0)) Fail("version comparison is not antisymmetric");
  return 0;
}
