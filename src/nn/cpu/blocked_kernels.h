// Hand-written kernels on the cpu backend's activation layout, oneDNN's nChw8c:
// [N][ceil(C/8)][H][W][8] floats, channels padded to a multiple of 8. One pixel's 8 channels
// are one AVX2 vector, so spatial ops (resize) vectorise over channels with no gathers.
#pragma once

#include <cstdint>

#include "nn/ops/op_params.h"

namespace tr::nn::cpu {

inline constexpr int64_t kBlock = 8;
inline int64_t channel_blocks(int64_t c) { return (c + kBlock - 1) / kBlock; }

// Resize (linear or nearest) over H and W of a rank-4 nChw8c tensor; N and C unchanged.
// `out_batch_stride` (floats) lets the output be a channel slice of a larger tensor (a
// Concat's destination); pass 0 for a dense output.
void resize_nchw8c(const ResizeParams& p, const float* in, float* out,
                   int64_t out_batch_stride = 0);

}  // namespace tr::nn::cpu
