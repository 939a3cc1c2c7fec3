// Frame count, encoder windows, the padded feature matrix P, generator windows and
// precomputed feature files (model contract section 4, steps 8-12 and its last part).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>

#include "audio/audio.h"
#include "common/checked_math.h"
#include "common/files.h"
#include "common/interrupt.h"
#include "common/npy.h"

namespace tr::audio {

Result<int64_t> frame_count(int64_t mel_frames) {
  if (mel_frames < kMelWindow) {
    return BadInput("audio too short: " + std::to_string(mel_frames) +
                    " mel frames, at least 16 are needed (3000 samples = 0.1875 s at 16 kHz)");
  }
  // The reference computes int((T - 16) / 80. * 25) + 2 in double; so do we, bit for bit.
  const double scaled = static_cast<double>(mel_frames - kMelWindow) / 80.0 * 25.0;
  return static_cast<int64_t>(std::floor(scaled)) + 2;
}

MelSpan mel_window(int64_t frame, int64_t mel_frames) {
  // int(80. * (i / 25.)) in the reference; equal to the exact floor(16 i / 5) for every
  // i < 2e6 (checked), so integer arithmetic is used here.
  MelSpan w;
  w.begin = frame * 16 / 5;
  w.end = w.begin + kMelWindow;
  if (w.end > mel_frames) {
    w.end = mel_frames;
    w.begin = mel_frames - kMelWindow;
  }
  return w;
}

Tensor mel_windows(const Tensor& mel, int64_t first, int64_t count) {
  const int64_t T = mel.dim(1);
  Tensor out = Tensor::f32({count, 1, kMelBins, kMelWindow});
  const float* src = mel.data<float>();
  float* dst = out.data<float>();
  for (int64_t k = 0; k < count; ++k) {
    const MelSpan w = mel_window(first + k, T);
    for (int m = 0; m < kMelBins; ++m) {
      std::memcpy(dst + (k * kMelBins + m) * kMelWindow, src + m * T + w.begin,
                  sizeof(float) * kMelWindow);
    }
  }
  return out;
}

// Copies one encoder batch's output into F, accepting [B, 512] or [B, 512, 1, 1].
static Status copy_encoder_rows(const Tensor& out, int64_t count, float* dst) {
  if (out.dtype() != DType::kFloat32 || out.rank() < 2 || out.dim(0) != count ||
      out.numel() != count * kFeatureDim) {
    return RuntimeError("audio encoder returned " + shape_str(out.shape()) + ", expected [" +
                        std::to_string(count) + ", 512] float32");
  }
  std::memcpy(dst, out.data<float>(), sizeof(float) * count * kFeatureDim);
  return Status::Ok();
}

Result<Tensor> encode_mel(const Tensor& mel, const EncoderFn& encoder, const FeatureOptions& opts) {
  if (mel.rank() != 2 || mel.dim(0) != kMelBins) {
    return BadInput("mel must be [80, T], got " + shape_str(mel.shape()));
  }
  TR_ASSIGN_OR_RETURN(const int64_t n, frame_count(mel.dim(1)));
  const int64_t batch = std::max<int64_t>(1, opts.batch);
  Tensor features = Tensor::f32({n, kFeatureDim});
  for (int64_t first = 0; first < n; first += batch) {
    if (interrupted()) return Interrupted();
    const int64_t count = std::min(batch, n - first);
    TR_ASSIGN_OR_RETURN(Tensor out, encoder(mel_windows(mel, first, count)));
    TR_RETURN_IF_ERROR(copy_encoder_rows(out, count, features.data<float>() + first * kFeatureDim));
  }
  return features;
}

Tensor pad_features(const Tensor& features, bool repeat_ends) {
  if (!repeat_ends) return features.clone();
  const int64_t n = features.dim(0), c = features.numel() / std::max<int64_t>(1, n);
  Tensor p = Tensor::f32({n + 2, c});
  const float* f = features.data<float>();
  float* dst = p.data<float>();
  if (n == 0) return Tensor::f32({0, c});
  std::memcpy(dst, f, sizeof(float) * c);                              // F0 repeated
  std::memcpy(dst + c, f, sizeof(float) * n * c);                      // F0 .. F(n-1)
  std::memcpy(dst + (n + 1) * c, f + (n - 1) * c, sizeof(float) * c);  // F(n-1) repeated
  return p;
}

Result<Tensor> compute_features(const std::vector<float>& samples_16k, const EncoderFn& encoder,
                                const FeatureOptions& opts) {
  const Tensor mel = compute_mel(samples_16k);
  TR_ASSIGN_OR_RETURN(Tensor f, encode_mel(mel, encoder, opts));
  return pad_features(f, opts.repeat_ends);
}

void generator_window_into(const Tensor& P, int64_t frame, float* out) {
  const int64_t rows = P.dim(0);
  const int64_t block = rows ? P.numel() / rows : (P.rank() > 1 ? P.dim(1) : 0);
  const float* src = P.data<float>();
  for (int64_t k = 0; k < kContextRows; ++k) {
    const int64_t r = frame - kContextRows / 2 + k;
    float* dst = out + k * block;
    if (r >= 0 && r < rows) {
      std::memcpy(dst, src + r * block, sizeof(float) * block);
    } else {
      std::memset(dst, 0, sizeof(float) * block);  // outside P: zero rows
    }
  }
}

Result<int64_t> block_size_for(const Shape& audio_shape) {
  // The shape comes from the model file: a negative or overflowing one is an error here, not
  // a saturated count that happens to fail the multiple-of-16 test.
  TR_ASSIGN_OR_RETURN(const int64_t size, checked_numel(audio_shape, "audio input"));
  if (audio_shape.empty() || size <= 0 || size % kContextRows != 0) {
    return BadInput("audio input " + shape_str(audio_shape) +
                    " is not 16 blocks of features (its size must be a multiple of 16)");
  }
  return size / kContextRows;
}

Result<Tensor> generator_window(const Tensor& P, int64_t frame, const Shape& audio_shape) {
  TR_ASSIGN_OR_RETURN(const int64_t block, block_size_for(audio_shape));
  const int64_t have = P.dim(0) ? P.numel() / P.dim(0) : 0;
  if (have != block) {
    return BadInput("features have " + std::to_string(have) +
                    " floats per row; the model's audio input " + shape_str(audio_shape) +
                    " needs " + std::to_string(block));
  }
  Tensor w = Tensor::f32(audio_shape);
  generator_window_into(P, frame, w.data<float>());
  return w;
}

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Shape from the .json sidecar: {"shape": [R, ...]} (the sample package also has
// "num_frames" and "feature_size", which must agree when present).
Result<Shape> read_sidecar_shape(const std::string& json_path) {
  TR_ASSIGN_OR_RETURN(const std::string text, read_file(json_path));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return BadInput(json_path + ": not a JSON object");
  if (!j.contains("shape") || !j["shape"].is_array() || j["shape"].empty()) {
    return BadInput(json_path + ": expected a \"shape\": [rows, ...] array");
  }
  Shape shape;
  for (const auto& d : j["shape"]) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0) {
      return BadInput(json_path + ": \"shape\" must hold non-negative integers");
    }
    shape.push_back(d.get<int64_t>());
  }
  if (shape.size() < 2) return BadInput(json_path + ": \"shape\" must have at least 2 dimensions");
  if (j.contains("num_frames") &&
      (!j["num_frames"].is_number_integer() || j["num_frames"].get<int64_t>() != shape[0])) {
    return BadInput(json_path +
                    ": \"num_frames\" disagrees with \"shape\"[0] = " + std::to_string(shape[0]));
  }
  // Checked before any division or byte count: the sidecar is untrusted, and a saturated or
  // wrapped product would show through as a nonsense row size (or be undefined behaviour).
  // The row shape is checked on its own too, since a zero row count hides its size.
  TR_RETURN_IF_ERROR(checked_bytes(shape, sizeof(float), json_path + ": \"shape\"").status());
  if (!checked_bytes(Shape(shape.begin() + 1, shape.end()), sizeof(float)).ok()) {
    return BadInput(json_path + ": \"shape\" " + shape_str(shape) +
                    " declares rows too large to address (their size overflows a 64-bit count)");
  }
  const int64_t block = shape_numel(Shape(shape.begin() + 1, shape.end()));
  if (j.contains("feature_size") && shape[0] > 0 &&
      (!j["feature_size"].is_number_integer() || j["feature_size"].get<int64_t>() != block)) {
    return BadInput(json_path + ": \"feature_size\" disagrees with the row size " +
                    std::to_string(block) + " from \"shape\"");
  }
  return shape;
}

}  // namespace

