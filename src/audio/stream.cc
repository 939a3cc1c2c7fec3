// Streaming front-end: resampler -> MelStream -> encoder windows (in fixed batch groups)
// -> P rows -> generator windows, each stage emitting as soon as its input is final.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "audio/audio.h"

namespace tr::audio {

struct StreamingFrontEnd::Impl {
  EncoderFn encoder;
  FeatureOptions opts;
  std::unique_ptr<Resampler16k> resampler;  // null at 16 kHz
  MelStream mel;
  std::vector<float> resampled;  // scratch

  // Mel frames kept for windows still to come: frame t is mel_store[(t - mel_base) * 80].
  std::vector<float> mel_store;
  int64_t mel_base = 0;
  int64_t mel_total = 0;  // frames emitted (T so far)

  // Encoder windows gathered for the next batch, [count, 1, 80, 16] frame-major.
  std::vector<float> pending;
  int64_t next_window = 0;  // next encoder window to gather
  // Features F: row j is f_store[(j - f_base) * 512].
  std::vector<float> f_store;
  int64_t f_base = 0;
  int64_t f_total = 0;  // rows computed

  int64_t next_output = 0;  // next generator window to emit
  bool finished = false;
  int64_t n_final = -1;  // n, once known

  // P row r (r may be negative or past the end: nullptr means a zero row).
  const float* p_row(int64_t r) const {
    int64_t j;
    if (opts.repeat_ends) {
      if (r < 0) return nullptr;
      if (n_final >= 0 && r > n_final + 1) return nullptr;
      j = r == 0 ? 0 : (n_final >= 0 && r == n_final + 1 ? n_final - 1 : r - 1);
    } else {
      if (r < 0 || (n_final >= 0 && r >= n_final)) return nullptr;
      j = r;
    }
    return f_store.data() + (j - f_base) * kFeatureDim;
  }
  int64_t p_rows() const { return opts.repeat_ends ? n_final + 2 : n_final; }

  void append_mel(const std::vector<float>& frames, StreamOutput* out) {
    if (frames.empty()) return;
    if (out->mel.empty()) out->first_mel_frame = mel_total;
    out->mel.insert(out->mel.end(), frames.begin(), frames.end());
    if (encoder) mel_store.insert(mel_store.end(), frames.begin(), frames.end());
    mel_total += static_cast<int64_t>(frames.size()) / kMelBins;
  }

  Status run_pending() {
    const int64_t count = static_cast<int64_t>(pending.size()) / (kMelBins * kMelWindow);
    if (count == 0) return Status::Ok();
    Tensor batch = Tensor::f32({count, 1, kMelBins, kMelWindow});
    std::memcpy(batch.raw(), pending.data(), sizeof(float) * pending.size());
    pending.clear();
    TR_ASSIGN_OR_RETURN(Tensor feats, encoder(batch));
    if (feats.dtype() != DType::kFloat32 || feats.dim(0) != count ||
        feats.numel() != count * kFeatureDim) {
      return RuntimeError("audio encoder returned " + shape_str(feats.shape()) + ", expected [" +
                          std::to_string(count) + ", 512] float32");
    }
    const float* f = feats.data<float>();
    f_store.insert(f_store.end(), f, f + count * kFeatureDim);
    f_total += count;
    return Status::Ok();
  }

  // Gathers every encoder window whose mel span is final; runs full batches.
  Status advance_windows() {
    const int64_t batch = std::max<int64_t>(1, opts.batch);
    while (true) {
      if (n_final >= 0 && next_window >= n_final) break;
      MelSpan w;
      if (n_final >= 0) {
        w = mel_window(next_window, mel_total);
      } else {
        w.begin = next_window * 16 / 5;  // unclamped: final once it fits in the mel so far
        w.end = w.begin + kMelWindow;
        if (w.end > mel_total) break;
      }
      const size_t at = pending.size();
      pending.resize(at + kMelBins * kMelWindow);
      for (int m = 0; m < kMelBins; ++m) {
        for (int t = 0; t < kMelWindow; ++t) {
          pending[at + m * kMelWindow + t] = mel_store[(w.begin + t - mel_base) * kMelBins + m];
        }
      }
      ++next_window;
      if (static_cast<int64_t>(pending.size()) / (kMelBins * kMelWindow) == batch) {
        TR_RETURN_IF_ERROR(run_pending());
      }
    }
    if (n_final >= 0) TR_RETURN_IF_ERROR(run_pending());  // the last, partial group
    // Mel frames before both the next window's start and T - 16 (a clamped window's
    // start) are never read again.
    const int64_t keep =
        std::max<int64_t>(0, std::min(next_window * 16 / 5, mel_total - kMelWindow));
    if (keep - mel_base > 4096) {
      mel_store.erase(mel_store.begin(), mel_store.begin() + (keep - mel_base) * kMelBins);
      mel_base = keep;
    }
    return Status::Ok();
  }

