// Files of the source tree built into the binary (cmake/embed_files.cmake makes
// their table at build time from the files themselves): the installer, the
// uninstaller and the systemd units the server hands to a box joining it; and
// the dashboard, every file under web/ (cmake/embed_web.cmake).
#pragma once

#include <optional>
#include <string_view>

namespace berth::embedded {

// The bytes of the embedded file `name` ("install.sh", "berth-uninstall.sh",
// "berth-agent.service", "berth-server.service"), or nothing. They live as long
// as the program.
std::optional<std::string_view> Find(std::string_view name);

// A file of the dashboard as it is served.
struct WebFile {
  std::string_view path;  // under web/: "index.html", "js/app.js"
  std::string_view raw;   // index.html with __ASSETS__ replaced
  std::string_view gzip;  // raw, gzip-compressed at build time
  std::string_view hash;  // of raw: the first 16 hex digits of its SHA-256
};
// The file at `path` under web/ (README.md is not served), or nullptr. It lives
// as long as the program.
const WebFile* FindWebFile(std::string_view path);
// 16 hex digits of a SHA-256 over every file's path and hash: a new build of the
// dashboard has a new one, and its assets a new path (/ui/assets/<hash>/...).
std::string_view WebBuildHash();

}  // namespace berth::embedded
