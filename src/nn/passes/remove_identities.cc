#include <algorithm>

#include "nn/passes/passes.h"

namespace tr::nn {

Result<int> remove_identities(Graph& g) {
  int removed = 0;
  for (Node& n : g.nodes) {
    // Match: a live Identity with one input and one output.
    if (n.removed || n.op != OpKind::kIdentity || n.input(0) == kNoId || n.output(0) == kNoId) {
      continue;
    }
    const ValueId in = n.input(0), out = n.output(0);
    // Check: a graph output keeps its own value when its source is a graph input (an
    // output may not alias an input slot of the executable).
    const bool out_is_output =
        std::find(g.outputs.begin(), g.outputs.end(), out) != g.outputs.end();
    const bool in_is_input = std::find(g.inputs.begin(), g.inputs.end(), in) != g.inputs.end();
    if (out_is_output && in_is_input) continue;
    // Rewrite.
    n.removed = true;
    g.replace_uses(out, in);
    ++removed;
  }
  if (removed) TR_RETURN_IF_ERROR(g.compact());
  return removed;
}

}  // namespace tr::nn
