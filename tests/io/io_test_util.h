// Helpers for the io tests: temporary directories, running the ffmpeg CLI, sample data.
#pragma once

#include <opencv2/core.hpp>
#include <string>
#include <vector>

namespace tr::io::test {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Runs a shell command; returns its exit status and (optionally) its stdout.
int run_command(const std::string& cmd, std::string* out = nullptr);

// Makes an H.264 yuv420p clip of `frames` testsrc2 frames; `extra` goes before the output.
bool make_test_video(const std::string& path, int frames, int width, int height,
                     const std::string& extra = "");

// Reads every frame the ffmpeg CLI gives for `ffmpeg -i path -f rawvideo -pix_fmt bgr24 -`
// (at most max_frames) as BGR Mats of the given size.
std::vector<cv::Mat> ffmpeg_cli_bgr_frames(const std::string& path, int width, int height,
                                           int max_frames = 1 << 30);

// The shared sample data folder, or "" when absent.
std::string shared_data_dir();

void write_text(const std::string& path, const std::string& text);

}  // namespace tr::io::test
