#include "nn/passes/passes.h"

namespace tr::nn {

Result<int> fuse_conv_activation(Graph& g) {
  int fused = 0;
  const auto uses = g.use_counts();
  for (Node& act : g.nodes) {
    // Match: Relu / LeakyRelu reading a Conv or FusedConv without activation.
    if (act.removed || (act.op != OpKind::kRelu && act.op != OpKind::kLeakyRelu)) continue;
    const ValueId conv_out = act.input(0);
    if (conv_out == kNoId || act.output(0) == kNoId) continue;
    const NodeId conv_id = g.values[conv_out].producer;
    if (conv_id == kNoId) continue;
    Node& conv = g.nodes[conv_id];
    if (conv.removed || (conv.op != OpKind::kConv && conv.op != OpKind::kFusedConv)) continue;
    if (!conv.attr_string("activation", "").empty()) continue;
    // Check: the conv output has no other reader.
    if (uses[conv_out] != 1) continue;
    // Rewrite.
    conv.op = OpKind::kFusedConv;
    conv.set_attr("activation", std::string(act.op == OpKind::kRelu ? "Relu" : "LeakyRelu"));
    if (act.op == OpKind::kLeakyRelu) conv.set_attr("alpha", act.attr_float("alpha", 0.01f));
    conv.outputs[0] = act.output(0);
    g.values[act.output(0)].producer = conv_id;
    act.removed = true;
    ++fused;
  }
  if (fused) TR_RETURN_IF_ERROR(g.compact());
  return fused;
}

}  // namespace tr::nn