Result<Tensor> read_feature_file(const std::string& path, int64_t expected_block,
                                 Shape* file_shape) {
  Tensor t;
  if (ends_with(path, ".npy")) {
    TR_ASSIGN_OR_RETURN(t, read_npy(path));
    if (t.dtype() != DType::kFloat32)
      return BadInput(path + ": features must be float32 or float64");
    if (t.rank() < 2 || t.dim(0) == 0) {
      return BadInput(path + ": features must be [rows, ...] with at least one row, got " +
                      shape_str(t.shape()));
    }
  } else {
    TR_ASSIGN_OR_RETURN(const std::string bytes, read_file(path));
    const std::string json_path =
        (ends_with(path, ".bin") ? path.substr(0, path.size() - 4) : path) + ".json";
    Shape shape;
    if (path_exists(json_path)) {
      TR_ASSIGN_OR_RETURN(shape, read_sidecar_shape(json_path));
    } else if (expected_block > 0) {
      shape = {static_cast<int64_t>(bytes.size() / 4) / expected_block, expected_block};
    } else {
      return BadInput(path + ": raw features need a shape sidecar " + json_path);
    }
    // Both products were checked (read_sidecar_shape), or come from the model's block size;
    // checked again here so that no path reaches the division with a wrapped number.
    TR_ASSIGN_OR_RETURN(const size_t total_bytes, checked_bytes(shape, sizeof(float), path));
    TR_ASSIGN_OR_RETURN(const size_t row_bytes,
                        checked_bytes(Shape(shape.begin() + 1, shape.end()), sizeof(float), path));
    if (row_bytes == 0 || bytes.size() % row_bytes != 0) {
      return BadInput(path + ": " + std::to_string(bytes.size()) +
                      " bytes is not a whole number of rows of " + std::to_string(row_bytes) +
                      " bytes (float32 " + shape_str(Shape(shape.begin() + 1, shape.end())) + ")");
    }
    if (bytes.size() != total_bytes) {
      return BadInput(path + ": holds " + std::to_string(bytes.size() / row_bytes) + " rows but " +
                      json_path + " says " + shape_str(shape));
    }
    if (shape[0] == 0) return BadInput(path + ": no feature rows");
    t = Tensor::f32(shape);
    std::memcpy(t.raw(), bytes.data(), bytes.size());  // little-endian host assumed (x86/arm)
  }
  if (file_shape) *file_shape = t.shape();
  const int64_t rows = t.dim(0), block = t.numel() / rows;
  const float* v = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (!std::isfinite(v[i])) {
      return BadInput(path + ": value " + std::to_string(i) + " (row " + std::to_string(i / block) +
                      ") is NaN or infinite");
    }
  }
  if (expected_block > 0 && block != expected_block) {
    return BadInput(path + ": rows of " + std::to_string(block) +
                    " floats, but the model's audio input needs rows of " +
                    std::to_string(expected_block) + " (its size / 16)");
  }
  return t.reshaped({rows, block});
}

}  // namespace tr::audio
