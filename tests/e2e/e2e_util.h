// What the end-to-end tests share: where the source, build and shared data are, and running
// a program (no shell) with its output in a log file.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <vector>

namespace e2e {

namespace fs = std::filesystem;

std::string env_or(const char* name, const std::string& fallback);
fs::path source_root();  // $TALKRENDER_SOURCE, else the working directory
fs::path build_dir();    // $TALKRENDER_BUILD, else <source>/build
fs::path shared_data();  // $TALKRENDER_SHARED, else <source>/../shared/data
std::string slurp(const fs::path& p);

struct Proc {
  pid_t pid = -1;
  fs::path log;
};
// Starts a program with stdout+stderr redirected to `log` (pid -1 if it could not start).
Proc spawn(const std::vector<std::string>& args, const fs::path& log);
// Its exit code, 128 + the signal if it was killed, -1 if it never started.
int wait_exit(const Proc& p);
// Runs to completion; returns the exit code and puts the output in *out.
int run(const std::vector<std::string>& args, const fs::path& log, std::string* out = nullptr);

}  // namespace e2e
