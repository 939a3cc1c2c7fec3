#include "farm/job.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <vector>

#include "render/render_flags.h"

namespace tr::farm {
namespace {

using nlohmann::json;

// Deeper than this is not a job; checked before parsing so hostile nesting costs nothing.
constexpr int kMaxDepth = 8;

bool nesting_ok(std::string_view s) {
  int depth = 0;
  bool in_str = false, esc = false;
  for (char c : s) {
    if (in_str) {
      if (esc)
        esc = false;
      else if (c == '\\')
        esc = true;
      else if (c == '"')
        in_str = false;
      continue;
    }
    if (c == '"')
      in_str = true;
    else if (c == '[' || c == '{') {
      if (++depth > kMaxDepth) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

std::string sys_error(const std::string& what, const std::string& path) {
  return fmt::format("{} {}: {}", what, path, std::strerror(errno));
}

Result<std::string> real_path(const std::string& p) {
  char buf[PATH_MAX];
  if (!::realpath(p.c_str(), buf)) return RuntimeError(sys_error("cannot resolve", p));
  return std::string(buf);
}

bool inside(const std::string& real_root, const std::string& real) {
  return real.size() > real_root.size() && real.compare(0, real_root.size(), real_root) == 0 &&
         (real_root == "/" || real[real_root.size()] == '/');
}

// Splits a relative path into checked components. `trailing_slash` receives whether it
// ended in '/'.
Result<std::vector<std::string>> split_relative(const std::string& field, const std::string& rel,
                                                bool allow_percent, bool* trailing_slash) {
  if (rel.empty()) return BadInput(field + ": empty path");
  if (rel.size() > 1024) return BadInput(field + ": path longer than 1024 bytes");
  if (rel[0] == '/') return BadInput(field + ": '" + rel + "' is absolute; give a relative path");
  std::vector<std::string> parts;
  size_t start = 0;
  while (start < rel.size()) {
    size_t slash = rel.find('/', start);
    if (slash == std::string::npos) slash = rel.size();
    std::string c = rel.substr(start, slash - start);
    if (c == "..") return BadInput(field + ": '" + rel + "' leaves its root ('..')");
    if (!c.empty() && c != ".") {
      if (!is_safe_component(c, allow_percent)) {
        return BadInput(field + ": '" + rel + "': path components may hold only A-Z a-z 0-9 . _ -" +
                        (allow_percent ? " %" : ""));
      }
      parts.push_back(c);
    }
    start = slash + 1;
  }
  if (parts.empty()) return BadInput(field + ": '" + rel + "' names no file");
  if (trailing_slash) *trailing_slash = rel.back() == '/';
  return parts;
}

}  // namespace

bool is_safe_component(std::string_view name, bool allow_percent) {
  if (name.empty() || name.size() > 255 || name == "." || name == "..") return false;
  for (char c : name) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-' || (allow_percent && c == '%');
    if (!ok) return false;
  }
  return true;
}

std::string FarmJob::canonical_json() const {
  json j = json::object();
  j["id"] = id;
  j["avatar"] = avatar;
  j["out"] = out;
  if (!audio.empty()) j["audio"] = audio;
  if (frames) j["frames"] = *frames;
  if (batch) j["batch"] = *batch;
  if (crf) j["crf"] = *crf;
  if (!format.empty()) j["format"] = format;
  if (!precision.empty()) j["precision"] = precision;
  return j.dump();  // nlohmann's object keeps keys sorted
}

Result<FarmJob> parse_job(std::string_view text, bool inline_audio) {
  if (text.size() > kMaxJobJsonBytes) {
    return BadInput(fmt::format("job JSON is {} bytes, more than the {} allowed", text.size(),
                                kMaxJobJsonBytes));
  }
  if (!nesting_ok(text)) return BadInput("job JSON nests deeper than a job does");
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return BadInput("job is not valid JSON");
  if (!j.is_object()) return BadInput("job JSON must be an object");
  FarmJob job;
  auto get_string = [&](const char* key, bool required, std::string* out) -> Status {
    auto it = j.find(key);
    if (it == j.end()) {
      return required ? Status(BadInput(std::string("job has no \"") + key + "\"")) : Status::Ok();
    }
    if (!it->is_string())
      return BadInput(std::string("job field \"") + key + "\" must be a string");
    *out = it->get<std::string>();
    if (out->empty() || out->size() > 1024)
      return BadInput(std::string("job field \"") + key + "\" must be 1-1024 bytes");
    return Status::Ok();
  };
  auto get_int = [&](const char* key, std::optional<int64_t>* out) -> Status {
    auto it = j.find(key);
    if (it == j.end()) return Status::Ok();
    if (!it->is_number_integer())
      return BadInput(std::string("job field \"") + key + "\" must be an integer");
    *out = it->get<int64_t>();
    return Status::Ok();
  };
  for (auto it = j.begin(); it != j.end(); ++it) {
    static const char* kKnown[] = {"id",    "avatar", "audio",  "out",      "frames",
                                   "batch", "crf",    "format", "precision"};
    bool known = false;
    for (const char* k : kKnown) known = known || it.key() == k;
    if (!known) {
      std::string key = it.key().substr(0, 64);
      return BadInput("job has an unknown field \"" + key + "\"");
    }
  }
  if (Status s = get_string("id", true, &job.id); !s.ok()) return s.error();
  if (job.id.size() > 128) return BadInput("job id longer than 128 bytes");
  for (char c : job.id) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == ':' ||
          c == '-'))
      return BadInput("job id may hold only A-Z a-z 0-9 . _ : -");
  }
  if (Status s = get_string("avatar", true, &job.avatar); !s.ok()) return s.error();
  if (!is_safe_component(job.avatar, false)) {
    return BadInput("job " + job.id + ": avatar '" + job.avatar +
                    "' must be a name (A-Z a-z 0-9 . _ -), not a path");
  }
  if (Status s = get_string("out", true, &job.out); !s.ok()) return s.error();
  if (auto p = split_relative("job " + job.id + ": out", job.out, true, nullptr); !p.ok())
    return p.error();
  if (Status s = get_string("audio", false, &job.audio); !s.ok()) return s.error();
  if (inline_audio && !job.audio.empty())
    return BadInput("job " + job.id + ": both \"audio\" and audio bytes in the entry");
  if (!inline_audio && job.audio.empty())
    return BadInput("job " + job.id + ": no audio (neither \"audio\" nor bytes in the entry)");
  if (!job.audio.empty()) {
    if (auto p = split_relative("job " + job.id + ": audio", job.audio, false, nullptr); !p.ok())
      return p.error();
  }
  for (auto [key, dst] : {std::pair{"frames", &job.frames}, std::pair{"batch", &job.batch},
                          std::pair{"crf", &job.crf}}) {
    if (Status s = get_int(key, dst); !s.ok()) return s.error();
  }
  if (Status s = get_string("format", false, &job.format); !s.ok()) return s.error();
  if (Status s = get_string("precision", false, &job.precision); !s.ok()) return s.error();
  // The option checks of `render`, now, so a bad value is refused before any delivery work.
  render::RenderJobOptions probe;
  if (Status s = apply_job_options(job, &probe); !s.ok()) return s.error();
  return job;
}

