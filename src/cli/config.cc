#include "cli/config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "base/crypto.h"
#include "base/json.h"

namespace berth::cli {

namespace {

std::string ConfigDir() {
  if (const char* x = getenv("XDG_CONFIG_HOME"); x && *x) return std::string(x) + "/berth";
  const char* home = getenv("HOME");
  return std::string(home && *home ? home : "/root") + "/.config/berth";
}

Status MakeDirs(const std::string& path) {
  for (size_t i = 1; i <= path.size(); i++) {
    if (i == path.size() || path[i] == '/') {
      std::string part = path.substr(0, i);
      if (mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) {
        return Error::Internal("cannot create " + part + ": " + strerror(errno));
      }
    }
  }
  return {};
}

}  // namespace

std::string ConfigPath() { return ConfigDir() + "/config.json"; }

Result<Config> LoadConfig() {
  Config c;
  std::ifstream f(ConfigPath());
  if (f) {
    std::stringstream ss;
    ss << f.rdbuf();
    Result<json::Doc> doc = json::Doc::Parse(ss.str());
    if (!doc) return Error::Invalid(ConfigPath() + ": " + doc.error().message);
    Result<std::string> server = json::OptionalString(doc->view(), "server", ConfigPath() + ": server", c.server);
    if (!server) return server.take_error();
    Result<std::string> token = json::OptionalString(doc->view(), "token", ConfigPath() + ": token");
    if (!token) return token.take_error();
    Result<std::string> pin = json::OptionalString(doc->view(), "caSha256", ConfigPath() + ": caSha256");
    if (!pin) return pin.take_error();
    Result<std::string> ca_file = json::OptionalString(doc->view(), "caFile", ConfigPath() + ": caFile");
    if (!ca_file) return ca_file.take_error();
    c.server = server.value();
    c.token = token.value();
    c.ca_pin = pin.value();
    c.ca_file = ca_file.value();
  }
  if (const char* s = getenv("BERTH_SERVER"); s && *s) c.server = s;
  if (const char* t = getenv("BERTH_TOKEN"); t && *t) c.token = t;
  if (const char* f = getenv("BERTH_CA_FILE"); f && *f) c.ca_file = f;
  return c;
}

std::string Config::Pin() const {
  std::string pin = crypto::SplitToken(token).pin;
  return pin.empty() ? ca_pin : pin;
}

Status SaveConfig(const Config& c) {
  if (Status s = MakeDirs(ConfigDir()); !s) return s;
  json::Doc doc = json::Doc::Object();
  doc.Set("server", c.server).Set("token", c.token);
  if (!c.ca_pin.empty()) doc.Set("caSha256", c.ca_pin);
  if (!c.ca_file.empty()) doc.Set("caFile", c.ca_file);
  std::string text = doc.Print() + "\n";
  std::string path = ConfigPath(), tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Error::Internal("cannot write " + tmp + ": " + strerror(errno));
  bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && fsync(fd) == 0;
  fchmod(fd, 0600);
  close(fd);
  if (!ok || rename(tmp.c_str(), path.c_str()) != 0)
    return Error::Internal("cannot write " + path + ": " + strerror(errno));
  return {};
}

}  // namespace berth::cli
