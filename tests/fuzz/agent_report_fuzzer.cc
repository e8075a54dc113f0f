// Fuzzes the server's parsers of what agents send: the body of a report
// (POST /v1/agent/nodes/{id}/report: api::ParseReportedTasks, with each task's
// containers through model::ParseContainers, and api::ParseTargetHealth), what a report becomes (the
// ReportTasks command in the log, and the containers text of a task row), and the
// log frames of POST /v1/agent/logs/{request} (api::TakeLogFrames, "<hex
// length>\n<bytes>"), fed as a socket would, in pieces cut where a hash of the
// input says. The same bytes go to both.
//
// Invariants checked besides the sanitizers: a checked report (its target
// health too) survives the command log (Encode, DecodeCommand) and a task row (ContainersText, then
// ParseContainers) unchanged; frames are no longer than kMaxLogFrame and never
// empty; the frames taken, and whether they fail, do not depend on where the
// body was cut; and after a successful take, no whole frame is left behind.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "api/agents.h"
#include "base/json.h"
#include "fuzz_common.h"
#include "model/commands.h"
#include "model/task.h"

namespace {

using namespace berth;

// Feeds `pieces` one by one as on_body does; returns the frames' bytes
// concatenated and whether every take succeeded.
bool TakeAll(const std::deque<std::string_view>& pieces, std::string* frames) {
  std::string buf;
  for (std::string_view piece : pieces) {
    buf.append(piece);
    Status s = api::TakeLogFrames(&buf, [frames](std::string_view bytes) {
      if (bytes.empty()) fuzz::Fail("an empty frame handed over");
      if (bytes.size() > api::kMaxLogFrame) fuzz::Fail("a frame over kMaxLogFrame");
      frames->append(bytes);
    });
    if (!s) return false;
    std::string before = buf;
    if (!api::TakeLogFrames(&buf, [](std::string_view) { fuzz::Fail("a whole frame left behind"); }) || buf != before) {
      fuzz::Fail("taking again changed what was left", before);
    }
  }
  return true;
}

void CheckReport(std::string_view text) {
  Result<json::Doc> body = json::Doc::Parse(text);
  if (!body) return;
  json::View tasks = body->view().Get("tasks");
  if (tasks.valid() && !tasks.IsArray()) return;
  Result<std::vector<api::ReportedTask>> reported = api::ParseReportedTasks(tasks);
  if (!reported) {
    if (reported.error().message.empty()) fuzz::Fail("a refusal without a message");
    return;
  }
  model::ReportTasks cmd;
  cmd.node = "n";
  Result<std::vector<model::ReportTasks::Health>> health = api::ParseTargetHealth(body->view().Get("targetHealth"));
  if (!health) {
    if (health.error().message.rfind("targetHealth", 0) != 0) fuzz::Fail("a refusal without its path");
  } else {
    for (const model::ReportTasks::Health& h : *health) {
      if ((h.state != "healthy" && h.state != "unhealthy") || h.description.size() > 256 || h.reason.size() > 64)
        fuzz::Fail("a target health entry let through", h.state);
    }
    cmd.health = std::move(health.value());
  }
  for (const api::ReportedTask& r : reported.value()) {
    if (r.last != "PENDING" && r.last != "RUNNING" && r.last != "STOPPED") fuzz::Fail("a status let through", r.last);
    // The containers text goes into the command log as it is: it must read back.
    Result<json::Doc> text_doc = json::Doc::Parse(r.containers_text);
    if (!text_doc) fuzz::Fail("containers text that is not JSON", r.containers_text);
    std::vector<model::ContainerState> again;
    if (!model::ParseContainers(text_doc->view(), &again) || again != r.containers) {
      fuzz::Fail("containers text that reads back otherwise", r.containers_text);
    }
    // A task row keeps ContainersText of what was parsed.
    model::Task t;
    t.containers = r.containers;
    std::string row = model::ContainersText(t);
    Result<json::Doc> row_doc = json::Doc::Parse(row);
    if (!row_doc || !model::ParseContainers(row_doc->view(), &again) || again != r.containers) {
      fuzz::Fail("a task row's containers that read back otherwise", row);
    }
    cmd.reports.push_back({r.task_id, r.last, r.reason, r.containers_text});
  }
  std::string payload = cmd.Encode();
  Result<store::CommandPtr> decoded = model::DecodeCommand(cmd.Type(), payload, 0);
  if (!decoded) fuzz::Fail("a report command that does not decode", payload);
  const auto* back = dynamic_cast<const model::ReportTasks*>(decoded->get());
  if (!back || back->node != cmd.node || back->reports.size() != cmd.reports.size()) {
    fuzz::Fail("a report command that decodes otherwise", payload);
  }
  if (back->health.size() != cmd.health.size()) fuzz::Fail("target health that decodes otherwise", payload);
  for (size_t i = 0; i < cmd.health.size(); i++) {
    const model::ReportTasks::Health &a = cmd.health[i], &b = back->health[i];
    if (a.task_id != b.task_id || a.target_group != b.target_group || a.state != b.state || a.reason != b.reason ||
        a.description != b.description) {
      fuzz::Fail("a target health entry that decodes otherwise", payload);
    }
  }
  for (size_t i = 0; i < cmd.reports.size(); i++) {
    const model::ReportTasks::Report& a = cmd.reports[i];
    const model::ReportTasks::Report& b = back->reports[i];
    if (a.task_id != b.task_id || a.last != b.last || a.reason != b.reason) {
      fuzz::Fail("a report that decodes otherwise", payload);
    }
    Result<json::Doc> ca = json::Doc::Parse(a.containers), cb = json::Doc::Parse(b.containers);
    if (!ca || !cb || ca->Print() != cb->Print()) fuzz::Fail("containers that decode otherwise", payload);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) { return fuzz::QuietLogs(); }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  CheckReport(text);

  std::string cut_frames, whole_frames;
  bool cut_ok = TakeAll(fuzz::CutPieces(data, size, fuzz::Fnv1a(data, size)), &cut_frames);
  bool whole_ok = TakeAll({text}, &whole_frames);
  if (cut_ok != whole_ok) fuzz::Fail("frames that fail or not by where the body was cut", text);
  if (cut_ok && cut_frames != whole_frames) fuzz::Fail("frames that differ by where the body was cut", text);
  return 0;
}
