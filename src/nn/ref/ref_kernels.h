// The reference backend: one plain-loop kernel per op (one file each, ref/<op>.cc). It is
// the correctness oracle for the other backends and the evaluator for constant folding.
#pragma once

#include <vector>

#include "common/status.h"
#include "common/tensor.h"
#include "nn/graph.h"
#include "nn/ops/op_params.h"

namespace tr::nn {

// A reference kernel: `in` holds the node's inputs (nullptr for omitted optional ones);
// `out` arrives allocated with the shapes and dtypes infer_node computed. A kernel may
// replace an output with a view of an input (Reshape) but never writes into its inputs.
using RefKernel = Status (*)(const Node& n, const std::vector<const Tensor*>& in,
                             std::vector<Tensor>& out);

#define TR_NN_REF_DECLARE_(name) \
  Status ref_##name(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out);
TR_NN_OPS(TR_NN_REF_DECLARE_)
#undef TR_NN_REF_DECLARE_

// Runs one node on concrete inputs: infers the outputs, allocates them, runs the kernel.
Result<std::vector<Tensor>> run_ref_node(const Node& n, const std::vector<const Tensor*>& in);

// Shared by the Conv and FusedConv kernels: y = act(conv(x, w) + b + residual).
void conv2d_reference(const ConvParams& p, const float* x, const float* w, const float* b,
                      const float* residual, float* y);

// Element-wise binary op with numpy broadcasting; float32, int64 and int32.
enum class BinaryOp { kAdd, kSub, kMul, kDiv };
Status binary_reference(const Node& n, BinaryOp op, const Tensor& a, const Tensor& b, Tensor& y);

}  // namespace tr::nn
