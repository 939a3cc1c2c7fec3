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

}  // namespace tr
