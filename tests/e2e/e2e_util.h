// What the end-to-end tests share: where the source, build and shared data are, and running
// a program (no shell) with its output in a log file.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <functional>
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

// Why a test suite must skip, or "" when it can run: each of `shared_files` (under
// shared_data()) exists, the talkrender binary is built and Debian's /usr/bin/python3
// (with torch) is there. The checks every end-to-end suite starts with.
std::string missing_prerequisite(const std::vector<fs::path>& shared_files);

// A folder of generated test inputs cached per build: build_dir()/<prefix><hash of key>,
// where `key` holds what the inputs depend on (the tools' source), so a changed tool makes
// a new folder.
fs::path cache_dir(const std::string& prefix, const std::string& key);

// One command of a cache fill, its output in `log`.
struct Step {
  std::vector<std::string> args;
  fs::path log;
};
// Fills `dir` unless it already holds every one of `files`: the steps (made for the
// temporary folder they write into) run in order into <dir>.tmp-<pid>, renamed to `dir`
// only when all succeed, so parallel test processes never see a half-made folder. Returns
// false, with the failing step's output in *err, when a step fails.
bool fill_cache(const fs::path& dir, const std::vector<std::string>& files,
                const std::function<std::vector<Step>(const fs::path& tmp)>& make_steps,
                std::string* err);

// A fresh, empty folder for the running test: <temp>/<prefix><pid>_<test name>.
fs::path fresh_test_dir(const std::string& prefix);

}  // namespace e2e
