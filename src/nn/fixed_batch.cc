// Fixed batch 1 -> dynamic, when shape inference proves the graph never mixes samples.
#include "nn/fixed_batch.h"

#include "nn/ops/infer.h"

namespace tr::nn {

namespace {

bool is_float(DType t) {
  return t == DType::kFloat32 || t == DType::kFloat16 || t == DType::kFloat64;
}

// Shapes of every value with the inputs' leading dimension set to `batch`.
Result<std::vector<Shape>> shapes_at(const Graph& g, int64_t batch) {
  Graph copy = g;  // shares the weights
  for (ValueId v : copy.inputs) copy.values[v].shape[0] = batch;
  TR_RETURN_IF_ERROR(infer_shapes(copy));
  std::vector<Shape> out(copy.values.size());
  for (size_t v = 0; v < copy.values.size(); ++v) out[v] = copy.values[v].shape;
  return out;
}

}  // namespace

Result<bool> relax_fixed_batch(Graph& g, std::string* why) {
  why->clear();
  if (g.inputs.empty()) return false;
  for (ValueId v : g.inputs) {
    const Value& val = g.values[v];
    if (!val.shape_known || val.shape.empty()) {
      *why = "input '" + val.name + "' has no leading (batch) dimension";
      return false;
    }
    if (val.shape[0] < 0) return false;  // already dynamic
    if (val.shape[0] != 1) {
      *why = "only a fixed batch of 1 is made dynamic";
      return false;
    }
    if (!val.shape_concrete()) {
      *why = "input '" + val.name + "' has dynamic dimensions besides the batch";
      return false;
    }
  }
  auto base = shapes_at(g, 1);
  if (!base.ok()) {  // e.g. shapes known only per run: nothing to prove agnosticism with
    *why = "shape inference fails at batch 1: " + base.error().message;
    return false;
  }
  for (int64_t batch : {2, 3}) {
    auto at = shapes_at(g, batch);
    if (!at.ok()) {
      *why = "at batch " + std::to_string(batch) + " shape inference fails: " + at.error().message;
      return false;
    }
    for (size_t v = 0; v < g.values.size(); ++v) {
      const Value& val = g.values[v];
      // Constants hold no samples; int64 values are shape arithmetic, judged by the float
      // activations they shape.
      if (val.is_constant() || !is_float(val.dtype)) continue;
      const Shape& one = (*base)[v];
      const Shape& b = (*at)[v];
      bool keeps = !one.empty() && b.size() == one.size() && one[0] == 1 && b[0] == batch;
      for (size_t d = 1; keeps && d < one.size(); ++d) keeps = b[d] == one[d];
      if (!keeps) {
        const std::string node =
            val.producer == kNoId ? std::string("input") : g.nodes[val.producer].describe();
        *why = node + " gives '" + val.name + "' the shape " + shape_str(b) + " at batch " +
               std::to_string(batch) + " (" + shape_str(one) +
               " at batch 1): the graph does "
               "not keep the batch as its leading dimension";
        return false;
      }
    }
  }
  for (ValueId v : g.inputs) g.values[v].shape[0] = -1;
  return true;
}

}  // namespace tr::nn
