// Video decoding to BGR frames (cv::Mat CV_8UC3).
//
// Pixels are bit-identical to `ffmpeg -i X.mp4 -f rawvideo -pix_fmt bgr24 -` (swscale with
// the ffmpeg CLI's default flags and the stream's colour matrix/range), so frames decoded
// here match what the Python reference tool chain sees through the CLI.
#pragma once

#include <cstdint>
#include <memory>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "common/status.h"

namespace tr::io {

struct VideoInfo {
  int width = 0, height = 0;
  int fps_num = 25, fps_den = 1;  // the stream's average/real frame rate
  double fps = 25.0;
  int64_t frame_count = -1;  // from the container (nb_frames); -1 if unknown
  double duration_s = 0.0;
  std::string codec;  // e.g. "h264"
  // The stream's first presentation time, seconds, after edit lists (0 for most files;
  // 0.12 for video muxed with `ffmpeg -itsoffset 0.12`); 0 when the container has none.
  double start_time_s = 0.0;
};

// Opens the file, finds its video stream and reads its header fields (does not decode).
Result<VideoInfo> probe_video(const std::string& path);

struct DecodeOptions {
  int threads = 0;  // decoder + colour-conversion threads; 0 = one per core
};

// Sequential decoder for streaming/chunked use: one frame at a time, bounded memory.
class VideoReader {
 public:
  static Result<std::unique_ptr<VideoReader>> open(const std::string& path,
                                                   const DecodeOptions& opts = {});
  ~VideoReader();
  VideoReader(const VideoReader&) = delete;
  VideoReader& operator=(const VideoReader&) = delete;

  const VideoInfo& info() const;
  // Decodes the next frame into `out` (reallocated to height x width CV_8UC3 BGR if needed).
  // Returns true with a frame, false at the end of the stream, or an error (corrupt data
  // names the file and frame index).
  Result<bool> next_frame(cv::Mat& out);
  int64_t frames_read() const;
  // Presentation time (seconds, the container's timeline) of the frame next_frame() last
  // returned: its best-effort timestamp, or start + index / fps when it has none.
  double frame_time_s() const;

  struct Impl;

 private:
  explicit VideoReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A rows x cols CV_8UC3 Mat with spare bytes after its last row, which the SIMD colour
// converters need (they may store a few bytes past the end). Decoded frames use this.
cv::Mat allocate_bgr_frame(int rows, int cols);

// Decodes every frame of the file into RAM (BGR), using frame-threaded decoding and
// parallel colour conversion. Fails if the video has no frames.
Result<std::vector<cv::Mat>> decode_all_frames(const std::string& path,
                                               const DecodeOptions& opts = {});

}  // namespace tr::io
