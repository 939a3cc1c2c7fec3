// sync-check: how far a talking-head video's sound is ahead of or behind its mouth.
//
// A mouth signal (how dark the mouth region is, frame by frame: an open mouth shows its dark
// inside) is correlated with the speech envelope (loudness in dB, on the same frames) at
// every lag in [-max_lag, +max_lag] frames; the lag with the highest Pearson correlation is
// the offset. Both streams are placed on their own timestamps (edit lists, -itsoffset,
// AAC priming are applied by libavformat/libavcodec), so a file whose audio starts 200 ms
// after its video comes out 5 frames late at 25 fps.
//
// Sign: a positive lag means the audio comes late (the sound of a mouth movement is heard
// lag frames after it is seen).
//
// Verdicts: kNoSpeech when the audio is (nearly) silent; kNotConfident when the mouth does
// not move, the peak is weak (r < kMinCorrelation), not distinct from the next separate
// peak (margin < kMinMargin) or sits at the edge of the lag range; else kConfident.
//
// Threads: sync_check() decodes with FFmpeg's threads and is otherwise single-threaded;
// the functions are re-entrant. Errors: kBadInput naming the file (unreadable video, no
// video or audio stream, a rect outside the frame, a package that does not fit the video).
#pragma once

#include <cstdint>
#include <opencv2/core.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace tr::sync {

inline constexpr double kMinCorrelation = 0.4;  // weaker peaks are not an offset
inline constexpr double kMinMargin = 0.1;       // best minus next separate peak
inline constexpr double kNoSpeechDbfs = -55.0;  // loudest 40 ms below this: no speech

// Where the mouth is: a face rect (x2/y2 exclusive) for every frame, or one for all.
// The mouth region is the middle of the face rect: x in [0.2, 0.8], y in [0.25, 0.9] of
// it. That holds the mouth both for SyncTalk_2D's rects (eyes to chin, the mouth near
// 0.3-0.5) and for the demo avatar's (nose to chin, the mouth near 0.7).
cv::Rect mouth_region(const cv::Rect& face);

// The analysis alone, on signals already extracted (tests drive it directly).
struct Signals {
  std::vector<double> mouth;        // per video frame: mean darkness of the mouth region
  std::vector<double> frame_times;  // per video frame: presentation time, seconds
  double fps = 25.0;
  std::vector<float> audio;  // mono samples at audio_rate
  int audio_rate = 16000;
  double audio_start_s = 0.0;  // presentation time of audio[0]
};

enum class Verdict { kConfident, kNotConfident, kNoSpeech };
const char* verdict_name(Verdict v);  // "ok", "no confident offset", "no speech"

struct SyncResult {
  Verdict verdict = Verdict::kNotConfident;
  std::string reason;  // why not confident / no speech ("" when confident)
  int lag_frames = 0;  // best lag (meaningful unless kNoSpeech)
  double lag_ms = 0.0;
  double correlation = 0.0;         // Pearson r at the best lag
  int second_lag = 0;               // the next separate local peak (if any)
  double second_correlation = 0.0;  // NaN when there is none
  int max_lag = 15;
  std::vector<double> curve;  // r per lag, index lag + max_lag; NaN where too few frames
  double fps = 25.0;
  int64_t frames = 0;
  double audio_peak_dbfs = -200.0;  // loudest 40 ms of the audio
  bool confident() const { return verdict == Verdict::kConfident; }
};

SyncResult analyse(const Signals& s, int max_lag);

// The whole check on a file.
struct SyncOptions {
  std::string video_path;
  std::optional<cv::Rect> face_rect;  // --rect
  std::string package_dir;            // --package: per-frame rects from crop_rectangles.json
  bool loop_order = false;            // the package render's --order loop (default pingpong)
  int64_t start_frame = 0;            // the package render's --start-frame
  int max_lag = 15;
  int threads = 0;  // decoder threads; 0 = one per core
};

struct SyncReport {
  SyncResult result;
  double video_start_s = 0.0, audio_start_s = 0.0;
  int width = 0, height = 0;
  cv::Rect first_mouth;  // the mouth region of frame 0 (for the report)
  std::string region_from;
  double audio_seconds = 0.0;
  int audio_rate = 0;
};

Result<SyncReport> sync_check(const SyncOptions& opts);

// A PNG of r against lag: the curve, zero and kMinCorrelation lines, the best lag marked.
Status write_correlation_plot(const SyncResult& r, const std::string& png_path);

}  // namespace tr::sync
