// Per-frame audio windows over a feature matrix: contract section 4 step 12 (16 blocks) and
// Ultralight's 8-block window; the block count comes from the model family table.
#include <fmt/format.h>

#include <cstring>

#include "render/render.h"

namespace tr::render {

Result<std::unique_ptr<FeatureWindows>> FeatureWindows::create(Tensor features,
                                                               int64_t window_numel,
                                                               const std::string& name,
                                                               int blocks) {
  if (features.dtype() != DType::kFloat32 || features.rank() != 2 || features.dim(0) < 1) {
    return BadInput(fmt::format("{}: audio features must be float32 [rows, block], got {} {}", name,
                                dtype_name(features.dtype()), shape_str(features.shape())));
  }
  if (blocks < 1 || blocks % 2 != 0) {
    return BadInput(fmt::format("{}: a window of {} blocks is not even", name, blocks));
  }
  const int64_t rows = features.dim(0), block = features.dim(1);
  if (blocks * block != window_numel) {
    return BadInput(fmt::format(
        "{}: feature blocks of {} floats do not fit the model's audio input of {} floats "
        "({} blocks of {} expected)",
        name, block, window_numel, blocks, window_numel / blocks));
  }
  return std::unique_ptr<FeatureWindows>(
      new FeatureWindows(std::move(features), rows, block, blocks));
}

void FeatureWindows::window(int64_t i, float* dst) const {
  const float* p = features_.data<float>();
  const int64_t half = blocks_ / 2;
  for (int64_t r = 0; r < blocks_; ++r) {
    const int64_t src = i - half + r;
    float* out = dst + r * block_;
    if (src < 0 || src >= rows_) {
      std::memset(out, 0, sizeof(float) * block_);
    } else {
      std::memcpy(out, p + src * block_, sizeof(float) * block_);
    }
  }
}

}  // namespace tr::render
