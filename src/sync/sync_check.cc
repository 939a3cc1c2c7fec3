// sync-check's analysis: mouth darkness against the speech envelope, Pearson r per lag.
#include "sync/sync_check.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <opencv2/imgproc.hpp>

#include "audio/audio.h"
#include "common/files.h"
#include "io/package.h"
#include "io/png_file.h"
#include "io/video_reader.h"
#include "render/render.h"

namespace tr::sync {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
// The envelope's floor below its loudest frame: pauses (breath, room noise, codec noise)
// all read as the same "closed" level instead of adding their own noise to r.
constexpr double kEnvelopeRangeDb = 45.0;
// Slow changes of the mouth signal (head sway, light) are not speech: subtract a centred
// 2 s moving average. Syllables (4-5 per second) and pauses (0.2-1 s) pass.
constexpr double kHighPassSeconds = 2.0;
// Below this (grey levels, after the high-pass) the mouth region does not move at all.
constexpr double kMinMouthStd = 0.05;

// Mean square of audio[begin, begin + len) from prefix sums; NaN outside the audio.
struct Energy {
  std::vector<double> prefix;  // prefix[i] = sum of squares of audio[0, i)
  explicit Energy(const std::vector<float>& a) : prefix(a.size() + 1, 0.0) {
    for (size_t i = 0; i < a.size(); ++i) prefix[i + 1] = prefix[i] + double(a[i]) * a[i];
  }
  double mean_square(int64_t begin, int64_t len) const {
    if (begin < 0 || len <= 0 || begin + len > static_cast<int64_t>(prefix.size()) - 1) return kNaN;
    return std::max(0.0, prefix[begin + len] - prefix[begin]) / len;
  }
};

double to_db(double mean_square) { return 10.0 * std::log10(mean_square + 1e-20); }

// Pearson r over the pairs where both are finite; NaN with fewer than min_pairs or no spread.
double pearson(const std::vector<double>& x, const std::vector<double>& y, size_t min_pairs) {
  double sx = 0, sy = 0;
  size_t n = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isfinite(x[i]) && std::isfinite(y[i])) {
      sx += x[i];
      sy += y[i];
      ++n;
    }
  }
  if (n < min_pairs || n < 3) return kNaN;
  const double mx = sx / n, my = sy / n;
  double sxx = 0, syy = 0, sxy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isfinite(x[i]) && std::isfinite(y[i])) {
      const double dx = x[i] - mx, dy = y[i] - my;
      sxx += dx * dx;
      syy += dy * dy;
      sxy += dx * dy;
    }
  }
  if (sxx <= 1e-12 || syy <= 1e-12) return kNaN;
  return sxy / std::sqrt(sxx * syy);
}

std::vector<double> high_pass(const std::vector<double>& x, double fps) {
  const int64_t n = static_cast<int64_t>(x.size());
  const int64_t half = std::max<int64_t>(1, std::llround(kHighPassSeconds * fps / 2));
  std::vector<double> prefix(n + 1, 0.0);
  for (int64_t i = 0; i < n; ++i) prefix[i + 1] = prefix[i] + x[i];
  std::vector<double> out(n);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t a = std::max<int64_t>(0, i - half), b = std::min<int64_t>(n, i + half + 1);
    out[i] = x[i] - (prefix[b] - prefix[a]) / (b - a);
  }
  return out;
}

double stddev(const std::vector<double>& x) {
  if (x.size() < 2) return 0.0;
  double m = 0;
  for (double v : x) m += v;
  m /= x.size();
  double s = 0;
  for (double v : x) s += (v - m) * (v - m);
  return std::sqrt(s / x.size());
}

}  // namespace

cv::Rect mouth_region(const cv::Rect& face) {
  const int x1 = face.x + static_cast<int>(std::lround(0.2 * face.width));
  const int x2 = face.x + static_cast<int>(std::lround(0.8 * face.width));
  const int y1 = face.y + static_cast<int>(std::lround(0.25 * face.height));
  const int y2 = face.y + static_cast<int>(std::lround(0.9 * face.height));
  return cv::Rect(x1, y1, std::max(1, x2 - x1), std::max(1, y2 - y1));
}

const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::kConfident:
      return "ok";
    case Verdict::kNoSpeech:
      return "no speech";
    case Verdict::kNotConfident:
      break;
  }
  return "no confident offset";
}

