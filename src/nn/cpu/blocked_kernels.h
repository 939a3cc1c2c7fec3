// Hand-written kernels on the cpu backend's activation layout, oneDNN's nChw<B>c:
// [N][ceil(C/B)][H][W][B] elements, channels padded to a multiple of the block B. The block
// is chosen per plan from the CPU (8: one AVX2 vector of floats; 16: one AVX-512 vector), so
// these kernels take it as a parameter. Elements are float32 or bfloat16 (the plan's
// activation type). One pixel's B channels are contiguous, so spatial ops (resize)
// vectorise over channels with no gathers.
#pragma once

#include <cstdint>
#include <cstring>

#include "nn/ops/op_params.h"

namespace tr::nn::cpu {

inline int64_t channel_blocks(int64_t c, int64_t block) { return (c + block - 1) / block; }

// bfloat16 <-> float32: the top half of a float, rounded to nearest even (NaN kept a NaN).
inline float bf16_to_float(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
inline uint16_t float_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

// Resize (linear or nearest) over H and W of a rank-4 nChw<block>c tensor; N and C unchanged.
// `bf16`: elements are bfloat16 (interpolated in float32), else float32. `out_batch_stride`
// (elements) lets the output be a channel slice of a larger tensor (a Concat's destination);
// pass 0 for a dense output.
void resize_blocked(const ResizeParams& p, int64_t block, bool bf16, const void* in, void* out,
                    int64_t out_batch_stride = 0);

}  // namespace tr::nn::cpu
