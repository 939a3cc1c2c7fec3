// The avatar's decoded frames, kept compactly and converted to BGR on demand.
//
// A frame is stored as the decoder produced it (planar YUV 4:2:0 for H.264: 1.5 bytes per
// pixel, half of BGR) and converted to BGR by whoever needs it, with the same swscale setup
// as decode_all_frames, so the pixels are bit-identical to the ffmpeg CLI's bgr24 output.
// Converting a 720p frame costs about a millisecond, much less than the memory it saves
// (the 523-frame sample package: 1.45 GB as BGR, 0.72 GB as YUV).
//
// Two modes:
//   full cache (cache_bytes == 0): every frame is decoded at open() on several decoder
//     threads and stays in RAM;
//   streaming (cache_bytes > 0): the compressed packets are kept in RAM (a few MB) and a
//     decoder thread keeps the frames the next requests need resident, following the order
//     given to set_order() (ping-pong walks backwards too: it restarts at the keyframe
//     before the frames it needs). At most cache_bytes of frames stay in the cache; frames
//     a caller still holds through a FrameHandle stay alive until released.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "common/status.h"
#include "io/video_reader.h"

namespace tr::io {

// One decoded frame in the decoder's own format. Opaque: FrameStore::to_bgr reads it.
struct StoredFrame;
using FrameHandle = std::shared_ptr<const StoredFrame>;

struct FrameStoreOptions {
  int threads = 0;          // decoder threads; 0 = one per core
  int64_t cache_bytes = 0;  // 0: keep every frame; > 0: streaming cache of this many bytes
  // Streaming cache only: nice increment for the threads that decode ahead (ours and
  // FFmpeg's), which run beside the render; see tr::lower_this_thread_priority.
  int stream_decode_nice = 0;
};

class FrameStore {
 public:
  // Opens (and in full-cache mode decodes) the video. Errors name the file: missing,
  // undecodable, truncated, or a cache too small to hold the frames a request window needs.
  static Result<std::unique_ptr<FrameStore>> open(const std::string& path,
                                                  const FrameStoreOptions& opts = {});
  // The same store over numbered JPEG files (a dataset folder's full_body_img/{i}.jpg):
  // frame k is jpeg_paths[k]. Frames are kept as the JPEG's own 4:2:0 planes (jpeg_file.h)
  // and converted to BGR exactly as libjpeg-turbo (cv::imread) decodes them. Full cache:
  // every file is decoded at open() on opts.threads threads; streaming: the headers are
  // read at open() and frames decoded on demand like a video's (each file its own
  // keyframe). `name` (the folder) is path() in messages. Every frame must be the size of
  // the first, else kBadInput naming the file.
  static Result<std::unique_ptr<FrameStore>> open_jpegs(const std::string& name,
                                                        std::vector<std::string> jpeg_paths,
                                                        const FrameStoreOptions& opts = {});
  ~FrameStore();
  FrameStore(const FrameStore&) = delete;
  FrameStore& operator=(const FrameStore&) = delete;

  const std::string& path() const;
  const VideoInfo& info() const;
  int count() const;  // frames in the video
  int width() const;
  int height() const;
  bool streaming() const;
  int64_t frame_bytes() const;     // bytes one stored frame takes
  int64_t resident_bytes() const;  // bytes of frames (and packets) the store holds now
  int64_t frames_decoded() const;  // decoder output so far, restarts included

  // Streaming mode: requests i = 0, 1, ..., total - 1 will ask for frame frame_for(i).
  // Must be called before the first acquire(); ignored in full-cache mode.
  void set_order(std::function<int(int64_t)> frame_for, int64_t total);

  // Frame k for request i (in streaming mode k must be frame_for(i), and i must not go
  // back by more than the in-flight requests). Blocks until the frame is decoded; returns
  // kInterrupted on SIGINT/SIGTERM and the decoder's error if decoding failed.
  Result<FrameHandle> acquire(int64_t i, int k);

  // The frame as BGR (CV_8UC3, height x width), bit-identical to decode_all_frames.
  // `out` is reused when it already has the right size and padding. Thread-safe.
  Status to_bgr(const FrameHandle& frame, cv::Mat& out) const;

  struct Impl;

 private:
  explicit FrameStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tr::io
