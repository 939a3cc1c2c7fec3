#include "common/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace tr {

Result<std::string> read_file(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    auto kind = errno == ENOENT ? "file not found" : std::strerror(errno);
    return BadInput(path + ": cannot open: " + kind);
  }
  std::string out;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  bool err = std::ferror(f);
  std::fclose(f);
  if (err) return RuntimeError(path + ": read error");
  return out;
}

std::string temp_path_for(const std::string& path) {
  return path + ".tmp-" + std::to_string(::getpid());
}

Status write_file_atomic(const std::string& path, const std::string& bytes) {
  std::string tmp = temp_path_for(path);
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) return RuntimeError(path + ": cannot write: " + std::strerror(errno));
  size_t n = std::fwrite(bytes.data(), 1, bytes.size(), f);
  int close_rc = std::fclose(f);
  if (n != bytes.size() || close_rc != 0) {
    int e = errno;
    std::remove(tmp.c_str());
    return RuntimeError(path + ": write failed: " + std::strerror(e));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    std::remove(tmp.c_str());
    return RuntimeError(path + ": cannot rename temporary file into place: " + std::strerror(e));
  }
  return Status::Ok();
}

bool path_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

bool is_directory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string parent_dir_of(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  const size_t slash = p.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : p.substr(0, slash);
}

Status check_can_create_in(const std::string& dir, const std::string& for_path) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) {
    return RuntimeError(for_path + ": cannot write in " + dir + ": " + std::strerror(errno));
  }
  if (!S_ISDIR(st.st_mode)) {
    return RuntimeError(for_path + ": cannot write in " + dir + ": " + std::strerror(ENOTDIR));
  }
  const std::string probe = temp_path_for(dir + "/.talkrender-probe");
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    return RuntimeError(for_path + ": cannot create files in " + dir + ": " + std::strerror(errno));
  }
  ::close(fd);
  ::unlink(probe.c_str());
  return Status::Ok();
}

}  // namespace tr