Status apply_job_options(const FarmJob& job, render::RenderJobOptions* o) {
  const std::string pre = "job " + job.id + ": ";
  if (job.frames) {
    if (Status s = render::set_frames_option(o, *job.frames, pre + "frames"); !s.ok()) return s;
  }
  if (job.batch) {
    if (Status s = render::set_batch_option(o, *job.batch, pre + "batch"); !s.ok()) return s;
  }
  if (job.crf) {
    if (Status s = render::set_crf_option(o, *job.crf, pre + "crf"); !s.ok()) return s;
  }
  if (!job.format.empty()) {
    if (Status s = render::set_format_option(o, job.format, pre + "format"); !s.ok()) return s;
  }
  if (!job.precision.empty()) {
    if (Status s = render::set_precision_option(o, job.precision, pre + "precision"); !s.ok())
      return s;
  }
  return Status::Ok();
}

Result<std::string> resolve_avatar(const std::string& root, const std::string& name) {
  if (!is_safe_component(name, false))
    return BadInput("avatar '" + name + "' must be a name (A-Z a-z 0-9 . _ -), not a path");
  auto real_root = real_path(root);
  if (!real_root.ok()) return real_root.error();
  const std::string p = *real_root + "/" + name;
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return BadInput("avatar '" + name + "' is not under --avatars");
  auto real = real_path(p);
  if (!real.ok()) return real.error();
  if (!inside(*real_root, *real))
    return BadInput("avatar '" + name + "' resolves outside --avatars (a symlink out)");
  if (!S_ISDIR(st.st_mode)) return BadInput("avatar '" + name + "' is not a package folder");
  return *real;
}

