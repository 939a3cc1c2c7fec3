// Output sinks for rendered frames: an MP4 file (H.264 + AAC) or an image sequence.
//
// Contract for every writer: frames (CV_8UC3 BGR, all the size given at creation) are
// pushed in order by ONE thread; output goes to a temporary name next to the target and is
// renamed into place only by finish(); abort() or destroying an unfinished writer removes
// the temporary output. After finish() or abort() no more calls are allowed.
#pragma once

#include <memory>
#include <opencv2/core.hpp>
#include <string>

#include "common/status.h"

namespace tr::io {

class FrameWriter {
 public:
  virtual ~FrameWriter() = default;
  virtual Status write_frame(const cv::Mat& bgr) = 0;
  virtual Status finish() = 0;
  virtual void abort() = 0;
  virtual int64_t frames_written() const = 0;
};

// x264 presets, measured (bench_x264_presets: 100 real 720p frames of the sample package,
// crf 20, CPU ms per frame including the BGR -> YUV conversion, and bytes per frame, 2-core
// AMD EPYC Zen 3, 2026-11-27): ultrafast 7.9 ms (18.6 KB), superfast 15.5 (9.3), veryfast
// 21.0 (4.4), faster 29.1 (5.1), fast 41.2 (5.4), medium 41.7 (5.5). Re-measured with the
// ffmpeg CLI on 200 raw frames, one thread, best of three (2026-11-28): ultrafast 5.2 ms,
// superfast 11.8, veryfast 13.7 of x264 CPU per frame; 16.8 / 8.1 / 3.7 KB per frame.
//
// Which one is the default depends on who else needs the CPU, so the render layer picks it
// (render::default_preset): when the generator runs on the CPU, the encoder's CPU time
// comes straight off the frame rate, and ultrafast is the one that leaves the runtime the
// most. This is the io layer's default, for callers whose CPU is otherwise idle: superfast,
// half the bytes of ultrafast for twice its CPU, with CABAC and the deblocking filter
// (ultrafast drops both).
inline constexpr const char* kDefaultX264Preset = "superfast";

struct Mp4Options {
  // The size of the frames given to write_frame (required). H.264 in 4:2:0 needs even
  // sizes: an odd width or height is padded by one column or row that repeats the edge
  // pixels (mp4_encoded_size), never cropped, so no pixel of the frame is lost.
  int width = 0, height = 0;
  int fps_num = 25, fps_den = 1;  // the render's frame rate: the model's (25, wenet 20)
  int crf = 20;
  // rgb: x264's RGB encoder (libx264rgb, High 4:4:4) on the BGR bytes themselves, no YUV
  // conversion and no chroma subsampling; with lossless (qp 0, crf unused) a decoder gives
  // back exactly the frames written. Any YUV, 4:4:4 included, loses a level here and there
  // in the BGR -> YUV -> BGR round trip, and 4:2:0 much more on colour edges. Players that
  // only know 4:2:0 H.264 may refuse it: for avatar packages (talkrender package), not
  // renders. lossless without rgb is x264 qp 0 in 4:2:0 (lossless only in YUV).
  bool rgb = false;
  bool lossless = false;
  std::string preset = kDefaultX264Preset;
  int threads = 0;  // x264 threads; 0 = sized to the machine (1 on 1-2 cores, else x264 auto)
  std::string audio_path;  // any format FFmpeg reads; empty = no audio track
  int audio_bitrate = 128000;
  // false (the default): the whole audio file is muxed, never cut; finish() fails if it
  // outlasts the video by more than kMaxAudioOverhangFrames (the render made too few
  // frames for the speech: a bug, not something to hide). true: the audio stops at the
  // video's end, for a render the user asked to be shorter than the speech (--frames).
  bool cut_audio_at_video_end = false;
};

// How far the audio may run past the last video frame, in frames. The contract's frame
// count for ave (n + 2 frames of 40 ms for T mel columns, model-contract.md section 4)
// ends the video less than two frames before the speech: video (floor((T-16)*25/80) + 4)
// / 25 s > T/80 - 0.08 s, audio < T/80 s. The reference muxes the same way (the player
// holds the last frame for those few milliseconds).
inline constexpr int kMaxAudioOverhangFrames = 2;

// The size an MP4 of width x height frames is encoded at: each dimension rounded up to
// even (the extra column / row repeats the last one).
cv::Size mp4_encoded_size(int width, int height);

// Audio is decoded and resampled as needed, AAC-encoded and muxed interleaved while frames
// arrive. finish() checks the file it wrote, read back: the video lasts frames / fps; the
// audio lasts as long as the input (within one AAC frame), or up to the video's end with
// cut_audio_at_video_end; and it does not outlast the video (kMaxAudioOverhangFrames).
// A failed check is kRuntime naming the file, and nothing is left at the path.
Result<std::unique_ptr<FrameWriter>> create_mp4_writer(const std::string& path,
                                                       const Mp4Options& opts);

enum class ImageFormat { kPng, kJpg };
struct ImageSequenceOptions {
  ImageFormat format = ImageFormat::kPng;
  int jpeg_quality = 95;
  int png_compression = 1;  // zlib level 0..9; PNG is lossless at every level
};

// Writes DIR/frame_000000.png, frame_000001.png, ... into a temporary sibling directory
// that finish() renames to DIR (DIR must not exist yet, or be an empty directory).
Result<std::unique_ptr<FrameWriter>> create_image_sequence_writer(
    const std::string& dir, const ImageSequenceOptions& opts = {});

// Picks by the path: a trailing '/' or an existing directory -> image sequence (PNG, or JPEG
// when `image_ext` is "jpg"); otherwise an MP4 file.
Result<std::unique_ptr<FrameWriter>> create_frame_writer(const std::string& out_path,
                                                         const Mp4Options& mp4,
                                                         const std::string& image_ext = "png");

}  // namespace tr::io
