#include "e2e_util.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

extern char** environ;

namespace e2e {

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

fs::path source_root() { return env_or("TALKRENDER_SOURCE", fs::current_path().string()); }
fs::path build_dir() { return env_or("TALKRENDER_BUILD", (source_root() / "build").string()); }
fs::path shared_data() {
  return env_or("TALKRENDER_SHARED", (source_root() / ".." / "shared" / "data").string());
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

Proc spawn(const std::vector<std::string>& args, const fs::path& log) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  Proc p;
  p.log = log;
  if (posix_spawnp(&p.pid, argv[0], &fa, nullptr, argv.data(), environ) != 0) p.pid = -1;
  posix_spawn_file_actions_destroy(&fa);
  return p;
}

int wait_exit(const Proc& p) {
  int status = 0;
  if (p.pid < 0 || waitpid(p.pid, &status, 0) != p.pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int run(const std::vector<std::string>& args, const fs::path& log, std::string* out) {
  const int rc = wait_exit(spawn(args, log));
  if (out) *out = slurp(log);
  return rc;
}

std::string missing_prerequisite(const std::vector<fs::path>& shared_files) {
  for (const auto& f : shared_files) {
    if (!fs::exists(shared_data() / f))
      return "shared sample data not found (set TALKRENDER_SHARED)";
  }
  if (!fs::exists(build_dir() / "talkrender"))
    return "talkrender binary not built in " + build_dir().string();
  if (!fs::exists("/usr/bin/python3")) return "/usr/bin/python3 (Debian's, with torch) not found";
  return "";
}

fs::path cache_dir(const std::string& prefix, const std::string& key) {
  return build_dir() / (prefix + std::to_string(std::hash<std::string>{}(key)));
}

bool fill_cache(const fs::path& dir, const std::vector<std::string>& files,
                const std::function<std::vector<Step>(const fs::path& tmp)>& make_steps,
                std::string* err) {
  bool complete = true;
  for (const auto& f : files) complete = complete && fs::exists(dir / f);
  if (complete) return true;
  const fs::path tmp = dir.string() + ".tmp-" + std::to_string(getpid());
  std::error_code ec;
  for (const Step& step : make_steps(tmp)) {
    if (run(step.args, step.log, err) != 0) {
      fs::remove_all(tmp, ec);
      return false;
    }
  }
  fs::rename(tmp, dir, ec);  // another test process may have won the race: fine
  fs::remove_all(tmp, ec);
  return true;
}

fs::path fresh_test_dir(const std::string& prefix) {
  const fs::path dir =
      fs::temp_directory_path() / (prefix + std::to_string(getpid()) + "_" +
                                   testing::UnitTest::GetInstance()->current_test_info()->name());
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

}  // namespace e2e
