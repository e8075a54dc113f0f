// Files of the source tree built into the binary (cmake/embed_files.cmake makes
// their table at build time from the files themselves): the installer, the
// uninstaller and the systemd units the server hands to a box joining it.
#pragma once

#include <optional>
#include <string_view>

namespace berth::embedded {

// The bytes of the embedded file `name` ("install.sh", "berth-uninstall.sh",
// "berth-agent.service", "berth-server.service"), or nothing. They live as long
// as the program.
std::optional<std::string_view> Find(std::string_view name);

}  // namespace berth::embedded
