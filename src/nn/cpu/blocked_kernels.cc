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

inline float load(const float* p) { return *p; }
inline float load(const uint16_t* p) { return bf16_to_float(*p); }
inline void store(float* p, float v) { *p = v; }
inline void store(uint16_t* p, float v) { *p = float_to_bf16(v); }

// T: float or uint16_t (bfloat16 bits). BLOCK: 8 or 16 as a constant so the inner loops
// vectorise; 0 = any block (runtime `block`).
template <typename T, int BLOCK>
void resize_impl(const ResizeParams& p, int64_t block_rt, const T* in, T* out,
                 int64_t out_batch_stride) {
  const int64_t block = BLOCK ? BLOCK : block_rt;
  const int64_t n = p.in_shape[0], cb = channel_blocks(p.in_shape[1], block);
  const int64_t ih = p.in_shape[2], iw = p.in_shape[3];
  const int64_t oh = p.out_shape[2], ow = p.out_shape[3];
  const int64_t in_plane = ih * iw * block, out_plane = oh * ow * block;
  if (out_batch_stride == 0) out_batch_stride = cb * out_plane;

  if (p.mode == ResizeMode::kNearest) {
    std::vector<int64_t> ys(oh), xs(ow);
    for (int64_t o = 0; o < oh; ++o) ys[o] = p.nearest_index(2, o);
    for (int64_t o = 0; o < ow; ++o) xs[o] = p.nearest_index(3, o);
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t plane = 0; plane < n * cb; ++plane)
      for (int64_t y = 0; y < oh; ++y) {
        const int64_t b = plane / cb, c = plane % cb;
        const T* src = in + plane * in_plane + ys[y] * iw * block;
        T* dst = out + b * out_batch_stride + c * out_plane + y * ow * block;
        for (int64_t x = 0; x < ow; ++x) std::copy_n(src + xs[x] * block, block, dst + x * block);
      }
    return;
  }

  const std::vector<LinearTap> ty = linear_taps(p, 2), tx = linear_taps(p, 3);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t plane = 0; plane < n * cb; ++plane)
    for (int64_t y = 0; y < oh; ++y) {
      const int64_t b = plane / cb, c = plane % cb;
      const T* row0 = in + plane * in_plane + ty[y].i0 * iw * block;
      const T* row1 = in + plane * in_plane + ty[y].i1 * iw * block;
      const float wy1 = ty[y].w1, wy0 = 1.f - wy1;
      T* dst = out + b * out_batch_stride + c * out_plane + y * ow * block;
      for (int64_t x = 0; x < ow; ++x) {
        const T* a0 = row0 + tx[x].i0 * block;
        const T* a1 = row0 + tx[x].i1 * block;
        const T* b0 = row1 + tx[x].i0 * block;
        const T* b1 = row1 + tx[x].i1 * block;
        const float wx1 = tx[x].w1, wx0 = 1.f - wx1;
        T* d = dst + x * block;
#pragma omp simd
        for (int64_t k = 0; k < block; ++k)
          store(d + k, wy0 * (wx0 * load(a0 + k) + wx1 * load(a1 + k)) +
                           wy1 * (wx0 * load(b0 + k) + wx1 * load(b1 + k)));
      }
    }
}

template <typename T>
void resize_typed(const ResizeParams& p, int64_t block, const void* in, void* out, int64_t stride) {
  const T* src = static_cast<const T*>(in);
  T* dst = static_cast<T*>(out);
  if (block == 8) return resize_impl<T, 8>(p, block, src, dst, stride);
  if (block == 16) return resize_impl<T, 16>(p, block, src, dst, stride);
  resize_impl<T, 0>(p, block, src, dst, stride);
}

}  // namespace

void resize_blocked(const ResizeParams& p, int64_t block, bool bf16, const void* in, void* out,
                    int64_t out_batch_stride) {
  if (bf16)
    resize_typed<uint16_t>(p, block, in, out, out_batch_stride);
  else
    resize_typed<float>(p, block, in, out, out_batch_stride);
}

}  // namespace tr::nn::cpu
