// Normalised mel spectrogram (model contract section 4, steps 2-7), whole-file and
// incremental. Both paths run every frame through the same Kernel on the same bytes, so
// the streaming output is bit-identical to the whole-file one.
#include <fftw3.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <vector>

#include "audio/audio.h"

namespace tr::audio {
namespace {

constexpr float kPreemphasis = 0.97f;
constexpr int kBins = kFftSize / 2 + 1;  // 401
constexpr int kPad = kFftSize / 2;       // centred STFT: 400 zeros each side
constexpr double kFmin = 55.0, kFmax = 7600.0;

// Slaney mel scale (librosa htk=False): linear below 1 kHz, logarithmic above.
double hz_to_mel(double hz) {
  const double f_sp = 200.0 / 3.0, min_log_hz = 1000.0, logstep = std::log(6.4) / 27.0;
  if (hz >= min_log_hz) return min_log_hz / f_sp + std::log(hz / min_log_hz) / logstep;
  return hz / f_sp;
}
double mel_to_hz(double mel) {
  const double f_sp = 200.0 / 3.0, min_log_hz = 1000.0, logstep = std::log(6.4) / 27.0;
  const double min_log_mel = min_log_hz / f_sp;
  if (mel >= min_log_mel) return min_log_hz * std::exp(logstep * (mel - min_log_mel));
  return f_sp * mel;
}

// The filterbank, stored sparsely: each triangle touches a few dozen bins at most, so
// this is ~20x cheaper than the dense [80, 401] product.
struct FilterBank {
  struct Row {
    int first = 0;
    std::vector<double> weights;
  };
  Row rows[kMelBins];
  double window[kFftSize];

  FilterBank() {
    double edges[kMelBins + 2];
    const double lo = hz_to_mel(kFmin), hi = hz_to_mel(kFmax);
    for (int i = 0; i < kMelBins + 2; ++i) {
      edges[i] = mel_to_hz(lo + (hi - lo) * i / (kMelBins + 1));
    }
    for (int m = 0; m < kMelBins; ++m) {
      const double left = edges[m], centre = edges[m + 1], right = edges[m + 2];
      const double norm = 2.0 / (right - left);  // Slaney area normalisation
      Row& row = rows[m];
      row.first = -1;
      for (int b = 0; b < kBins; ++b) {
        const double f = b * static_cast<double>(kSampleRate) / kFftSize;
        const double w =
            std::max(0.0, std::min((f - left) / (centre - left), (right - f) / (right - centre)));
        if (w <= 0.0) {
          if (row.first >= 0) break;  // past the triangle
          continue;
        }
        if (row.first < 0) row.first = b;
        row.weights.push_back(w * norm);
      }
      if (row.first < 0) row.first = 0;
    }
    for (int n = 0; n < kFftSize; ++n) {  // periodic Hann
      window[n] = 0.5 - 0.5 * std::cos(2.0 * M_PI * n / kFftSize);
    }
  }
};

const FilterBank& filter_bank() {
  static const FilterBank fb;
  return fb;
}

// One FFTW plan for the process, made with FFTW_ESTIMATE so that the algorithm (and so
// the rounding) never depends on timing measurements. Planning is not thread-safe in
// FFTW, executing with new arrays is.
fftwf_plan shared_plan() {
  static std::once_flag once;
  static fftwf_plan plan = nullptr;
  std::call_once(once, [] {
    float* in = static_cast<float*>(fftwf_malloc(sizeof(float) * kFftSize));
    fftwf_complex* out = static_cast<fftwf_complex*>(fftwf_malloc(sizeof(fftwf_complex) * kBins));
    plan = fftwf_plan_dft_r2c_1d(kFftSize, in, out, FFTW_ESTIMATE);
    fftwf_free(in);
    fftwf_free(out);
  });
  return plan;
}

}  // namespace

struct MelStream::Kernel {
  float* in = nullptr;
  fftwf_complex* out = nullptr;
  fftwf_plan plan = nullptr;
  const FilterBank& fb = filter_bank();
  double magnitude[kBins];

