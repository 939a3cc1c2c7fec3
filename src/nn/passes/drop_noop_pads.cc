#include <algorithm>

#include "nn/ops/op_params.h"
#include "nn/passes/passes.h"

namespace tr::nn {

Result<int> drop_noop_pads(Graph& g) {
  int dropped = 0;
  for (Node& n : g.nodes) {
    if (n.removed || n.op != OpKind::kPad || n.input(0) == kNoId) continue;
    // Match: pads known (constant input or attribute) and all zero.
    std::vector<int64_t> pads;
    if (n.input(1) != kNoId) {
      const Value& p = g.values[n.input(1)];
      if (!p.is_constant()) continue;
      pads = tensor_to_i64(p.constant);
    } else {
      pads = n.attr_ints("pads");
    }
    if (pads.empty() || std::any_of(pads.begin(), pads.end(), [](int64_t v) { return v != 0; })) {
      continue;
    }
    // Check: the same graph-output/graph-input aliasing rule as for Identity.
    const ValueId in = n.input(0), out = n.output(0);
    const bool out_is_output =
        std::find(g.outputs.begin(), g.outputs.end(), out) != g.outputs.end();
    const bool in_is_input = std::find(g.inputs.begin(), g.inputs.end(), in) != g.inputs.end();
    if (out_is_output && in_is_input) continue;
    n.removed = true;
    g.replace_uses(out, in);
    ++dropped;
  }
  if (dropped) TR_RETURN_IF_ERROR(g.compact());
  return dropped;
}

}  // namespace tr::nn
