// Fuzzes what the agent reads from the Docker engine, and the names it puts into
// the engine's paths. The input's first byte picks one reader for the rest (one
// reader per run keeps runs short): the answers to inspect, container and network
// lists (as JSON); the multiplexed log stream; JSON-lines splitting with /events
// lines and the path checks (CheckObjectName, CheckImageName, CheckTarget) and
// image references on each line; API version comparison. Streams are read whole
// and cut into pieces at points hashed from the input.
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
#include "fuzz_common.h"

namespace {

using namespace berth;
using fuzz::Fail;
namespace docker = agent::docker;

std::vector<std::string_view> Pieces(std::string_view text) {
  auto data = reinterpret_cast<const uint8_t*>(text.data());
  std::deque<std::string_view> cut = fuzz::CutPieces(data, text.size(), fuzz::Fnv1a(data, text.size()));
  return {cut.begin(), cut.end()};
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
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) { return fuzz::QuietLogs(); }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  uint8_t pick = data[0];
  std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);

  switch (pick % 4) {
    case 0:  // an engine's JSON answer
      if (Result<json::Doc> d = json::Doc::Parse(text)) {
        agent::ContainerStatus s = agent::ParseContainerInspect(d->view());
        Result<json::Doc> bindings = json::Doc::Parse(s.bindings);
        if (!bindings || !bindings->view().IsArray()) Fail("bindings are not a JSON array", s.bindings);
        if (s.exit_code < INT_MIN || s.exit_code > INT_MAX) Fail("exit code out of int's range");
        (void)agent::ParseContainerList(d->view());
        (void)agent::ParseNetworkList(d->view());
      }
      break;
    case 1: {  // the log stream, whole and in pieces
      Frames a = Demux({text}), b = Demux(Pieces(text));
      if (a.frames != b.frames) Fail("log frames depend on how the bytes were cut");
      if (a.bytes > text.size()) Fail("more payload than input");
      break;
    }
    case 2: {  // JSON lines (events), whole and in pieces; each line's names
      size_t max_line = 16 + (pick >> 2) * 8;
      std::vector<std::string> la = Lines({text}, max_line), lb = Lines(Pieces(text), max_line);
      if (la != lb) Fail("lines depend on how the bytes were cut");
      for (const std::string& line : la) {
        if (line.size() > max_line) Fail("a line over the bound was delivered", line);
        (void)agent::ParseContainerEvent(line);
        CheckNames(line);
      }
      break;
    }
    default: {  // two versions: the halves of the input
      std::string_view v1 = text.substr(0, text.size() / 2), v2 = text.substr(text.size() / 2);
      int ab = docker::CompareApiVersions(v1, v2), ba = docker::CompareApiVersions(v2, v1);
      if ((ab < 0) != (ba > 0) || (ab == 0) != (ba == 0)) Fail("version comparison is not antisymmetric");
      CheckNames(text);
      break;
    }
  }
  return 0;
}
