#include "io_test_util.h"

#include <stdlib.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace tr::io::test {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/tr_io_test_XXXXXX";
  char* p = mkdtemp(tmpl.data());
  path_ = p ? p : "";
}

TempDir::~TempDir() {
  std::error_code ec;
  if (!path_.empty()) std::filesystem::remove_all(path_, ec);
}

int run_command(const std::string& cmd, std::string* out) {
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0)
    if (out) out->append(buf, n);
  int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool make_test_video(const std::string& path, int frames, int width, int height,
                     const std::string& extra) {
  std::string cmd =
      "ffmpeg -nostdin -v error -y -f lavfi -i testsrc2=size=" + std::to_string(width) + "x" +
      std::to_string(height) + ":rate=25 -frames:v " + std::to_string(frames) +
      " -c:v libx264 -preset ultrafast -pix_fmt yuv420p " + extra + " '" + path + "'";
  return run_command(cmd) == 0;
}

std::vector<cv::Mat> ffmpeg_cli_bgr_frames(const std::string& path, int width, int height,
                                           int max_frames) {
  std::vector<cv::Mat> frames;
  std::string cmd = "ffmpeg -nostdin -v error -i '" + path + "' -f rawvideo -pix_fmt bgr24 ";
  if (max_frames < (1 << 30)) cmd += "-frames:v " + std::to_string(max_frames) + " ";
  cmd += "-";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return frames;
  const size_t frame_bytes = size_t(width) * height * 3;
  for (int i = 0; i < max_frames; ++i) {
    cv::Mat m(height, width, CV_8UC3);
    if (fread(m.data, 1, frame_bytes, p) != frame_bytes) break;
    frames.push_back(m);
  }
  // Drain so ffmpeg exits cleanly when we stopped early.
  char buf[1 << 16];
  while (fread(buf, 1, sizeof buf, p) > 0) {
  }
  pclose(p);
  return frames;
}

std::string shared_data_dir() {
  namespace fs = std::filesystem;
  if (const char* s = std::getenv("TALKRENDER_SHARED"); s && *s && fs::is_directory(s)) return s;
  const char* src = std::getenv("TALKRENDER_SOURCE");
  fs::path root = src && *src ? fs::path(src) : fs::current_path();
  fs::path d = root / ".." / "shared" / "data";
  std::error_code ec;
  if (fs::is_directory(d / "sanders", ec)) return d.string();
  return "";
}

void write_text(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

}  // namespace tr::io::test
