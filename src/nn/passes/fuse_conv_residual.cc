#include "nn/passes/passes.h"

namespace tr::nn {

namespace {
bool is_plain_conv(const Node& n) {
  if (n.op == OpKind::kConv) return true;
  return n.op == OpKind::kFusedConv && n.attr_string("activation", "").empty() &&
         n.input(3) == kNoId;
}
}  // namespace

Result<int> fuse_conv_residual(Graph& g) {
  int fused = 0;
  const auto uses = g.use_counts();
  for (Node& add : g.nodes) {
    if (add.removed || add.op != OpKind::kAdd || add.inputs.size() != 2) continue;
    const ValueId out = add.output(0);
    if (out == kNoId || !g.values[out].shape_known) continue;
    // Match: one operand comes from a plain conv (try the first operand, then the second).
    for (int side = 0; side < 2; ++side) {
      const ValueId conv_out = add.inputs[side], other = add.inputs[1 - side];
      const NodeId conv_id = g.values[conv_out].producer;
      if (conv_id == kNoId || conv_out == other) continue;
      Node& conv = g.nodes[conv_id];
      if (conv.removed || !is_plain_conv(conv)) continue;
      // Check: single use; no broadcasting (the residual has the output's shape).
      if (uses[conv_out] != 1) continue;
      const Value& ov = g.values[other];
      if (!ov.shape_known || ov.shape != g.values[out].shape ||
          g.values[conv_out].shape != g.values[out].shape || ov.dtype != DType::kFloat32) {
        continue;
      }
      // Rewrite.
      conv.op = OpKind::kFusedConv;
      conv.inputs.resize(4, kNoId);
      conv.inputs[3] = other;
      conv.outputs[0] = out;
      g.values[out].producer = conv_id;
      add.removed = true;
      ++fused;
      break;
    }
  }
  if (fused) TR_RETURN_IF_ERROR(g.compact());
  return fused;
}

}  // namespace tr::nn
