// Small file helpers. Outputs are written to "<path>.tmp-<pid>" and renamed into place,
// so an interrupted or failed write never leaves a file that looks finished.
#pragma once

#include <string>

#include "common/status.h"

namespace tr {

Result<std::string> read_file(const std::string& path);
Status write_file_atomic(const std::string& path, const std::string& bytes);
// "<path>.tmp-<pid>": the temporary sibling used for atomic writes.
std::string temp_path_for(const std::string& path);
bool path_exists(const std::string& path);
bool is_directory(const std::string& path);

// The folder a file at `path` is created in: its parent, or "." for a bare name.
std::string parent_dir_of(const std::string& path);
// Checks, before any work, that files can be created in folder `dir`: it exists, is a
// folder, and a probe file ("<dir>/.talkrender-probe.tmp-<pid>") can be made and removed
// there (mode bits alone do not tell: root, read-only mounts, /sys). kRuntime errors name
// `for_path` and give the system's reason.
Status check_can_create_in(const std::string& dir, const std::string& for_path);

}  // namespace tr
