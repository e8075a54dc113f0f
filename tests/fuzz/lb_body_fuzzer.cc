// Fuzzes the load-balancing control plane's body readers (model/lb.h), which
// take any deploy token's JSON: a new target group (POST /v1/targetgroups), a
// change to one (PATCH /v1/targetgroups/{name}, merged with the group as it is),
// a listener and a rule. The first byte picks the reader, the rest is the body.
//
// Invariants checked besides the sanitizers: a refusal says something; an accepted group's stored document reads back
// to the same document; an empty change leaves any group as it was; a change
// never moves a group's name, protocol, port, ARN or creation time, and the
// changed group is one a new group's body could have made (its document reads
// back the same, an empty change keeps it).
#include <cstdint>
#include <string>
#include <string_view>

#include "base/json.h"
#include "fuzz_common.h"
#include "model/lb.h"

using namespace berth;

namespace {

void CheckRefusal(const Error& e) {
  if (e.message.empty()) fuzz::Fail("a refusal that says nothing");
}

// The stored document reads back to itself, and an empty change keeps the group.
void CheckGroup(const model::TargetGroup& tg) {
  std::string doc = model::TargetGroupDoc(tg);
  Result<model::TargetGroup> back = model::ParseTargetGroupDoc(doc);
  if (!back) fuzz::Fail("a group's document that does not read back", back.error().message);
  if (model::TargetGroupDoc(*back) != doc) fuzz::Fail("a group's document that reads back otherwise", doc);
  (void)model::TargetGroupJson(tg).Print();
  json::Doc empty = json::Doc::Object();
  Result<model::TargetGroup> same = model::ModifyTargetGroupBody(tg, empty.view());
  if (!same) fuzz::Fail("an empty change refused", same.error().message + " for " + doc);
  if (model::TargetGroupDoc(*same) != doc) fuzz::Fail("an empty change that changed the group", doc);
}

model::TargetGroup Current(const char* protocol) {
  json::Doc body = json::Doc::Object();
  body.Set("name", "web").Set("protocol", protocol).Set("port", 8080);
  if (std::string_view(protocol) == "HTTP") body.Set("healthCheckPath", "/health");
  body.Set("attributes", json::Doc::Object().Set("slow_start.duration_seconds", "60"));
  Result<model::TargetGroup> tg = model::ParseTargetGroupBody(body.view(), "default");
  if (!tg) fuzz::Fail("the harness's own group refused", tg.error().message);
  tg->created_ms = 1700000000000;
  return std::move(tg.value());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) { return fuzz::QuietLogs(); }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  uint8_t reader = data[0] % 6;
  Result<json::Doc> body = json::Doc::Parse(std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1));
  if (!body) return 0;
  switch (reader) {
    case 0: {
      Result<model::TargetGroup> tg = model::ParseTargetGroupBody(body->view(), "default");
      if (!tg) return CheckRefusal(tg.error()), 0;
      CheckGroup(*tg);
      break;
    }
    case 1:
    case 2:
    case 3: {
      model::TargetGroup current = Current(reader == 1 ? "HTTP" : reader == 2 ? "TCP" : "UDP");
      Result<model::TargetGroup> changed = model::ModifyTargetGroupBody(current, body->view());
      if (!changed) return CheckRefusal(changed.error()), 0;
      if (changed->name != current.name || changed->protocol != current.protocol || changed->port != current.port ||
          changed->arn != current.arn || changed->created_ms != current.created_ms) {
        fuzz::Fail("a change that moved what cannot change", model::TargetGroupDoc(*changed));
      }
      CheckGroup(*changed);
      break;
    }
    case 4: {
      Result<model::Listener> l = model::ParseListenerBody(body->view());
      if (!l) return CheckRefusal(l.error()), 0;
      (void)model::ListenerDocJson(*l).Print();
      break;
    }
    case 5: {
      Result<model::ListenerRule> r = model::ParseRuleBody(body->view());
      if (!r) return CheckRefusal(r.error()), 0;
      (void)model::RuleDocJson(*r).Print();
      break;
    }
  }
  return 0;
}