  // Emits generator windows whose 16 rows of P are all final.
  void advance_outputs(StreamOutput* out) {
    while (true) {
      if (n_final >= 0) {
        if (next_output >= p_rows()) break;
      } else {
        // The last row window i reads is P[i+7] = F[i+6] (or F[i+7] without padding).
        const int64_t needed_f = next_output + 7 - (opts.repeat_ends ? 1 : 0);
        if (needed_f >= f_total) break;
      }
      StreamOutput::Window win;
      win.frame = next_output;
      win.data.resize(static_cast<size_t>(kContextRows) * kFeatureDim);
      for (int k = 0; k < kContextRows; ++k) {
        const float* row = p_row(next_output - kContextRows / 2 + k);
        float* dst = win.data.data() + k * kFeatureDim;
        if (row) {
          std::memcpy(dst, row, sizeof(float) * kFeatureDim);
        } else {
          std::memset(dst, 0, sizeof(float) * kFeatureDim);
        }
      }
      out->windows.push_back(std::move(win));
      ++next_output;
    }
    // F rows before the next window's first row are not needed any more.
    const int64_t keep = std::max<int64_t>(0, next_output - kContextRows / 2 - 1);
    if (keep - f_base > 256 && keep < f_total) {
      f_store.erase(f_store.begin(), f_store.begin() + (keep - f_base) * kFeatureDim);
      f_base = keep;
    }
  }

  Status feed16k(const float* x, size_t n, StreamOutput* out) {
    std::vector<float> frames;
    mel.push(x, n, &frames);
    append_mel(frames, out);
    if (!encoder) return Status::Ok();
    TR_RETURN_IF_ERROR(advance_windows());
    advance_outputs(out);
    return Status::Ok();
  }
};

StreamingFrontEnd::StreamingFrontEnd(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StreamingFrontEnd::~StreamingFrontEnd() = default;

Result<std::unique_ptr<StreamingFrontEnd>> StreamingFrontEnd::create(EncoderFn encoder,
                                                                     const FeatureOptions& opts,
                                                                     int input_rate) {
  auto impl = std::make_unique<Impl>();
  impl->encoder = std::move(encoder);
  impl->opts = opts;
  if (input_rate != kSampleRate) {
    TR_ASSIGN_OR_RETURN(impl->resampler, Resampler16k::create(input_rate));
  }
  return std::make_unique<StreamingFrontEnd>(std::move(impl));
}

Status StreamingFrontEnd::push(const float* samples, size_t count, StreamOutput* out) {
  Impl& s = *impl_;
  if (s.finished) return BadInput("push() after finish()");
  if (s.resampler) {
    s.resampled.clear();
    TR_RETURN_IF_ERROR(s.resampler->push(samples, count, &s.resampled));
    return s.feed16k(s.resampled.data(), s.resampled.size(), out);
  }
  for (size_t i = 0; i < count; ++i) {
    if (!std::isfinite(samples[i])) {
      return BadInput("audio sample " + std::to_string(i) + " of this chunk is NaN or infinite");
    }
  }
  return s.feed16k(samples, count, out);
}

Status StreamingFrontEnd::finish(StreamOutput* out) {
  Impl& s = *impl_;
  if (s.finished) return Status::Ok();
  if (s.resampler) {
    s.resampled.clear();
    TR_RETURN_IF_ERROR(s.resampler->finish(&s.resampled));
    TR_RETURN_IF_ERROR(s.feed16k(s.resampled.data(), s.resampled.size(), out));
  }
  s.finished = true;
  std::vector<float> frames;
  s.mel.finish(&frames);
  s.append_mel(frames, out);
  if (!s.encoder) return Status::Ok();
  TR_ASSIGN_OR_RETURN(s.n_final, frame_count(s.mel_total));
  TR_RETURN_IF_ERROR(s.advance_windows());
  s.advance_outputs(out);
  return Status::Ok();
}

int64_t StreamingFrontEnd::mel_frames() const { return impl_->mel_total; }
int64_t StreamingFrontEnd::frames() const { return impl_->next_output; }

}  // namespace tr::audio
