#include "model/secret.h"

#include "base/clock.h"
#include "base/crypto.h"
#include "model/cluster.h"

namespace berth::model {

Status ValidateSecretName(std::string_view name, std::string_view field) {
  const std::string rule = "must be 1-512 characters of letters, digits and / _ + = . @ -";
  if (name.empty() || name.size() > 512) {
    return Error::Invalid(std::string(field) + ": " + rule + "; got " + std::to_string(name.size()) + " characters");
  }
  for (size_t i = 0; i < name.size(); i++) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              std::string_view("/_+=.@-").find(c) != std::string_view::npos;
    if (!ok) return BadNameChar(field, rule, name, i);
  }
  return {};
}

std::string SecretArn(std::string_view name) {
  std::string arn = "arn:aws:secretsmanager:";
  arn.append(kRegion).append(":").append(kAccount).append(":secret:").append(name);
  return arn;
}

Result<std::string> SecretNameFromRef(std::string_view value_from, std::string_view field) {
  std::string_view name = value_from;
  if (value_from.starts_with("arn:")) {
    size_t at = value_from.find(":secret:");
    size_t param = value_from.find(":parameter/");
    if (at != std::string_view::npos) {
      name = value_from.substr(at + 8);
    } else if (param != std::string_view::npos) {
      name = value_from.substr(param + 11);
    } else {
      return Error::Invalid(
          std::string(field) +
          ": an ARN must name a secret (arn:...:secret:NAME) or a parameter (arn:...:parameter/NAME)");
    }
  }
  if (Status s = ValidateSecretName(name, field); !s) return s.take_error();
  return std::string(name);
}

json::Doc SecretJson(const Secret& s) {
  json::Doc d = json::Doc::Object();
  d.Set("name", s.name)
      .Set("arn", SecretArn(s.name))
      .Set("version", s.version)
      .Set("keyId", s.key_id)
      .Set("clusters",
           [&] {
             json::Doc list = json::Doc::Array();
             for (const std::string& c : s.clusters) list.Push(c);
             return list;
           }())
      .Set("createdAt", UtcIso8601(s.created_ms))
      .Set("updatedAt", UtcIso8601(s.updated_ms));
  return d;
}

std::vector<SecretRef> SecretRefs(json::View td) {
  std::vector<SecretRef> out;
  for (json::View c : td.Get("containerDefinitions")) {
    for (json::View s : c.Get("secrets")) {
      Result<std::string> name = SecretNameFromRef(s.Get("valueFrom").String(), "valueFrom");
      if (!name) continue;  // validated at registration
      out.push_back(SecretRef{std::string(c.Get("name").String()), std::string(s.Get("name").String()),
                              std::move(name.value()), s.Get("berthTarget").String() == "file"});
    }
  }
  return out;
}

Result<SecretBox> SecretBox::FromKeyText(std::string_view text, std::string_view where) {
  std::string_view t = text;
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.remove_suffix(1);
  std::string key;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  if (text.size() == crypto::kSecretKeyBytes) {
    key = std::string(text);
  } else if (t.size() == 2 * crypto::kSecretKeyBytes) {
    for (size_t i = 0; i < t.size(); i += 2) {
      int hi = hex(t[i]), lo = hex(t[i + 1]);
      if (hi < 0 || lo < 0) {
        return Error::Invalid(std::string(where) + ": not hex at position " + std::to_string(hi < 0 ? i : i + 1));
      }
      key.push_back(static_cast<char>(hi * 16 + lo));
    }
  } else {
    Result<std::string> decoded = crypto::Base64Decode(t);
    if (!decoded || decoded->size() != crypto::kSecretKeyBytes) {
      return Error::Invalid(std::string(where) + ": a secret key is 32 bytes, 64 hex digits or 44 base64 characters (" +
                            std::to_string(text.size()) + " bytes found); make one with `openssl rand -hex 32`");
    }
    key = std::move(decoded.value());
  }
  SecretBox box;
  box.id_ = crypto::Hex(crypto::Sha256(key)).substr(0, 16);
  box.key_ = std::move(key);
  return box;
}

Result<Secret> SecretBox::Seal(std::string_view name, std::string_view value) const {
  Result<std::string> sealed = crypto::Seal(key_, std::string("berth-secret:") + std::string(name), value);
  if (!sealed) return sealed.take_error();
  Secret s;
  s.name = std::string(name);
  s.sealed = std::move(sealed.value());
  s.key_id = id_;
  return s;
}

Result<std::string> SecretBox::Open(const Secret& s) const {
  if (s.key_id != id_) {
    return Error::Internal("secret " + s.name + " was sealed with key " + s.key_id + ", and this server holds key " +
                           id_ + " (start the server with the key file it was made with, or rotate the secret)");
  }
  Result<std::string> value = crypto::Open(key_, "berth-secret:" + s.name, s.sealed);
  if (!value) return Error::Internal("secret " + s.name + " does not open with key " + id_ + ": it was altered");
  return value;
}

}  // namespace berth::model