  Kernel()
      : in(static_cast<float*>(fftwf_malloc(sizeof(float) * kFftSize))),
        out(static_cast<fftwf_complex*>(fftwf_malloc(sizeof(fftwf_complex) * kBins))),
        plan(shared_plan()) {}
  ~Kernel() {
    fftwf_free(in);
    fftwf_free(out);
  }

  // padded: 800 samples of the zero-padded pre-emphasised signal -> 80 normalised values.
  void frame(const float* padded, float* mel_out) {
    for (int n = 0; n < kFftSize; ++n) in[n] = static_cast<float>(padded[n] * fb.window[n]);
    fftwf_execute_dft_r2c(plan, in, out);
    for (int b = 0; b < kBins; ++b) {
      const double re = out[b][0], im = out[b][1];
      magnitude[b] = std::sqrt(re * re + im * im);
    }
    for (int m = 0; m < kMelBins; ++m) {
      const FilterBank::Row& row = fb.rows[m];
      double sum = 0.0;
      for (size_t k = 0; k < row.weights.size(); ++k)
        sum += row.weights[k] * magnitude[row.first + k];
      const double db = 20.0 * std::log10(std::max(1e-5, sum)) - 20.0;
      mel_out[m] = static_cast<float>(std::clamp(8.0 * (db + 100.0) / 100.0 - 4.0, -4.0, 4.0));
    }
  }
};

MelStream::MelStream() : kernel_(std::make_unique<Kernel>()), buf_(kPad, 0.0f) {}
MelStream::~MelStream() = default;

void MelStream::emit_ready(int64_t available_end, std::vector<float>* frames) {
  const int64_t limit = finished_ ? 1 + samples_ / kHop : INT64_MAX;
  while (emitted_ < limit && emitted_ * kHop + kFftSize <= available_end) {
    const size_t at = frames->size();
    frames->resize(at + kMelBins);
    kernel_->frame(buf_.data() + (emitted_ * kHop - buf_offset_), frames->data() + at);
    ++emitted_;
  }
  // Drop what no future frame reads, in large steps to keep the copying cheap.
  const int64_t keep_from = emitted_ * kHop;
  if (keep_from - buf_offset_ > 1 << 16) {
    buf_.erase(buf_.begin(), buf_.begin() + (keep_from - buf_offset_));
    buf_offset_ = keep_from;
  }
}

void MelStream::push(const float* x, size_t n, std::vector<float>* frames) {
  if (finished_ || n == 0) return;
  const size_t at = buf_.size();
  buf_.resize(at + n);
  float prev = last_sample_;
  for (size_t i = 0; i < n; ++i) {
    buf_[at + i] = x[i] - kPreemphasis * prev;  // y[0] = x[0] since prev starts at 0
    prev = x[i];
  }
  last_sample_ = prev;
  samples_ += static_cast<int64_t>(n);
  emit_ready(kPad + samples_, frames);
}

void MelStream::finish(std::vector<float>* frames) {
  if (finished_) return;
  finished_ = true;
  buf_.insert(buf_.end(), kPad, 0.0f);
  emit_ready(kPad + samples_ + kPad, frames);
}

Tensor mel_from_frames(const std::vector<float>& frame_major) {
  const int64_t T = static_cast<int64_t>(frame_major.size()) / kMelBins;
  Tensor mel = Tensor::f32({kMelBins, T});
  float* dst = mel.data<float>();
  for (int64_t t = 0; t < T; ++t) {
    for (int m = 0; m < kMelBins; ++m) dst[m * T + t] = frame_major[t * kMelBins + m];
  }
  return mel;
}

Tensor compute_mel(const float* samples, size_t count) {
  // The whole-file path: pre-emphasis and padding over the full signal, then every frame.
  std::vector<float> padded(count + 2 * kPad, 0.0f);
  float prev = 0.0f;
  for (size_t i = 0; i < count; ++i) {
    padded[kPad + i] = samples[i] - kPreemphasis * prev;
    prev = samples[i];
  }
  const int64_t T = 1 + static_cast<int64_t>(count) / kHop;
  std::vector<float> frames(static_cast<size_t>(T) * kMelBins);
  MelStream::Kernel kernel;
  for (int64_t t = 0; t < T; ++t)
    kernel.frame(padded.data() + t * kHop, frames.data() + t * kMelBins);
  return mel_from_frames(frames);
}

}  // namespace tr::audio
