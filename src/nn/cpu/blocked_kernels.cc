#include "nn/cpu/blocked_kernels.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace tr::nn::cpu {

namespace {

// Source taps of one output coordinate for linear interpolation (clamped to the input like
// the reference and ONNX Runtime do).
struct LinearTap {
  int64_t i0, i1;
  float w1;  // weight of i1; i0 gets 1 - w1
};

std::vector<LinearTap> linear_taps(const ResizeParams& p, size_t dim) {
  const int64_t in_len = p.in_shape[dim], out_len = p.out_shape[dim];
  std::vector<LinearTap> taps(out_len);
  for (int64_t o = 0; o < out_len; ++o) {
    float c = std::clamp(p.source_coord(dim, o), 0.f, static_cast<float>(in_len - 1));
    int64_t i0 = std::min<int64_t>(static_cast<int64_t>(c), in_len - 1);
    taps[o] = {i0, std::min<int64_t>(i0 + 1, in_len - 1), c - static_cast<float>(i0)};
  }
  return taps;
}

}  // namespace

void resize_nchw8c(const ResizeParams& p, const float* in, float* out, int64_t out_batch_stride) {
  const int64_t n = p.in_shape[0], cb = channel_blocks(p.in_shape[1]);
  const int64_t ih = p.in_shape[2], iw = p.in_shape[3];
  const int64_t oh = p.out_shape[2], ow = p.out_shape[3];
  const int64_t in_plane = ih * iw * kBlock, out_plane = oh * ow * kBlock;
  if (out_batch_stride == 0) out_batch_stride = cb * out_plane;

  if (p.mode == ResizeMode::kNearest) {
    std::vector<int64_t> ys(oh), xs(ow);
    for (int64_t o = 0; o < oh; ++o) ys[o] = p.nearest_index(2, o);
    for (int64_t o = 0; o < ow; ++o) xs[o] = p.nearest_index(3, o);
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t plane = 0; plane < n * cb; ++plane)
      for (int64_t y = 0; y < oh; ++y) {
        const int64_t b = plane / cb, c = plane % cb;
        const float* src = in + plane * in_plane + ys[y] * iw * kBlock;
        float* dst = out + b * out_batch_stride + c * out_plane + y * ow * kBlock;
        for (int64_t x = 0; x < ow; ++x)
          std::copy_n(src + xs[x] * kBlock, kBlock, dst + x * kBlock);
      }
    return;
  }

  const std::vector<LinearTap> ty = linear_taps(p, 2), tx = linear_taps(p, 3);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t plane = 0; plane < n * cb; ++plane)
    for (int64_t y = 0; y < oh; ++y) {
      const int64_t b = plane / cb, c = plane % cb;
      const float* row0 = in + plane * in_plane + ty[y].i0 * iw * kBlock;
      const float* row1 = in + plane * in_plane + ty[y].i1 * iw * kBlock;
      const float wy1 = ty[y].w1, wy0 = 1.f - wy1;
      float* dst = out + b * out_batch_stride + c * out_plane + y * ow * kBlock;
      for (int64_t x = 0; x < ow; ++x) {
        const float* a0 = row0 + tx[x].i0 * kBlock;
        const float* a1 = row0 + tx[x].i1 * kBlock;
        const float* b0 = row1 + tx[x].i0 * kBlock;
        const float* b1 = row1 + tx[x].i1 * kBlock;
        const float wx1 = tx[x].w1, wx0 = 1.f - wx1;
        float* d = dst + x * kBlock;
#pragma omp simd
        for (int64_t k = 0; k < kBlock; ++k)
          d[k] = wy0 * (wx0 * a0[k] + wx1 * a1[k]) + wy1 * (wx0 * b0[k] + wx1 * b1[k]);
      }
    }
}

}  // namespace tr::nn::cpu
