// Runs a CudaPlan on the CPU with plain loops, over an arena laid out exactly as the CUDA
// executor lays out device memory (same offsets, views, pitches, packed weights, im2col
// scratch). Each stored activation, weight and bias is rounded to the plan's storage type,
// with fp32 accumulation as the GEMMs do.
//
// Why: without a GPU this is how CI checks that a plan is right (a buffer reused while still
// live, a wrong slice offset or a mis-packed weight shows up as a wrong output against the
// reference backend), and how the fp16/bf16 rounding error of a model is estimated before a
// device run. The CUDA kernels implement the same per-step semantics (kernels.cu).
#pragma once

#include <vector>

#include "common/status.h"
#include "common/tensor.h"
#include "nn/cuda/plan.h"

namespace tr::nn::cuda {

// `inputs` in the graph's input order, float32 NCHW with the plan's shapes.
Result<std::vector<Tensor>> emulate_plan(const CudaPlan& plan, const std::vector<Tensor>& inputs);

// float -> storage type -> float, round to nearest even (fp16 overflows to infinity).
float round_to_storage(float f, Storage s);

}  // namespace tr::nn::cuda
