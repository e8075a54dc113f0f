#include "agent/proxy_sink.h"

#include <string>

#include "base/log.h"

namespace berth::agent {

Result<int64_t> ProxyDocVersion(const json::View& doc) {
  if (!doc.IsObject()) return Error::Invalid(std::string("proxy: must be an object, not ") + doc.TypeName());
  json::View v = doc.Get("version");
  if (!v.IsNumber() || v.Number() < 1 || v.Number() != static_cast<double>(static_cast<int64_t>(v.Number()))) {
    return Error::Invalid("proxy.version: must be a whole number of 1 or more");
  }
  for (const char* key : {"listeners", "targetGroups"}) {
    json::View list = doc.Get(key);
    if (list.valid() && !list.IsArray()) return Error::Invalid(std::string("proxy.") + key + ": must be an array");
  }
  return static_cast<int64_t>(v.Number());
}

Result<int64_t> LoggingProxySink::ApplyProxy(const json::View& doc) {
  Result<int64_t> version = ProxyDocVersion(doc);
  if (!version) return version;
  log::Info("agent", "proxy configuration received (no data plane in this build)",
            {{"version", std::to_string(*version)},
             {"listeners", std::to_string(doc.Get("listeners").Size())},
             {"targetGroups", std::to_string(doc.Get("targetGroups").Size())}});
  return version;
}

}  // namespace berth::agent