SyncResult analyse(const Signals& s, int max_lag) {
  SyncResult r;
  r.max_lag = max_lag;
  r.fps = s.fps;
  r.frames = static_cast<int64_t>(s.mouth.size());
  r.second_correlation = kNaN;
  r.curve.assign(2 * max_lag + 1, kNaN);
  const Energy energy(s.audio);
  // The envelope's window is one video frame of audio, starting at the frame's time.
  const int64_t win = std::max<int64_t>(1, std::llround(s.audio_rate / s.fps));

  // Loudness of the loudest frame-long stretch (hop a quarter frame).
  double peak_ms = 0.0;
  for (int64_t b = 0; b + win <= static_cast<int64_t>(s.audio.size());
       b += std::max<int64_t>(1, win / 4))
    peak_ms = std::max(peak_ms, energy.mean_square(b, win));
  r.audio_peak_dbfs = to_db(peak_ms);
  if (s.audio.size() < static_cast<size_t>(win) || r.audio_peak_dbfs < kNoSpeechDbfs) {
    r.verdict = Verdict::kNoSpeech;
    char buf[160];
    std::snprintf(buf, sizeof buf, "the audio is silent (loudest 40 ms at %.1f dBFS, below %.0f)",
                  r.audio_peak_dbfs, kNoSpeechDbfs);
    r.reason = buf;
    return r;
  }
  const double floor_db = r.audio_peak_dbfs - kEnvelopeRangeDb;

  const std::vector<double> mouth = high_pass(s.mouth, s.fps);
  const size_t n = mouth.size();
  const size_t min_pairs = std::max<size_t>(10, n / 4);
  std::vector<double> env(n);
  for (int lag = -max_lag; lag <= max_lag; ++lag) {
    for (size_t i = 0; i < n; ++i) {
      // Audio late by `lag` frames: frame i's sound is heard at t_i + lag / fps.
      const double t = s.frame_times[i] + lag / s.fps - s.audio_start_s;
      const double ms = energy.mean_square(std::llround(t * s.audio_rate), win);
      env[i] = std::isfinite(ms) ? std::max(to_db(ms), floor_db) : kNaN;
    }
    r.curve[lag + max_lag] = pearson(mouth, env, min_pairs);
  }

  int best = -1;
  for (int k = 0; k < static_cast<int>(r.curve.size()); ++k) {
    if (std::isfinite(r.curve[k]) && (best < 0 || r.curve[k] > r.curve[best])) best = k;
  }
  r.verdict = Verdict::kNotConfident;
  if (stddev(mouth) < kMinMouthStd) {
    r.reason = "the mouth region does not change";
    if (best >= 0) {
      r.lag_frames = best - max_lag;
      r.correlation = r.curve[best];
    }
    r.lag_ms = r.lag_frames * 1000.0 / s.fps;
    return r;
  }
  if (best < 0) {
    r.reason = "audio and video overlap too little to correlate";
    return r;
  }
  r.lag_frames = best - max_lag;
  r.lag_ms = r.lag_frames * 1000.0 / s.fps;
  r.correlation = r.curve[best];

  // The main peak's lobe: from the best lag outwards while r keeps falling. The next
  // separate peak is the highest r outside it.
  const int K = static_cast<int>(r.curve.size());
  auto val = [&](int k) { return std::isfinite(r.curve[k]) ? r.curve[k] : -2.0; };
  int lo = best, hi = best;
  while (lo > 0 && val(lo - 1) <= val(lo)) --lo;
  while (hi + 1 < K && val(hi + 1) <= val(hi)) ++hi;
  for (int k = 0; k < K; ++k) {
    if ((k < lo || k > hi) && std::isfinite(r.curve[k]) &&
        (!std::isfinite(r.second_correlation) || r.curve[k] > r.second_correlation)) {
      r.second_correlation = r.curve[k];
      r.second_lag = k - max_lag;
    }
  }

  char buf[200];
  if (r.correlation < kMinCorrelation) {
    std::snprintf(buf, sizeof buf, "the best correlation %.2f is below %.2f", r.correlation,
                  kMinCorrelation);
    r.reason = buf;
  } else if (std::isfinite(r.second_correlation) &&
             r.correlation - r.second_correlation < kMinMargin) {
    std::snprintf(buf, sizeof buf,
                  "the peak at %+d (r %.2f) is not distinct from the one at %+d (r %.2f)",
                  r.lag_frames, r.correlation, r.second_lag, r.second_correlation);
    r.reason = buf;
  } else if (std::abs(r.lag_frames) == max_lag) {
    std::snprintf(buf, sizeof buf,
                  "the best lag is at the edge of the searched range (+-%d frames); try a "
                  "larger --max-lag",
                  max_lag);
    r.reason = buf;
  } else {
    r.verdict = Verdict::kConfident;
  }
  return r;
}

