#include <cmath>

#include "nn/passes/passes.h"

namespace tr::nn {

// conv(x, W) + B followed by BN(scale, beta, mean, var, eps) equals
// conv(x, W * k) + (B - mean) * k + beta with k = scale / sqrt(var + eps), per out channel.
Result<int> fold_batchnorm(Graph& g) {
  int folded = 0;
  const auto uses = g.use_counts();
  for (Node& bn : g.nodes) {
    // Match: BN whose input is produced by a Conv (not fused: a fused activation or
    // residual would sit between the conv and the BN).
    if (bn.removed || bn.op != OpKind::kBatchNormalization || bn.input(0) == kNoId) continue;
    const ValueId conv_out = bn.input(0);
    const NodeId conv_id = g.values[conv_out].producer;
    if (conv_id == kNoId) continue;
    Node& conv = g.nodes[conv_id];
    if (conv.removed || conv.op != OpKind::kConv) continue;
    // Check: the conv output feeds only this BN; every parameter is a float32 constant of
    // the right size; BN has only its first output.
    if (uses[conv_out] != 1) continue;
    bool constant_params = true;
    for (size_t i = 1; i < 5; ++i) {
      ValueId v = bn.input(i);
      constant_params = constant_params && v != kNoId && g.values[v].is_constant() &&
                        g.values[v].constant.dtype() == DType::kFloat32;
    }
    const ValueId w_id = conv.input(1), b_id = conv.input(2);
    if (!constant_params || w_id == kNoId || !g.values[w_id].is_constant()) continue;
    if (b_id != kNoId && !g.values[b_id].is_constant()) continue;
    bool extra_outputs = false;
    for (size_t o = 1; o < bn.outputs.size(); ++o) extra_outputs |= bn.outputs[o] != kNoId;
    if (extra_outputs) continue;
    const Tensor& w = g.values[w_id].constant;
    if (w.dtype() != DType::kFloat32 || w.rank() < 1) continue;
    const int64_t out_c = w.dim(0);
    bool sizes_ok = true;
    for (size_t i = 1; i < 5; ++i) sizes_ok &= g.values[bn.input(i)].constant.numel() == out_c;
    if (b_id != kNoId) sizes_ok &= g.values[b_id].constant.numel() == out_c;
    if (!sizes_ok) continue;
    // Rewrite: new weight and bias constants (the originals may be shared elsewhere).
    const float* scale = g.values[bn.input(1)].constant.data<float>();
    const float* beta = g.values[bn.input(2)].constant.data<float>();
    const float* mean = g.values[bn.input(3)].constant.data<float>();
    const float* var = g.values[bn.input(4)].constant.data<float>();
    const float eps = bn.attr_float("epsilon", 1e-5f);
    Tensor new_w(DType::kFloat32, w.shape());
    Tensor new_b(DType::kFloat32, {out_c});
    const int64_t per_oc = w.numel() / out_c;
    const float* old_b = b_id != kNoId ? g.values[b_id].constant.data<float>() : nullptr;
    for (int64_t oc = 0; oc < out_c; ++oc) {
      const float k = scale[oc] / std::sqrt(var[oc] + eps);
      for (int64_t i = 0; i < per_oc; ++i) {
        new_w.data<float>()[oc * per_oc + i] = w.data<float>()[oc * per_oc + i] * k;
      }
      new_b.data<float>()[oc] = ((old_b ? old_b[oc] : 0.f) - mean[oc]) * k + beta[oc];
    }
    const ValueId nw = g.add_constant(g.unique_name(conv.name + "_w_bn"), std::move(new_w));
    const ValueId nb = g.add_constant(g.unique_name(conv.name + "_b_bn"), std::move(new_b));
    Node& conv_ref = g.nodes[conv_id];  // add_constant does not touch nodes; re-bind anyway
    conv_ref.inputs.resize(3);
    conv_ref.inputs[1] = nw;
    conv_ref.inputs[2] = nb;
    conv_ref.outputs[0] = bn.outputs[0];
    g.values[bn.outputs[0]].producer = conv_id;
    bn.removed = true;
    ++folded;
  }
  if (folded) TR_RETURN_IF_ERROR(g.compact());
  return folded;
}

}  // namespace tr::nn
