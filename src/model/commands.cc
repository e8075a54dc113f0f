#include "model/commands.h"

#include "base/json.h"

namespace berth::model {

std::string CreateCluster::Encode() const { return json::Doc::Object().Set("name", name).Print(); }

std::string DeleteCluster::Encode() const { return json::Doc::Object().Set("name", name).Print(); }

std::string RegisterTaskDefinition::Encode() const {
  return json::Doc::Object().Set("family", family).Set("doc", doc).Print();
}

std::string DeregisterTaskDefinition::Encode() const {
  return json::Doc::Object().Set("family", family).Set("revision", revision).Print();
}

std::string CreateToken::Encode() const {
  return json::Doc::Object().Set("id", id).Set("role", role).Set("hash", hash).Print();
}

bool IsValidRole(std::string_view role) {
  return role == "admin" || role == "deploy" || role == "read-only" || role == "agent";
}

Result<store::CommandPtr> DecodeCommand(std::string_view type, std::string_view payload, int64_t time_ms) {
  Result<json::Doc> doc = json::Doc::Parse(payload);
  if (!doc) return doc.take_error();
  json::View v = doc->view();
  if (!v.IsObject()) return Error::Invalid(std::string(type) + ": payload must be an object");
  store::CommandPtr out;
  if (type == "CreateCluster" || type == "DeleteCluster") {
    Result<std::string> name = json::RequireString(v, "name", "name");
    if (!name) return name.take_error();
    if (type == "CreateCluster") {
      auto c = std::make_unique<CreateCluster>();
      c->name = std::move(name.value());
      out = std::move(c);
    } else {
      auto c = std::make_unique<DeleteCluster>();
      c->name = std::move(name.value());
      out = std::move(c);
    }
  } else if (type == "RegisterTaskDefinition") {
    auto c = std::make_unique<RegisterTaskDefinition>();
    Result<std::string> family = json::RequireString(v, "family", "family");
    if (!family) return family.take_error();
    Result<std::string> doc = json::RequireString(v, "doc", "doc");
    if (!doc) return doc.take_error();
    c->family = std::move(family.value());
    c->doc = std::move(doc.value());
    out = std::move(c);
  } else if (type == "DeregisterTaskDefinition") {
    auto c = std::make_unique<DeregisterTaskDefinition>();
    Result<std::string> family = json::RequireString(v, "family", "family");
    if (!family) return family.take_error();
    Result<int64_t> rev = json::OptionalInt(v, "revision", "revision", 0);
    if (!rev) return rev.take_error();
    c->family = std::move(family.value());
    c->revision = rev.value();
    out = std::move(c);
  } else if (type == "CreateToken") {
    auto c = std::make_unique<CreateToken>();
    for (auto [field, dest] : {std::pair{"id", &c->id}, std::pair{"role", &c->role}, std::pair{"hash", &c->hash}}) {
      Result<std::string> s = json::RequireString(v, field, field);
      if (!s) return s.take_error();
      *dest = std::move(s.value());
    }
    out = std::move(c);
  } else {
    return Error::Invalid("unknown command type " + std::string(type));
  }
  out->time_ms = time_ms;
  return out;
}

}  // namespace berth::model
