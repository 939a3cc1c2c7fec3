// Fixed-batch model files (issue 16): Ultralight's pth2onnx.py, like many exporters, writes
// the batch as a literal 1 in the inputs and outputs. Internal to src/nn; Model::load applies
// it with LoadOptions::relax_fixed_batch and reports through Model::fixed_batch().
#pragma once

#include <string>

#include "common/status.h"
#include "nn/graph.h"

namespace tr::nn {

// When every input of `g` declares a leading dimension of exactly 1 and the graph is
// batch-agnostic, rewrites those dimensions to -1 (dynamic) and returns true. Batch-agnostic
// is proven by shape inference at batch 1, 2 and 3: every float activation must keep the
// batch as its leading dimension with its other dimensions unchanged, so a Reshape, Concat,
// Slice, Gather, Pad or Transpose that bakes in or crosses the batch (e.g. Reshape to
// [1, -1]) keeps the file's batch. Returns false with *why saying what keeps it fixed; the
// graph is then unchanged. An input without a fixed batch of 1 is not an error (false,
// *why empty when the inputs are already dynamic).
Result<bool> relax_fixed_batch(Graph& g, std::string* why);

}  // namespace tr::nn
