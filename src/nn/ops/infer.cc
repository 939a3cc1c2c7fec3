#include "nn/ops/infer.h"

#include <algorithm>

#include "nn/ops/op_params.h"
#include "nn/ref/ref_kernels.h"

namespace tr::nn {

namespace {

using Outs = Result<std::vector<OutputInfo>>;

Outs one(DType t, Shape s) { return std::vector<OutputInfo>{OutputInfo{t, std::move(s)}}; }

Status need_inputs(const Node& n, const std::vector<InputInfo>& in, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    if (i >= in.size() || !in[i].present) {
      return BadInput(n.describe() + ": required input " + std::to_string(i) + " is missing");
    }
  }
  return Status::Ok();
}

Status need_value(const Node& n, const std::vector<InputInfo>& in, size_t i, const char* what) {
  if (i >= in.size() || !in[i].present || !in[i].value) {
    return BadInput(n.describe() + ": its " + what +
                    " input must be a constant (or computable from the input shapes)");
  }
  return Status::Ok();
}

const Tensor* value_or_null(const std::vector<InputInfo>& in, size_t i) {
  return i < in.size() && in[i].present ? in[i].value : nullptr;
}

Outs infer_conv(const Node& n, const std::vector<InputInfo>& in) {
  TR_RETURN_IF_ERROR(need_inputs(n, in, 2));
  TR_ASSIGN_OR_RETURN(ConvParams p, conv_params(n, in[0].shape, in[1].shape));
  if (in.size() > 2 && in[2].present && shape_numel(in[2].shape) != p.out_c) {
    return BadInput(n.describe() + ": bias " + shape_str(in[2].shape) + " does not match " +
                    std::to_string(p.out_c) + " output channels");
  }
  if (in.size() > 3 && in[3].present && in[3].shape != p.output_shape()) {
    return BadInput(n.describe() + ": residual " + shape_str(in[3].shape) +
                    " does not match the output " + shape_str(p.output_shape()));
  }
  return one(DType::kFloat32, p.output_shape());
}

Outs infer_conv_transpose(const Node& n, const std::vector<InputInfo>& in) {
  TR_RETURN_IF_ERROR(need_inputs(n, in, 2));
  TR_ASSIGN_OR_RETURN(ConvTransposeParams p, conv_transpose_params(n, in[0].shape, in[1].shape));
  if (in.size() > 2 && in[2].present && shape_numel(in[2].shape) != p.out_c) {
    return BadInput(n.describe() + ": bias " + shape_str(in[2].shape) + " does not match " +
                    std::to_string(p.out_c) + " output channels");
  }
  return one(DType::kFloat32, p.output_shape());
}

Outs infer_batchnorm(const Node& n, const std::vector<InputInfo>& in) {
  TR_RETURN_IF_ERROR(need_inputs(n, in, 5));
  if (in[0].shape.size() < 2) return BadInput(n.describe() + ": input rank must be >= 2");
  for (size_t i = 1; i < 5; ++i) {
    if (shape_numel(in[i].shape) != in[0].shape[1]) {
      return BadInput(n.describe() + ": parameter " + std::to_string(i) + " has shape " +
                      shape_str(in[i].shape) + ", expected " + std::to_string(in[0].shape[1]) +
                      " values");
    }
  }
  if (n.attr_int("training_mode", 0) != 0) {
    return BadInput(n.describe() + ": training mode is not supported");
  }
  return one(in[0].dtype, in[0].shape);
}

Outs infer_binary(const Node& n, const std::vector<InputInfo>& in) {
  TR_RETURN_IF_ERROR(need_inputs(n, in, 2));
  if (in[0].dtype != in[1].dtype) {
    return BadInput(n.describe() + ": inputs differ in type (" + dtype_name(in[0].dtype) + " vs " +
                    dtype_name(in[1].dtype) + ")");
  }
  auto s = broadcast_shapes(in[0].shape, in[1].shape);
  if (!s.ok()) return BadInput(n.describe() + ": " + s.error().message);
  return one(in[0].dtype, *s);
}

Outs infer_concat(const Node& n, const std::vector<InputInfo>& in) {
  if (in.empty()) return BadInput(n.describe() + ": no inputs");
  TR_RETURN_IF_ERROR(need_inputs(n, in, in.size()));
  if (!n.has_attr("axis")) return BadInput(n.describe() + ": missing axis attribute");
  const int64_t rank = static_cast<int64_t>(in[0].shape.size());
  TR_ASSIGN_OR_RETURN(int64_t axis, normalize_axis(n, n.attr_int("axis", 0), rank));
  Shape out = in[0].shape;
  out[axis] = 0;
  for (const auto& i : in) {
    if (static_cast<int64_t>(i.shape.size()) != rank || i.dtype != in[0].dtype) {
      return BadInput(n.describe() + ": inputs differ in rank or type");
    }
    for (int64_t d = 0; d < rank; ++d) {
      if (d != axis && i.shape[d] != in[0].shape[d]) {
        return BadInput(n.describe() + ": input shapes " + shape_str(in[0].shape) + " and " +
                        shape_str(i.shape) + " differ outside axis " + std::to_string(axis));
      }
    }
    out[axis] += i.shape[axis];
  }
  return one(in[0].dtype, out);
}

Outs infer_resize(const Node& n, const std::vector<InputInfo>& in) {
  TR_RETURN_IF_ERROR(need_inputs(n, in, 1));
  const Tensor* scales = value_or_null(in, 2);
  const Tensor* sizes = value_or_null(in, 3);
  if ((in.size() > 2 && in[2].present && !scales && shape_numel(in[2].shape) > 0) ||
      (in.size() > 3 && in[3].present && !sizes)) {
    return BadInput(n.describe() + ": scales/sizes must be constants");
  }
  TR_ASSIGN_OR_RETURN(ResizeParams p, resize_params(n, in[0].shape, scales, sizes));
  return one(in[0].dtype, p.out_shape);
}

Outs infer_pad(const Node& n, const std::vector<InputInfo>& in) {
  TR_RETURN_IF_ERROR(need_inputs(n, in, 1));
  const Tensor* pads = nullptr;
  if (in.size() > 1 && in[1].present) {
    TR_RETURN_IF_ERROR(need_value(n, in, 1, "pads"));
    pads = in[1].value;
  }
  TR_ASSIGN_OR_RETURN(PadParams p, pad_params(n, in[0].shape, pads, value_or_null(in, 2)));
  return one(in[0].dtype, p.out_shape);
}

Outs infer_reshape(const Node& n, const std::vector<InputInfo>& in) {
  TR_RETURN_IF_ERROR(need_inputs(n, in, 2));
  TR_RETURN_IF_ERROR(need_value(n, in, 1, "shape"));
  auto spec = tensor_to_i64(*in[1].value);
  const bool allowzero = n.attr_int("allowzero", 0) != 0;
  Shape out(spec.size());
  int64_t known = 1;
  int infer_at = -1;
  for (size_t i = 0; i < spec.size(); ++i) {
    if (spec[i] == -1) {
      if (infer_at >= 0) return BadInput(n.describe() + ": more than one -1 in shape");
      infer_at = static_cast<int>(i);
      continue;
    }
    if (spec[i] == 0 && !allowzero) {
      if (i >= in[0].shape.size()) return BadInput(n.describe() + ": 0 beyond the input rank");
      out[i] = in[0].shape[i];
    } else if (spec[i] < 0) {
      return BadInput(n.describe() + ": negative size in shape");
    } else {
      out[i] = spec[i];
    }
    if (__builtin_mul_overflow(known, out[i], &known)) {
      return BadInput(n.describe() + ": shape " + shape_str(out) + " is too large");
    }
  }
  const int64_t total = shape_numel(in[0].shape);
  if (infer_at >= 0) {
    if (known == 0 || total % known != 0) {
      return BadInput(n.describe() + ": cannot reshape " + shape_str(in[0].shape));
    }
    out[infer_at] = total / known;
  }
  if (shape_numel(out) != total) {
    return BadInput(n.describe() + ": cannot reshape " + shape_str(in[0].shape) + " to " +
                    shape_str(out));
  }
  return one(in[0].dtype, out);
}

Outs infer_flatten(const Node& n, const std::vector<InputInfo>& in) {
  TR_RETURN_IF_ERROR(need_inputs(n, in, 1));
  const auto& s = in[0].shape;
  int64_t rank = static_cast<int64_t>(s.size());
  int64_t axis = n.attr_int("axis", 1);
  if (axis < 0) axis += rank;
  if (axis < 0 || axis > rank) return BadInput(n.describe() + ": axis out of range");
  // Saturating products (shape_numel): a zero elsewhere cannot hide an overflow here.
  const int64_t a = shape_numel(Shape(s.begin(), s.begin() + axis));
  const int64_t b = shape_numel(Shape(s.begin() + axis, s.end()));
  return one(in[0].dtype, {a, b});
}

Result<std::vector<int64_t>> axes_of(const Node& n, const std::vector<InputInfo>& in) {
  if (n.has_attr("axes")) return n.attr_ints("axes");
  if (in.size() > 1 && in[1].present) {
    TR_RETURN_IF_ERROR(need_value(n, in, 1, "axes"));
    return tensor_to_i64(*in[1].value);
  }
  return std::vector<int64_t>{};
}

Outs infer_squeeze(const Node& n, const std::vector<InputInfo>& in) {
  TR_RETURN_IF_ERROR(need_inputs(n, in, 1));
  TR_ASSIGN_OR_RETURN(auto axes, axes_of(n, in));
  const auto& s = in[0].shape;
  const int64_t rank = static_cast<int64_t>(s.size());
  std::vector<bool> drop(rank, false);
  if (axes.empty()) {
    for (int64_t i = 0; i < rank; ++i) drop[i] = s[i] == 1;
  }
  for (int64_t a : axes) {
    TR_ASSIGN_OR_RETURN(int64_t ax, normalize_axis(n, a, rank));
    if (s[ax] != 1) return BadInput(n.describe() + ": cannot squeeze a dimension that is not 1");
    drop[ax] = true;
  }
  Shape out;
  for (int64_t i = 0; i < rank; ++i) {
    if (!drop[i]) out.push_back(s[i]);
  }
  return one(in[0].dtype, out);
}

Outs infer_unsqueeze(const Node& n, const std::vector<InputInfo>& in) {
  TR_RETURN_IF_ERROR(need_inputs(n, in, 1));
  TR_ASSIGN_OR_RETURN(auto axes, axes_of(n, in));
  if (axes.empty()) return BadInput(n.describe() + ": needs axes");
  const int64_t out_rank = static_cast<int64_t>(in[0].shape.size() + axes.size());
  std::vector<bool> inserted(out_rank, false);
  for (int64_t a : axes) {
    TR_ASSIGN_OR_RETURN(int64_t ax, normalize_axis(n, a, out_rank));
    if (inserted[ax]) return BadInput(n.describe() + ": repeated axis");
    inserted[ax] = true;
  }
  Shape out;
  size_t next = 0;
  for (int64_t i = 0; i < out_rank; ++i) out.push_back(inserted[i] ? 1 : in[0].shape[next++]);
  return one(in[0].dtype, out);
}

Outs infer_transpose(const Node& n, const std::vector<InputInfo>& in) {
  TR_RETURN_IF_ERROR(need_inputs(n, in, 1));
  const auto& s = in[0].shape;
  const int64_t rank = static_cast<int64_t>(s.size());
  std::vector<int64_t> perm = n.attr_ints("perm");
  if (perm.empty()) {
    for (int64_t i = rank - 1; i >= 0; --i) perm.push_back(i);
  }
  if (static_cast<int64_t>(perm.size()) != rank) return BadInput(n.describe() + ": bad perm");
  std::vector<bool> seen(rank, false);
  Shape out(rank);
  for (int64_t i = 0; i < rank; ++i) {
    if (perm[i] < 0 || perm[i] >= rank || seen[perm[i]]) {
      return BadInput(n.describe() + ": bad perm");
    }
    seen[perm[i]] = true;
    out[i] = s[perm[i]];
  }
  return one(in[0].dtype, out);
}

Outs infer_shape(const Node& n, const std::vector<InputInfo>& in) {
  TR_RETURN_IF_ERROR(need_inputs(n, in, 1));
  const int64_t rank = static_cast<int64_t>(in[0].shape.size());
  int64_t start = n.attr_int("start", 0), end = n.attr_int("end", rank);
  if (start < 0) start += rank;
  if (end < 0) end += rank;
  start = std::clamp<int64_t>(start, 0, rank);
  end = std::clamp<int64_t>(end, 0, rank);
  return one(DType::kInt64, {std::max<int64_t>(0, end - start)});
}

Outs infer_gather(const Node& n, const std::vector<InputInfo>& in) {
  TR_RETURN_IF_ERROR(need_inputs(n, in, 2));
  const auto& s = in[0].shape;
  const int64_t rank = static_cast<int64_t>(s.size());
  TR_ASSIGN_OR_RETURN(int64_t axis, normalize_axis(n, n.attr_int("axis", 0), rank));
  if (in[1].dtype != DType::kInt64 && in[1].dtype != DType::kInt32) {
    return BadInput(n.describe() + ": indices must be int64 or int32");
  }
  Shape out(s.begin(), s.begin() + axis);
  out.insert(out.end(), in[1].shape.begin(), in[1].shape.end());
  out.insert(out.end(), s.begin() + axis + 1, s.end());
  return one(in[0].dtype, out);
}

Outs infer_cast(const Node& n, const std::vector<InputInfo>& in) {
  TR_RETURN_IF_ERROR(need_inputs(n, in, 1));
  if (!n.has_attr("to")) return BadInput(n.describe() + ": missing 'to'");
  auto t = dtype_from_onnx(static_cast<int32_t>(n.attr_int("to", 1)));
  if (!t.ok()) return BadInput(n.describe() + ": " + t.error().message);
  if (*t == DType::kFloat16 || in[0].dtype == DType::kFloat16) {
    return BadInput(n.describe() + ": float16 is not supported");
  }
  return one(*t, in[0].shape);
}

Outs infer_constant_of_shape(const Node& n, const std::vector<InputInfo>& in) {
  TR_RETURN_IF_ERROR(need_inputs(n, in, 1));
  TR_RETURN_IF_ERROR(need_value(n, in, 0, "shape"));
  Shape out = tensor_to_i64(*in[0].value);
  for (int64_t d : out) {
    if (d < 0) return BadInput(n.describe() + ": negative dimension");
  }
  const Tensor* v = n.attr_tensor("value");
  return one(v ? v->dtype() : DType::kFloat32, out);
}

Outs infer_slice(const Node& n, const std::vector<InputInfo>& in) {
  TR_RETURN_IF_ERROR(need_inputs(n, in, 3));
  TR_RETURN_IF_ERROR(need_value(n, in, 1, "starts"));
  TR_RETURN_IF_ERROR(need_value(n, in, 2, "ends"));
  if (in.size() > 3 && in[3].present) TR_RETURN_IF_ERROR(need_value(n, in, 3, "axes"));
  if (in.size() > 4 && in[4].present) TR_RETURN_IF_ERROR(need_value(n, in, 4, "steps"));
  TR_ASSIGN_OR_RETURN(SliceParams p, slice_params(n, in[0].shape, *in[1].value, *in[2].value,
                                                  value_or_null(in, 3), value_or_null(in, 4)));
  return one(in[0].dtype, p.out_shape);
}

Outs infer_constant(const Node& n) {
  if (const Tensor* t = n.attr_tensor("value")) return one(t->dtype(), t->shape());
  if (n.has_attr("value_float")) return one(DType::kFloat32, {});
  if (n.has_attr("value_int")) return one(DType::kInt64, {});
  if (n.has_attr("value_floats")) {
    return one(DType::kFloat32, {static_cast<int64_t>(n.attr_floats("value_floats").size())});
  }
  if (n.has_attr("value_ints")) {
    return one(DType::kInt64, {static_cast<int64_t>(n.attr_ints("value_ints").size())});
  }
  return BadInput(n.describe() + ": no supported value attribute");
}

Outs infer_same(const Node& n, const std::vector<InputInfo>& in) {
  TR_RETURN_IF_ERROR(need_inputs(n, in, 1));
  return one(in[0].dtype, in[0].shape);
}

}  // namespace

