// Shape inference: per node (infer_node, used by the reference kernels to size their
// outputs and by infer_shapes) and per graph.
#pragma once

#include <vector>

#include "common/status.h"
#include "common/tensor.h"
#include "nn/graph.h"

namespace tr::nn {

struct InputInfo {
  bool present = false;  // false for an omitted optional input
  DType dtype = DType::kFloat32;
  Shape shape;                    // concrete
  const Tensor* value = nullptr;  // the contents when known (constants, folded shapes)
};

struct OutputInfo {
  DType dtype = DType::kFloat32;
  Shape shape;
};

// Output dtypes and shapes of `n` for these inputs. Ops whose output shape depends on an
// input's contents (Reshape, Pad, Slice, Resize, ConstantOfShape, Squeeze/Unsqueeze axes,
// Gather indices rank...) need that input's value; without it they fail with a message.
Result<std::vector<OutputInfo>> infer_node(const Node& n, const std::vector<InputInfo>& in);

// Gives every value of `g` a concrete shape and dtype, from the shapes already set on
// g.inputs (all concrete). Small values computable from constants (shape arithmetic) are
// evaluated on the fly with the reference kernels so that shapes depending on them resolve;
// `g` itself is not rewritten (fold_constants does that).
Status infer_shapes(Graph& g);

// True when input `i` of `n` is read for its contents to size the output (Resize roi/scales/
// sizes, Reshape shape, Pad pads, Slice starts..., Squeeze/Unsqueeze axes, ConstantOfShape),
// so the output shape can't be known from input shapes alone.
bool is_shape_operand(const Node& n, size_t i);
// Per entry of g.inputs: true when some node reads that graph input as a shape operand.
// Session bakes such (small) inputs into each plan as constants, keyed by their values.
std::vector<bool> shape_operand_inputs(const Graph& g);

}  // namespace tr::nn
