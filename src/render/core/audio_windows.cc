// Per-frame audio windows over a padded feature matrix: contract section 4 step 12.
#include <fmt/format.h>

#include <cstring>

#include "render/render.h"

namespace tr::render {

Result<std::unique_ptr<FeatureWindows>> FeatureWindows::create(Tensor features,
                                                               int64_t window_numel,
                                                               const std::string& name) {
  if (features.dtype() != DType::kFloat32 || features.rank() != 2 || features.dim(0) < 1) {
    return BadInput(fmt::format("{}: audio features must be float32 [rows, block], got {} {}", name,
                                dtype_name(features.dtype()), shape_str(features.shape())));
  }
  const int64_t rows = features.dim(0), block = features.dim(1);
  if (16 * block != window_numel) {
    return BadInput(fmt::format(
        "{}: feature blocks of {} floats do not fit the model's audio input of {} floats "
        "(16 blocks of {} expected)",
        name, block, window_numel, window_numel / 16));
  }
  return std::unique_ptr<FeatureWindows>(new FeatureWindows(std::move(features), rows, block));
}

void FeatureWindows::window(int64_t i, float* dst) const {
  const float* p = features_.data<float>();
  for (int64_t r = 0; r < 16; ++r) {
    const int64_t src = i - 8 + r;
    float* out = dst + r * block_;
    if (src < 0 || src >= rows_) {
      std::memset(out, 0, sizeof(float) * block_);
    } else {
      std::memcpy(out, p + src * block_, sizeof(float) * block_);
    }
  }
}

Result<AudioMode> audio_mode_for_shape(const Shape& shape) {
  static const AudioMode kModes[] = {
      {"ave", {32, 16, 16}, 25}, {"hubert", {32, 32, 32}, 25}, {"wenet", {256, 16, 32}, 20}};
  for (const auto& m : kModes) {
    if (m.shape == shape) return m;
  }
  return BadInput(
      fmt::format("the generator's audio input {} is not a known mode (ave [32, 16, 16], hubert "
                  "[32, 32, 32], wenet [256, 16, 32])",
                  shape_str(shape)));
}

}  // namespace tr::render