namespace {

// Largest dimension and element count a value may have: 2^36 floats = 256 GB, far beyond
// any real model. With every dimension and every shape attribute bounded, the ops' shape
// arithmetic (sums and products of a few such numbers) cannot overflow int64.
constexpr int64_t kMaxDimension = int64_t{1} << 36;

bool shape_in_range(const Shape& s) {
  // Each dimension is bounded too (an empty tensor has numel 0 whatever its other
  // dimensions are).
  return shape_numel(s) <= kMaxDimension &&
         std::all_of(s.begin(), s.end(), [](int64_t d) { return d >= 0 && d <= kMaxDimension; });
}

Result<std::vector<OutputInfo>> infer_node_unchecked(const Node& n,
                                                     const std::vector<InputInfo>& in) {
  switch (n.op) {
    case OpKind::kConv:
    case OpKind::kFusedConv:
      return infer_conv(n, in);
    case OpKind::kConvTranspose:
      return infer_conv_transpose(n, in);
    case OpKind::kBatchNormalization:
      return infer_batchnorm(n, in);
    case OpKind::kRelu:
    case OpKind::kLeakyRelu:
    case OpKind::kSigmoid:
    case OpKind::kIdentity:
      return infer_same(n, in);
    case OpKind::kAdd:
    case OpKind::kSub:
    case OpKind::kMul:
    case OpKind::kDiv:
      return infer_binary(n, in);
    case OpKind::kConcat:
      return infer_concat(n, in);
    case OpKind::kResize:
      return infer_resize(n, in);
    case OpKind::kPad:
      return infer_pad(n, in);
    case OpKind::kReshape:
      return infer_reshape(n, in);
    case OpKind::kFlatten:
      return infer_flatten(n, in);
    case OpKind::kSqueeze:
      return infer_squeeze(n, in);
    case OpKind::kUnsqueeze:
      return infer_unsqueeze(n, in);
    case OpKind::kTranspose:
      return infer_transpose(n, in);
    case OpKind::kShape:
      return infer_shape(n, in);
    case OpKind::kGather:
      return infer_gather(n, in);
    case OpKind::kCast:
      return infer_cast(n, in);
    case OpKind::kConstantOfShape:
      return infer_constant_of_shape(n, in);
    case OpKind::kSlice:
      return infer_slice(n, in);
    case OpKind::kConstant:
      return infer_constant(n);
  }
  return BadInput(n.describe() + ": no shape inference for this op");
}

}  // namespace