Result<SyncReport> sync_check(const SyncOptions& opts) {
  const std::string& path = opts.video_path;
  if (opts.max_lag < 1 || opts.max_lag > 250)
    return BadInput("--max-lag must be 1..250 frames, not " + std::to_string(opts.max_lag));
  if (!path_exists(path)) return BadInput(path + ": video file not found");
  io::DecodeOptions dopts;
  dopts.threads = opts.threads;
  TR_ASSIGN_OR_RETURN(auto reader, io::VideoReader::open(path, dopts));
  const io::VideoInfo vinfo = reader->info();
  SyncReport rep;
  rep.width = vinfo.width;
  rep.height = vinfo.height;
  const cv::Rect frame_rect(0, 0, vinfo.width, vinfo.height);

  // The face rect of every output frame: fixed, or the package's walk.
  std::vector<io::CropRect> pkg_rects;
  std::string rects_path;
  if (opts.face_rect) {
    const cv::Rect f = *opts.face_rect;
    if (f.width <= 0 || f.height <= 0 || (f & frame_rect) != f) {
      return BadInput(path + ": --rect " + std::to_string(f.x) + "," + std::to_string(f.y) + "," +
                      std::to_string(f.x + f.width) + "," + std::to_string(f.y + f.height) +
                      " is empty or outside the " + std::to_string(vinfo.width) + "x" +
                      std::to_string(vinfo.height) + " frame");
    }
    rep.region_from = "--rect";
  } else if (!opts.package_dir.empty()) {
    rects_path = opts.package_dir + "/cache/crop_rectangles.json";
    auto text = read_file(rects_path);
    if (!text.ok()) return BadInput(rects_path + ": cannot read the package's face rects");
    TR_ASSIGN_OR_RETURN(pkg_rects, io::parse_crop_rects(*text, rects_path));
    for (size_t k = 0; k < pkg_rects.size(); ++k) {
      if ((pkg_rects[k].to_cv() & frame_rect) != pkg_rects[k].to_cv()) {
        return BadInput(rects_path + ": rect of frame " + std::to_string(k) + " lies outside " +
                        path + "'s " + std::to_string(vinfo.width) + "x" +
                        std::to_string(vinfo.height) + " frame (not a render of this package?)");
      }
    }
    rep.region_from = std::string("--package (") + (opts.loop_order ? "loop" : "pingpong") +
                      " walk from frame " + std::to_string(opts.start_frame) + ")";
  } else {
    return BadInput(path + ": say where the face is: --rect x1,y1,x2,y2 or --package DIR");
  }

  audio::AudioInfo ainfo;
  TR_ASSIGN_OR_RETURN(std::vector<float> audio, audio::load_audio(path, &ainfo));
  rep.audio_start_s = ainfo.start_time_s;
  rep.audio_rate = ainfo.source_rate;
  rep.audio_seconds = audio.size() / double(audio::kSampleRate);

  Signals s;
  s.fps = vinfo.fps;
  s.audio = std::move(audio);
  s.audio_rate = audio::kSampleRate;
  s.audio_start_s = ainfo.start_time_s;
  cv::Mat frame, gray;
  for (int64_t i = 0;; ++i) {
    TR_ASSIGN_OR_RETURN(const bool got, reader->next_frame(frame));
    if (!got) break;
    cv::Rect face;
    if (opts.face_rect) {
      face = *opts.face_rect;
    } else {
      const int k = render::avatar_frame_for(
          i, static_cast<int>(pkg_rects.size()),
          opts.loop_order ? render::FrameOrder::kLoop : render::FrameOrder::kPingPong,
          opts.start_frame);
      face = pkg_rects[k].to_cv();
    }
    const cv::Rect m = mouth_region(face) & frame_rect;
    if (i == 0) {
      rep.first_mouth = m;
      rep.video_start_s = reader->frame_time_s();
    }
    cv::cvtColor(frame(m), gray, cv::COLOR_BGR2GRAY);
    s.mouth.push_back(255.0 - cv::mean(gray)[0]);  // darker = more open
    s.frame_times.push_back(reader->frame_time_s());
  }
  rep.result = analyse(s, opts.max_lag);
  return rep;
}