Result<std::string> resolve_input(const std::string& root, const std::string& rel) {
  auto parts = split_relative("audio", rel, false, nullptr);
  if (!parts.ok()) return parts.error();
  auto real_root = real_path(root);
  if (!real_root.ok()) return real_root.error();
  std::string p = *real_root;
  for (const auto& c : *parts) p += "/" + c;
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return BadInput("audio '" + rel + "' is not under --in-root");
  auto real = real_path(p);
  if (!real.ok()) return real.error();
  if (!inside(*real_root, *real))
    return BadInput("audio '" + rel + "' resolves outside --in-root (a symlink out)");
  if (!S_ISREG(st.st_mode)) return BadInput("audio '" + rel + "' is not a file");
  return *real;
}

Result<std::string> prepare_output(const std::string& root, const std::string& rel) {
  bool trailing = false;
  auto parts = split_relative("out", rel, true, &trailing);
  if (!parts.ok()) return parts.error();
  auto real_root = real_path(root);
  if (!real_root.ok()) return real_root.error();
  // Folders on the way: each made (if missing) and resolved, so that a symlink anywhere on
  // the path that points out of the root is caught before anything is written through it.
  const size_t folders = trailing ? parts->size() : parts->size() - 1;
  std::string dir = *real_root;
  for (size_t i = 0; i < folders; ++i) {
    std::string next = dir + "/" + (*parts)[i];
    if (::mkdir(next.c_str(), 0777) != 0 && errno != EEXIST)
      return RuntimeError(sys_error("cannot create folder", next));
    auto real = real_path(next);
    if (!real.ok()) return real.error();
    if (!inside(*real_root, *real))
      return BadInput("out '" + rel + "' leaves --out-root (through a symlink at '" + (*parts)[i] +
                      "')");
    struct stat st {};
    if (::stat(real->c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      return BadInput("out '" + rel + "': '" + (*parts)[i] + "' is not a folder");
    dir = *real;
  }
  if (trailing) return dir + "/";
  const std::string final_path = dir + "/" + parts->back();
  struct stat st {};
  if (::lstat(final_path.c_str(), &st) == 0 && S_ISLNK(st.st_mode))
    return BadInput("out '" + rel + "' is a symlink; the farm writes only plain files");
  return final_path;
}

std::string fnv1a64_hex(std::string_view bytes, uint64_t seed) {
  uint64_t h = seed;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return fmt::format("{:016x}", h);
}

Result<std::string> fnv1a64_file_hex(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return RuntimeError(sys_error("cannot open", path));
  uint64_t h = 1469598103934665603ULL;
  std::vector<char> buf(1 << 16);
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      return RuntimeError(sys_error("cannot read", path));
    }
    if (n == 0) break;
    for (ssize_t i = 0; i < n; ++i) {
      h ^= static_cast<unsigned char>(buf[i]);
      h *= 1099511628211ULL;
    }
  }
  ::close(fd);
  return fmt::format("{:016x}", h);
}

}  // namespace tr::farm