Result<std::vector<OutputInfo>> infer_node(const Node& n, const std::vector<InputInfo>& in) {
  TR_ASSIGN_OR_RETURN(auto outs, infer_node_unchecked(n, in));
  // A malformed model can ask for absurd sizes (found by fuzzing): refuse them here, before
  // anyone (infer_shapes, the reference kernels, constant folding) allocates them.
  for (const OutputInfo& o : outs) {
    if (!shape_in_range(o.shape)) {
      return BadInput(n.describe() + ": output shape " + shape_str(o.shape) +
                      " is negative or too large");
    }
  }
  return outs;
}

namespace {
// Values larger than this are not evaluated during inference: shape arithmetic is tiny,
// and evaluating weight-sized sub-graphs is fold_constants' job.
constexpr int64_t kMaxEvaluatedElements = 1 << 16;
}  // namespace

Status infer_shapes(Graph& g) {
  std::vector<Tensor> known(g.values.size());
  for (size_t v = 0; v < g.values.size(); ++v) {
    if (g.values[v].is_constant()) known[v] = g.values[v].constant;
  }
  for (ValueId v : g.inputs) {
    if (!g.values[v].shape_concrete()) {
      return BadInput(g.name + ": input '" + g.values[v].name + "' has no concrete shape");
    }
    const Shape& s = g.values[v].shape;
    if (!shape_in_range(s)) {
      return BadInput(g.name + ": input '" + g.values[v].name + "' has shape " + shape_str(s) +
                      ", which is too large");
    }
  }
  for (const Node& n : g.nodes) {
    if (n.removed) continue;
    std::vector<InputInfo> in(n.inputs.size());
    bool all_known = true;
    int64_t largest = 0;
    for (size_t i = 0; i < n.inputs.size(); ++i) {
      ValueId v = n.inputs[i];
      if (v == kNoId) continue;
      const Value& val = g.values[v];
      if (!val.shape_known) {
        return RuntimeError(g.name + ": " + n.describe() + ": input '" + val.name +
                            "' has no shape (graph not in topological order?)");
      }
      in[i].present = true;
      in[i].dtype = val.dtype;
      in[i].shape = val.shape;
      in[i].value = known[v].empty() ? nullptr : &known[v];
      all_known = all_known && in[i].value;
      largest = std::max(largest, shape_numel(val.shape));
    }
    auto outs = infer_node(n, in);
    if (!outs.ok()) return BadInput(g.name + ": " + outs.error().message);
    if (outs->size() < n.outputs.size()) {
      return BadInput(g.name + ": " + n.describe() + " has more outputs than supported");
    }
    for (size_t o = 0; o < n.outputs.size(); ++o) {
      if (n.outputs[o] == kNoId) continue;
      Value& val = g.values[n.outputs[o]];
      val.dtype = (*outs)[o].dtype;
      val.shape = (*outs)[o].shape;
      val.shape_known = true;
    }
    // Propagate contents where cheap, so that shapes computed from shapes resolve.
    if (n.outputs.empty() || n.outputs[0] == kNoId) continue;
    const ValueId out0 = n.outputs[0];
    if (n.op == OpKind::kShape) {
      // Shape needs only the shape: evaluate it directly.
      const Shape& s = in[0].shape;
      const int64_t rank = static_cast<int64_t>(s.size());
      int64_t start = n.attr_int("start", 0), end = n.attr_int("end", rank);
      if (start < 0) start += rank;
      if (end < 0) end += rank;
      start = std::clamp<int64_t>(start, 0, rank);
      end = std::clamp<int64_t>(end, 0, rank);
      std::vector<int64_t> dims;
      for (int64_t i = start; i < end; ++i) dims.push_back(s[i]);
      known[out0] = Tensor::i64({static_cast<int64_t>(dims.size())}, dims);
      continue;
    }
    bool small_output = shape_numel(g.values[out0].shape) <= kMaxEvaluatedElements;
    if (all_known && largest <= kMaxEvaluatedElements && small_output) {
      std::vector<const Tensor*> ptrs;
      for (const auto& i : in) ptrs.push_back(i.value);
      auto r = run_ref_node(n, ptrs);
      if (!r.ok()) return BadInput(g.name + ": " + r.error().message);
      for (size_t o = 0; o < n.outputs.size() && o < r->size(); ++o) {
        if (n.outputs[o] != kNoId) known[n.outputs[o]] = (*r)[o];
      }
    }
  }
  return Status::Ok();
}

bool is_shape_operand(const Node& n, size_t i) {
  switch (n.op) {
    case OpKind::kResize:  // roi, scales, sizes
    case OpKind::kPad:     // pads, constant_value, axes
    case OpKind::kSlice:   // starts, ends, axes, steps
      return i >= 1;
    case OpKind::kReshape:
    case OpKind::kSqueeze:
    case OpKind::kUnsqueeze:
      return i == 1;
    case OpKind::kConstantOfShape:
      return i == 0;
    default:
      return false;
  }
}

std::vector<bool> shape_operand_inputs(const Graph& g) {
  std::vector<bool> out(g.inputs.size(), false);
  for (const Node& n : g.nodes) {
    if (n.removed) continue;
    for (size_t k = 0; k < n.inputs.size(); ++k) {
      if (n.inputs[k] == kNoId || !is_shape_operand(n, k)) continue;
      for (size_t i = 0; i < g.inputs.size(); ++i) {
        if (g.inputs[i] == n.inputs[k]) out[i] = true;
      }
    }
  }
  return out;
}

}  // namespace tr::nn
