// Internal to src/io: the encoder setup shared by the MP4 file writer (mp4_writer.cc) and
// the fragmented-MP4 stream (fmp4_stream.cc): libx264 / libx264rgb, FFmpeg's AAC encoder,
// BGR -> encoder-frame conversion, and the send-frame / receive-packets loop.
#pragma once

#include <functional>
#include <opencv2/core.hpp>
#include <string>

#include "common/status.h"
#include "io/av_util.h"

namespace tr::io::av {

struct H264Config {
  int width = 0, height = 0;  // the encoded size: even (mp4_encoded_size)
  int fps_num = 25, fps_den = 1;
  int crf = 20;
  bool rgb = false;       // libx264rgb on BGR24 (else libx264 on yuv420p)
  bool lossless = false;  // qp 0 (crf unused)
  std::string preset;
  std::string tune;  // "" = none; "zerolatency" for streaming
  int gop = 0;       // keyframe interval in frames; 0 = x264's default
  bool no_b_frames = false;
  int threads = 0;  // 0 = sized to the machine (1 on 1-2 cores, else x264 auto)
  bool global_header = false;
};

// An opened H.264 encoder; time base 1 / fps. Errors start with `what` (a path or name).
Result<CodecCtxPtr> open_h264_encoder(const H264Config& cfg, const std::string& what);

// An opened AAC-LC encoder taking planar float at `rate`, `channels` (1 or 2).
Result<CodecCtxPtr> open_aac_encoder(int rate, int channels, int bit_rate, bool global_header,
                                     const std::string& what);

// A new stream of `out` with the encoder's parameters and time base.
Result<AVStream*> add_stream(AVFormatContext* out, const AVCodecContext* enc,
                             const std::string& what);

// Converts frames of width x height (CV_8UC3 BGR) into the encoder's pixel format at its
// (even) size; an odd size is padded by repeating the last column / row.
class BgrConverter {
 public:
  Status init(const AVCodecContext* enc, int width, int height, const std::string& what);
  // Checks the frame's type and size (`index` names it in the message), converts it into
  // frame(), whose pts is set to `index`.
  Status convert(const cv::Mat& bgr, int64_t index);
  AVFrame* frame() { return frame_.get(); }

 private:
  std::string what_;
  int width_ = 0, height_ = 0;
  cv::Size encoded_;
  FramePtr frame_;
  SwsPtr sws_;
  cv::Mat staging_;  // padded copy of frames that have no slack after their last row
};

// Sends `frame` (nullptr: flush) and passes every packet that comes out to `sink` (which
// may keep a reference, not the packet; it is unreferenced afterwards).
Status encode(AVCodecContext* enc, const AVFrame* frame, AVPacket* pkt,
              const std::function<Status(AVPacket*)>& sink, const std::string& what);

}  // namespace tr::io::av
