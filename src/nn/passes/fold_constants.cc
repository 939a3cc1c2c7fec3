#include <algorithm>

#include "nn/ops/infer.h"
#include "nn/passes/passes.h"
#include "nn/ref/ref_kernels.h"

namespace tr::nn {

namespace {
// Largest output (elements) folded from smaller inputs: 1M values, 4 MB of float.
constexpr int64_t kMaxAmplifiedFold = int64_t{1} << 20;
}  // namespace

Result<int> fold_constants(Graph& g) {
  int folded = 0;
  for (Node& n : g.nodes) {
    if (n.removed) continue;
    // Match: every present input is constant, or a Shape of a concretely-shaped value.
    bool all_constant = true;
    for (ValueId v : n.inputs) {
      if (v != kNoId && !g.values[v].is_constant()) all_constant = false;
    }
    const bool shape_of_concrete =
        n.op == OpKind::kShape && n.input(0) != kNoId && g.values[n.input(0)].shape_concrete();
    if (!all_constant && !shape_of_concrete) continue;
    if (std::any_of(n.outputs.begin(), n.outputs.end(), [&](ValueId v) {
          return v != kNoId && std::find(g.inputs.begin(), g.inputs.end(), v) != g.inputs.end();
        })) {
      continue;
    }
    // Check: a node that amplifies its inputs (ConstantOfShape, Expand, Tile of a small
    // constant) is left to the runtime when its output would be large. Folding it would only
    // grow the model in memory, and a corrupt file could ask for gigabytes here (fuzzing).
    if (all_constant) {
      std::vector<InputInfo> info(n.inputs.size());
      int64_t input_elements = 0;
      for (size_t i = 0; i < n.inputs.size(); ++i) {
        if (n.inputs[i] == kNoId) continue;
        const Tensor& t = g.values[n.inputs[i]].constant;
        info[i] = {true, t.dtype(), t.shape(), &t};
        input_elements = std::max(input_elements, t.numel());
      }
      auto shapes = infer_node(n, info);
      if (!shapes.ok())
        return BadInput(g.name + ": while folding constants: " + shapes.error().message);
      if (std::any_of(shapes->begin(), shapes->end(), [&](const OutputInfo& o) {
            return shape_numel(o.shape) > std::max(input_elements, kMaxAmplifiedFold);
          })) {
        continue;
      }
    }
    // Rewrite: evaluate and turn the outputs into constants.
    std::vector<Tensor> outs;
    if (shape_of_concrete && !all_constant) {
      const Shape& s = g.values[n.input(0)].shape;
      const int64_t rank = static_cast<int64_t>(s.size());
      int64_t start = n.attr_int("start", 0), end = n.attr_int("end", rank);
      if (start < 0) start += rank;
      if (end < 0) end += rank;
      start = std::clamp<int64_t>(start, 0, rank);
      end = std::clamp<int64_t>(end, 0, rank);
      std::vector<int64_t> dims;
      for (int64_t i = start; i < end; ++i) dims.push_back(s[i]);
      outs.push_back(Tensor::i64({static_cast<int64_t>(dims.size())}, dims));
    } else {
      std::vector<const Tensor*> in;
      for (ValueId v : n.inputs) in.push_back(v == kNoId ? nullptr : &g.values[v].constant);
      auto r = run_ref_node(n, in);
      if (!r.ok()) return BadInput(g.name + ": while folding constants: " + r.error().message);
      outs = std::move(*r);
    }
    for (size_t o = 0; o < n.outputs.size() && o < outs.size(); ++o) {
      if (n.outputs[o] == kNoId) continue;
      Value& val = g.values[n.outputs[o]];
      val.constant = outs[o];
      val.dtype = outs[o].dtype();
      val.shape = outs[o].shape();
      val.shape_known = true;
      val.producer = kNoId;
    }
    n.removed = true;
    ++folded;
  }
  if (folded) TR_RETURN_IF_ERROR(g.compact());
  return folded;
}

}  // namespace tr::nn