Status write_correlation_plot(const SyncResult& r, const std::string& png_path) {
  const int W = 720, H = 420, left = 60, right = 20, top = 40, bottom = 50;
  cv::Mat img(H, W, CV_8UC3, cv::Scalar(255, 255, 255));
  const int L = r.max_lag;
  auto X = [&](double lag) {
    return static_cast<int>(std::lround(left + (lag + L) * (W - left - right) / (2.0 * L)));
  };
  auto Y = [&](double v) {
    return static_cast<int>(std::lround(top + (1.0 - v) * (H - top - bottom) / 2.0));
  };
  const auto font = cv::FONT_HERSHEY_SIMPLEX;
  const cv::Scalar grid(220, 220, 220), ink(40, 40, 40);
  for (double v : {-1.0, -0.5, 0.0, 0.5, 1.0}) {
    cv::line(img, {X(-L), Y(v)}, {X(L), Y(v)}, v == 0.0 ? cv::Scalar(150, 150, 150) : grid, 1);
    char t[16];
    std::snprintf(t, sizeof t, "%+.1f", v);
    cv::putText(img, t, {8, Y(v) + 5}, font, 0.45, ink, 1, cv::LINE_AA);
  }
  const int step = L <= 20 ? 5 : L <= 60 ? 10 : 50;
  for (int lag = -(L / step) * step; lag <= L; lag += step) {
    cv::line(img, {X(lag), Y(1.0)}, {X(lag), Y(-1.0)}, grid, 1);
    cv::putText(img, std::to_string(lag), {X(lag) - 10, H - bottom + 20}, font, 0.45, ink, 1,
                cv::LINE_AA);
  }
  cv::putText(img, "lag (frames; + = audio late)", {W / 2 - 120, H - 10}, font, 0.5, ink, 1,
              cv::LINE_AA);
  // The confidence threshold.
  cv::line(img, {X(-L), Y(kMinCorrelation)}, {X(L), Y(kMinCorrelation)}, cv::Scalar(0, 160, 255),
           1);
  std::vector<cv::Point> pts;
  auto flush = [&] {
    if (pts.size() > 1) cv::polylines(img, pts, false, cv::Scalar(180, 80, 20), 2, cv::LINE_AA);
    pts.clear();
  };
  for (int k = 0; k < static_cast<int>(r.curve.size()); ++k) {
    if (!std::isfinite(r.curve[k])) {
      flush();
      continue;
    }
    pts.emplace_back(X(k - L), Y(r.curve[k]));
    cv::circle(img, pts.back(), 2, cv::Scalar(180, 80, 20), cv::FILLED, cv::LINE_AA);
  }
  flush();
  char title[200];
  if (r.verdict == Verdict::kNoSpeech) {
    std::snprintf(title, sizeof title, "no speech");
  } else {
    std::snprintf(title, sizeof title, "lag %+d frames (%+.0f ms), r = %.2f: %s", r.lag_frames,
                  r.lag_ms, r.correlation, r.confident() ? "confident" : "no confident offset");
    if (std::isfinite(r.correlation)) {
      const cv::Scalar mark = r.confident() ? cv::Scalar(40, 160, 40) : cv::Scalar(40, 40, 200);
      cv::line(img, {X(r.lag_frames), Y(1.0)}, {X(r.lag_frames), Y(-1.0)}, mark, 1);
      cv::circle(img, {X(r.lag_frames), Y(r.correlation)}, 6, mark, 2, cv::LINE_AA);
    }
  }
  cv::putText(img, title, {left, 25}, font, 0.55, ink, 1, cv::LINE_AA);
  return io::write_png_bgr(png_path, img, 6);
}

}  // namespace tr::sync
