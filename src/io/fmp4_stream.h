// Streaming output: a fragmented MP4 (H.264 + AAC on one timeline) produced into memory,
// fragment by fragment, for a browser's Media Source Extensions (talkrender serve).
//
// The first sink call is the init segment (ftyp + moov, is_init_segment = true); then one
// media fragment (moof + mdat) per video frame, emitted by write_frame, so the stream lags
// the renderer by one frame; finish() flushes the encoders into the last fragments.
//
// Timeline: video frame i starts at i / fps; audio sample k (of the PCM given, counted
// from the first write_audio) plays at k / audio_rate, whichever order or chunk sizes the
// two arrive in. Each fragment carries the video frame and the AAC frames that end within
// that frame's period (AAC frames are 1024 samples: ~21 ms at 48 kHz), so audio pushed
// ahead of the video waits for it, and audio pushed late goes out with the next frame.
//
// One thread calls everything; after finish() (or a failed call) the stream is closed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <opencv2/core.hpp>
#include <string>

#include "common/status.h"

namespace tr::io {

struct Fmp4Options {
  // The size of the frames given to write_frame (required). An odd size is padded by
  // repeating the last column / row, as in the MP4 file writer (mp4_encoded_size).
  int width = 0, height = 0;
  int fps_num = 25, fps_den = 1;
  int crf = 23;
  // Low latency: tune zerolatency (no B-frames, no lookahead: a packet per frame sent).
  std::string preset = "ultrafast";
  int keyframe_interval = 0;  // in frames; 0 = one second of frames (rounded up)
  int threads = 0;            // x264 threads; 0 = sized to the machine (as Mp4Options)
  // The PCM given to write_audio: mono at this rate. 0 = no audio track.
  int audio_rate = 16000;
  // The AAC track's rate; the PCM is resampled to it (libswresample) when it differs.
  // 48 kHz by default, not the input's 16 kHz, for two reasons: (1) every MSE / platform
  // AAC decoder (Chrome, Firefox through WMF on Windows, Safari's AudioToolbox, Android
  // MediaCodec) takes 48 kHz AAC-LC, while low rates are where players disagree; (2) an
  // AAC frame is 1024 samples: 21 ms at 48 kHz but 64 ms at 16 kHz, longer than a 40 ms
  // video frame, so at 16 kHz the audio would trail the video by up to two frames in the
  // stream. The cost is the AAC encoder's CPU on 3x the samples (~1% of a core, mono).
  int aac_rate = 48000;
  int audio_bitrate = 64000;  // mono speech
};

// Receives the stream's bytes: the init segment once, first, then each fragment.
// An error fails the write that produced the bytes (and closes the stream).
using Fmp4Sink = std::function<Status(const uint8_t* data, size_t size, bool is_init_segment)>;

class Fmp4Stream {
 public:
  // Opens the encoders and the muxer and sends the init segment to `sink`.
  static Result<std::unique_ptr<Fmp4Stream>> create(const Fmp4Options& opts, Fmp4Sink sink);
  ~Fmp4Stream();
  Fmp4Stream(const Fmp4Stream&) = delete;
  Fmp4Stream& operator=(const Fmp4Stream&) = delete;

  // Encodes one CV_8UC3 BGR frame of the options' size at the next frame time, and sends
  // a fragment with it and the audio up to its end.
  Status write_frame(const cv::Mat& bgr);
  // Appends mono PCM at Fmp4Options::audio_rate (float: -1..1). Only buffered: it is
  // encoded and sent by the next write_frame or finish().
  Status write_audio(const int16_t* pcm, size_t samples);
  Status write_audio(const float* pcm, size_t samples);
  // Flushes the encoders; all the audio given is sent, even past the last frame's end.
  Status finish();

  // The MSE type for MediaSource.addSourceBuffer, from the encoders' actual profile and
  // level: video/mp4; codecs="avc1.42C01E, mp4a.40.2" (no mp4a without audio).
  std::string mime_codecs() const;

  int64_t frames_written() const;
  int64_t fragments_sent() const;  // media fragments, not counting the init segment
  int64_t bytes_sent() const;

 private:
  struct Impl;
  explicit Fmp4Stream(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tr::io
