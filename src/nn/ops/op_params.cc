#include "nn/ops/op_params.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace tr::nn {

namespace {
// Largest resized dimension a model may ask for (2^31): far beyond any image, and small
// enough that every later size computation stays inside int64.
constexpr float kMaxResizedDim = 2147483648.f;

// Bound on convolution attributes (kernel, stride, dilation, pads, group): 2^24 is beyond
// any real layer, and with shapes bounded at 2^36 (infer_shapes) every size computed from
// them stays far inside int64. A corrupt file can put any int64 in these fields.
constexpr int64_t kMaxConvAttribute = int64_t{1} << 24;
constexpr int64_t kMaxShapeAttribute = int64_t{1} << 36;

Status check_range(const Node& n, const char* key, const std::vector<int64_t>& v, int64_t hi) {
  for (int64_t x : v) {
    if (x < -hi || x > hi) {
      return BadInput(n.describe() + ": " + key + " value " + std::to_string(x) +
                      " is out of range");
    }
  }
  return Status::Ok();
}
}  // namespace

std::vector<int64_t> tensor_to_i64(const Tensor& t) {
  std::vector<int64_t> out(static_cast<size_t>(t.numel()));
  switch (t.dtype()) {
    case DType::kInt64:
      if (!out.empty()) std::memcpy(out.data(), t.raw(), out.size() * 8);
      break;
    case DType::kInt32:
      for (size_t i = 0; i < out.size(); ++i) out[i] = t.data<int32_t>()[i];
      break;
    case DType::kFloat32:
      for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<int64_t>(t.data<float>()[i]);
      break;
    case DType::kUint8:
    case DType::kBool:
      for (size_t i = 0; i < out.size(); ++i) out[i] = t.data<uint8_t>()[i];
      break;
    default:
      out.clear();
  }
  return out;
}

Result<int64_t> normalize_axis(const Node& n, int64_t axis, int64_t rank) {
  int64_t a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) {
    return BadInput(n.describe() + ": axis " + std::to_string(axis) + " is out of range for rank " +
                    std::to_string(rank));
  }
  return a;
}

Result<ConvParams> conv_params(const Node& n, const Shape& x, const Shape& w) {
  if (x.size() != w.size() || x.size() < 3 || x.size() > 5) {
    return BadInput(n.describe() +
                    ": only 1-D, 2-D and 3-D convolution (input and weight of equal rank 3..5) "
                    "are supported; got input " +
                    shape_str(x) + ", weight " + shape_str(w));
  }
  // Lower ranks are 3-D convolutions of unit depth (and height): their attributes are the
  // trailing entries of {d, h, w}, the leading ones the identity.
  const size_t sr = x.size() - 2;
  const size_t lead = 3 - sr;
  ConvParams p;
  p.spatial = static_cast<int>(sr);
  p.batch = x[0];
  p.in_c = x[1];
  std::vector<int64_t> in(3, 1), k(3, 1);
  for (size_t i = 0; i < sr; ++i) {
    in[lead + i] = x[2 + i];
    k[lead + i] = w[2 + i];
  }
  p.out_c = w[0];
  p.group = n.attr_int("group", 1);
  TR_RETURN_IF_ERROR(check_range(n, "group", {p.group}, kMaxConvAttribute));
  if (p.group < 1 || p.in_c % p.group != 0 || p.out_c % p.group != 0 || w[1] * p.group != p.in_c) {
    return BadInput(n.describe() + ": weight " + shape_str(w) + " and group " +
                    std::to_string(p.group) + " do not match input channels " +
                    std::to_string(p.in_c));
  }
  auto spatial = [&](const char* key, int64_t def, std::vector<int64_t>& out) -> Status {
    auto v = n.attr_ints(key, std::vector<int64_t>(sr, def));
    TR_RETURN_IF_ERROR(check_range(n, key, v, kMaxConvAttribute));
    if (v.size() != sr) {
      return BadInput(n.describe() + ": " + key + " must have " + std::to_string(sr) + " values");
    }
    out.assign(3, 1);
    for (size_t i = 0; i < sr; ++i) out[lead + i] = v[i];
    return Status::Ok();
  };
  std::vector<int64_t> ks, dil, strides;
  TR_RETURN_IF_ERROR(spatial("kernel_shape", 0, ks));
  if (n.has_attr("kernel_shape") && ks != k) {
    return BadInput(n.describe() + ": kernel_shape disagrees with the weight " + shape_str(w));
  }
  TR_RETURN_IF_ERROR(spatial("dilations", 1, dil));
  TR_RETURN_IF_ERROR(spatial("strides", 1, strides));
  for (size_t i = 0; i < 3; ++i) {
    if (dil[i] < 1) return BadInput(n.describe() + ": bad dilations");
    if (strides[i] < 1) return BadInput(n.describe() + ": bad strides");
  }
  // Per axis {d, h, w}: begin/end pads and output length.
  std::vector<int64_t> pb(3, 0), pe(3, 0), out(3, 1);
  std::string auto_pad = n.attr_string("auto_pad", "NOTSET");
  const bool explicit_pads = auto_pad == "NOTSET" || auto_pad.empty();
  if (explicit_pads) {
    auto pads = n.attr_ints("pads", std::vector<int64_t>(2 * sr, 0));
    TR_RETURN_IF_ERROR(check_range(n, "pads", pads, kMaxConvAttribute));
    if (pads.size() != 2 * sr) {
      return BadInput(n.describe() + ": pads must have " + std::to_string(2 * sr) + " values");
    }
    for (int64_t v : pads) {
      if (v < 0) return BadInput(n.describe() + ": negative pads");
    }
    for (size_t i = 0; i < sr; ++i) {
      pb[lead + i] = pads[i];
      pe[lead + i] = pads[sr + i];
    }
  } else if (auto_pad != "VALID" && auto_pad != "SAME_UPPER" && auto_pad != "SAME_LOWER") {
    return BadInput(n.describe() + ": unknown auto_pad '" + auto_pad + "'");
  }
  for (size_t i = 0; i < 3; ++i) {
    // The extent the (dilated) kernel covers.
    const int64_t span = (k[i] - 1) * dil[i] + 1;
    if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      out[i] = (in[i] + strides[i] - 1) / strides[i];
      const int64_t total = std::max<int64_t>(0, (out[i] - 1) * strides[i] + span - in[i]);
      pb[i] = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      pe[i] = total - pb[i];
    }
    if (in[i] + pb[i] + pe[i] < span) {
      return BadInput(n.describe() + ": kernel " + shape_str(w) +
                      " is larger than the padded input " + shape_str(x));
    }
    out[i] = (in[i] + pb[i] + pe[i] - span) / strides[i] + 1;
  }
  p.in_d = in[0], p.in_h = in[1], p.in_w = in[2];
  p.kernel_d = k[0], p.kernel_h = k[1], p.kernel_w = k[2];
  p.stride_d = strides[0], p.stride_h = strides[1], p.stride_w = strides[2];
  p.dilation_d = dil[0], p.dilation_h = dil[1], p.dilation_w = dil[2];
  p.pad_front = pb[0], p.pad_top = pb[1], p.pad_left = pb[2];
  p.pad_back = pe[0], p.pad_bottom = pe[1], p.pad_right = pe[2];
  p.out_d = out[0], p.out_h = out[1], p.out_w = out[2];
  if (n.op == OpKind::kFusedConv) {
    std::string act = n.attr_string("activation", "");
    if (act.empty()) {
      p.activation = Activation::kNone;
    } else if (act == "Relu") {
      p.activation = Activation::kRelu;
    } else if (act == "LeakyRelu") {
      p.activation = Activation::kLeakyRelu;
      p.alpha = n.attr_float("alpha", 0.01f);
    } else {
      return BadInput(n.describe() + ": unknown activation '" + act + "'");
    }
    p.has_residual = n.input(3) != kNoId;
  }
  p.has_bias = n.input(2) != kNoId;
  return p;
}

float ResizeParams::source_coord(size_t dim, int64_t out_index) const {
  const float scale = scales[dim];
  const float x = static_cast<float>(out_index);
  const int64_t in_len = in_shape[dim], out_len = out_shape[dim];
  switch (coord) {
    case CoordTransform::kHalfPixel:
      return (x + 0.5f) / scale - 0.5f;
    case CoordTransform::kPytorchHalfPixel:
      return out_len > 1 ? (x + 0.5f) / scale - 0.5f : 0.f;
    case CoordTransform::kAlignCorners: {
      const float resized = resized_len.empty() ? static_cast<float>(out_len) : resized_len[dim];
      return out_len > 1 && resized != 1.f ? x * static_cast<float>(in_len - 1) / (resized - 1.f)
                                           : 0.f;
    }
    case CoordTransform::kAsymmetric:
      return x / scale;
  }
  return 0.f;
}

int64_t ResizeParams::nearest_index(size_t dim, int64_t out_index) const {
  // Clamped before rounding so that the conversion is defined for any coordinate (the
  // index is clamped to the input anyway).
  const float c = std::clamp(source_coord(dim, out_index), -1.f, static_cast<float>(in_shape[dim]));
  int64_t i = 0;
  switch (nearest) {
    case NearestRounding::kRoundPreferFloor:
      i = (c - std::floor(c) == 0.5f) ? static_cast<int64_t>(std::floor(c))
                                      : static_cast<int64_t>(std::round(c));
      break;
    case NearestRounding::kRoundPreferCeil:
      i = static_cast<int64_t>(std::round(c));
      break;
    case NearestRounding::kFloor:
      i = static_cast<int64_t>(std::floor(c));
      break;
    case NearestRounding::kCeil:
      i = static_cast<int64_t>(std::ceil(c));
      break;
  }
  return std::clamp<int64_t>(i, 0, in_shape[dim] - 1);
}

Result<ResizeParams> resize_params(const Node& n, const Shape& x, const Tensor* scales,
                                   const Tensor* sizes) {
  ResizeParams p;
  std::string mode = n.attr_string("mode", "nearest");
  if (mode == "nearest") {
    p.mode = ResizeMode::kNearest;
  } else if (mode == "linear") {
    p.mode = ResizeMode::kLinear;
  } else if (mode == "cubic") {
    p.mode = ResizeMode::kCubic;
  } else {
    return BadInput(n.describe() + ": resize mode '" + mode + "' is not supported");
  }
  std::string ct = n.attr_string("coordinate_transformation_mode", "half_pixel");
  if (ct == "half_pixel") {
    p.coord = CoordTransform::kHalfPixel;
  } else if (ct == "pytorch_half_pixel") {
    p.coord = CoordTransform::kPytorchHalfPixel;
  } else if (ct == "align_corners") {
    p.coord = CoordTransform::kAlignCorners;
  } else if (ct == "asymmetric") {
    p.coord = CoordTransform::kAsymmetric;
  } else {
    return BadInput(n.describe() + ": coordinate_transformation_mode '" + ct +
                    "' is not supported");
  }
  std::string nm = n.attr_string("nearest_mode", "round_prefer_floor");
  if (nm == "round_prefer_floor") {
    p.nearest = NearestRounding::kRoundPreferFloor;
  } else if (nm == "round_prefer_ceil") {
    p.nearest = NearestRounding::kRoundPreferCeil;
  } else if (nm == "floor") {
    p.nearest = NearestRounding::kFloor;
  } else if (nm == "ceil") {
    p.nearest = NearestRounding::kCeil;
  } else {
    return BadInput(n.describe() + ": nearest_mode '" + nm + "' is not supported");
  }
  if (n.has_attr("axes")) return BadInput(n.describe() + ": the axes attribute is not supported");
  if (n.attr_int("antialias", 0) != 0) {
    return BadInput(n.describe() + ": antialias is not supported");
  }
  // exclude_outside changes nothing for nearest and (clamped) linear sampling; the cubic
  // kernel applies it.
  p.exclude_outside = n.attr_int("exclude_outside", 0) != 0;
  p.cubic_a = n.attr_float("cubic_coeff_a", -0.75f);
  if (n.attr_string("keep_aspect_ratio_policy", "stretch") != "stretch") {
    return BadInput(n.describe() + ": keep_aspect_ratio_policy is not supported");
  }
  const size_t rank = x.size();
  p.in_shape = x;
  p.out_shape.resize(rank);
  p.scales.resize(rank);
  p.resized_len.resize(rank);
  if (sizes && sizes->numel() > 0) {
    auto s = tensor_to_i64(*sizes);
    if (s.size() != rank) {
      return BadInput(n.describe() + ": sizes has " + std::to_string(s.size()) +
                      " values for a rank-" + std::to_string(rank) + " input");
    }
    for (size_t d = 0; d < rank; ++d) {
      if (s[d] < 1) return BadInput(n.describe() + ": sizes must be positive");
      if (s[d] >= static_cast<int64_t>(kMaxResizedDim)) {
        return BadInput(n.describe() + ": size " + std::to_string(s[d]) + " is too large");
      }
      p.out_shape[d] = s[d];
      p.scales[d] = static_cast<float>(s[d]) / static_cast<float>(x[d]);
      p.resized_len[d] = static_cast<float>(s[d]);
    }
  } else if (scales && scales->numel() > 0) {
    if (scales->dtype() != DType::kFloat32 || static_cast<size_t>(scales->numel()) != rank) {
      return BadInput(n.describe() + ": scales must be float32 with one value per dimension");
    }
    for (size_t d = 0; d < rank; ++d) {
      float s = scales->data<float>()[d];
      if (!(s > 0.f)) return BadInput(n.describe() + ": scales must be positive");
      p.scales[d] = s;
      p.resized_len[d] = static_cast<float>(x[d]) * s;
      // Checked in floating point before the conversion: a huge scale (a corrupt or hostile
      // model) would otherwise overflow int64, which is undefined behaviour.
      const float len = std::floor(static_cast<float>(x[d]) * s);
      if (!(len < kMaxResizedDim)) {
        return BadInput(n.describe() + ": scale " + std::to_string(s) + " makes dimension " +
                        std::to_string(d) + " larger than " +
                        std::to_string(static_cast<int64_t>(kMaxResizedDim)));
      }
      p.out_shape[d] = static_cast<int64_t>(len);
      if (p.out_shape[d] < 1) return BadInput(n.describe() + ": output size would be 0");
    }
  } else {
    return BadInput(n.describe() + ": needs constant scales or sizes");
  }
  return p;
}

Result<Shape> broadcast_shapes(const Shape& a, const Shape& b) {
  const size_t rank = std::max(a.size(), b.size());
  Shape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da != db && da != 1 && db != 1) {
      return BadInput("shapes " + shape_str(a) + " and " + shape_str(b) + " do not broadcast");
    }
    out[i] = da == 1 ? db : da;
  }
  return out;
}

bool PadParams::is_noop() const {
  for (int64_t p : pads) {
    if (p != 0) return false;
  }
  return true;
}

Result<PadParams> pad_params(const Node& n, const Shape& x, const Tensor* pads,
                             const Tensor* value) {
  PadParams p;
  std::string mode = n.attr_string("mode", "constant");
  if (mode == "constant") {
    p.mode = PadMode::kConstant;
  } else if (mode == "reflect") {
    p.mode = PadMode::kReflect;
  } else if (mode == "edge") {
    p.mode = PadMode::kEdge;
  } else {
    return BadInput(n.describe() + ": pad mode '" + mode +
                    "' is not supported (constant, reflect, edge)");
  }
  if (pads) {
    p.pads = tensor_to_i64(*pads);
  } else if (n.has_attr("pads")) {
    p.pads = n.attr_ints("pads");
  } else {
    return BadInput(n.describe() + ": needs constant pads");
  }
  if (n.input(3) != kNoId) return BadInput(n.describe() + ": the axes input is not supported");
  const size_t rank = x.size();
  if (p.pads.size() != 2 * rank) {
    return BadInput(n.describe() + ": " + std::to_string(p.pads.size()) + " pads for a rank-" +
                    std::to_string(rank) + " input");
  }
  if (value && value->numel() > 0) {
    if (value->dtype() == DType::kFloat32) {
      p.value = value->data<float>()[0];
    } else {
      auto v = tensor_to_i64(*value);
      p.value = v.empty() ? 0.f : static_cast<float>(v[0]);
    }
  } else {
    p.value = n.attr_float("value", 0.f);
  }
  p.out_shape.resize(rank);
  for (size_t d = 0; d < rank; ++d) {
    if (__builtin_add_overflow(x[d], p.pads[d], &p.out_shape[d]) ||
        __builtin_add_overflow(p.out_shape[d], p.pads[d + rank], &p.out_shape[d])) {
      return BadInput(n.describe() + ": pads overflow the dimension size");
    }
    if (p.out_shape[d] < 0) return BadInput(n.describe() + ": pads make a negative size");
    if (p.mode != PadMode::kConstant && p.out_shape[d] > 0 && x[d] == 0) {
      return BadInput(n.describe() + ": " + mode + " padding of an empty dimension");
    }
  }
  return p;
}

int64_t PadParams::source_index(size_t d, int64_t o, int64_t in_len) const {
  int64_t i = o - pads[d];
  if (mode == PadMode::kEdge || in_len == 1) return std::clamp<int64_t>(i, 0, in_len - 1);
  // Reflect without repeating the edge: period 2 * (in_len - 1).
  const int64_t period = 2 * (in_len - 1);
  i %= period;
  if (i < 0) i += period;
  return i < in_len ? i : period - i;
}

Result<ConvTransposeParams> conv_transpose_params(const Node& n, const Shape& x, const Shape& w) {
  if (x.size() != 4 || w.size() != 4) {
    return BadInput(n.describe() +
                    ": only 2-D ConvTranspose (rank-4 input and weight) is "
                    "supported; got input " +
                    shape_str(x) + ", weight " + shape_str(w));
  }
  ConvTransposeParams p;
  p.batch = x[0];
  p.in_c = x[1];
  p.in_h = x[2];
  p.in_w = x[3];
  p.group = n.attr_int("group", 1);
  TR_RETURN_IF_ERROR(check_range(n, "group", {p.group}, kMaxConvAttribute));
  p.kernel_h = w[2];
  p.kernel_w = w[3];
  if (p.group < 1 || w[0] != p.in_c || p.in_c % p.group != 0) {
    return BadInput(n.describe() + ": weight " + shape_str(w) + " and group " +
                    std::to_string(p.group) + " do not match input channels " +
                    std::to_string(p.in_c));
  }
  p.out_c = w[1] * p.group;
  auto two = [&](const char* key, int64_t def, std::vector<int64_t>& out) -> Status {
    out = n.attr_ints(key, {def, def});
    TR_RETURN_IF_ERROR(check_range(n, key, out, kMaxConvAttribute));
    if (out.size() != 2) return BadInput(n.describe() + ": " + key + " must have 2 values");
    return Status::Ok();
  };
  std::vector<int64_t> ks, strides, dil, out_pad;
  TR_RETURN_IF_ERROR(two("kernel_shape", 0, ks));
  if (n.has_attr("kernel_shape") && (ks[0] != p.kernel_h || ks[1] != p.kernel_w)) {
    return BadInput(n.describe() + ": kernel_shape disagrees with the weight " + shape_str(w));
  }
  TR_RETURN_IF_ERROR(two("strides", 1, strides));
  TR_RETURN_IF_ERROR(two("dilations", 1, dil));
  TR_RETURN_IF_ERROR(two("output_padding", 0, out_pad));
  if (strides[0] < 1 || strides[1] < 1 || dil[0] < 1 || dil[1] < 1 || out_pad[0] < 0 ||
      out_pad[1] < 0) {
    return BadInput(n.describe() + ": bad strides, dilations or output_padding");
  }
  p.stride_h = strides[0];
  p.stride_w = strides[1];
  p.dilation_h = dil[0];
  p.dilation_w = dil[1];
  const int64_t span_h = (p.kernel_h - 1) * p.dilation_h + 1;
  const int64_t span_w = (p.kernel_w - 1) * p.dilation_w + 1;
  // The full (unpadded) output extent.
  const int64_t full_h = p.stride_h * (p.in_h - 1) + out_pad[0] + span_h;
  const int64_t full_w = p.stride_w * (p.in_w - 1) + out_pad[1] + span_w;
  const std::string auto_pad = n.attr_string("auto_pad", "NOTSET");
  if (n.has_attr("output_shape") || auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
    std::vector<int64_t> os = n.attr_ints("output_shape");
    TR_RETURN_IF_ERROR(check_range(n, "output_shape", os, kMaxShapeAttribute));
    if (os.size() > 2) os.erase(os.begin(), os.end() - 2);
    if (os.empty()) os = {p.in_h * p.stride_h, p.in_w * p.stride_w};
    if (os.size() != 2) return BadInput(n.describe() + ": output_shape must have 2 values");
    const int64_t th = full_h - os[0], tw = full_w - os[1];
    if (th < 0 || tw < 0) return BadInput(n.describe() + ": output_shape is too large");
    // The ONNX spec: SAME_UPPER puts the odd pad at the end, otherwise at the beginning.
    const bool upper = auto_pad == "SAME_UPPER";
    p.pad_top = upper ? th / 2 : th - th / 2;
    p.pad_left = upper ? tw / 2 : tw - tw / 2;
    p.out_h = os[0];
    p.out_w = os[1];
  } else if (auto_pad == "NOTSET" || auto_pad.empty() || auto_pad == "VALID") {
    auto pads = n.attr_ints("pads", {0, 0, 0, 0});
    if (auto_pad == "VALID") pads = {0, 0, 0, 0};
    if (pads.size() != 4) return BadInput(n.describe() + ": pads must have 4 values");
    TR_RETURN_IF_ERROR(check_range(n, "pads", pads, kMaxConvAttribute));
    for (int64_t v : pads) {
      if (v < 0) return BadInput(n.describe() + ": negative pads");
    }
    p.pad_top = pads[0];
    p.pad_left = pads[1];
    p.out_h = full_h - pads[0] - pads[2];
    p.out_w = full_w - pads[1] - pads[3];
  } else {
    return BadInput(n.describe() + ": unknown auto_pad '" + auto_pad + "'");
  }
  if (p.out_h < 1 || p.out_w < 1) return BadInput(n.describe() + ": pads leave no output");
  return p;
}

}  // namespace tr::nn

namespace tr::nn {

Result<SliceParams> slice_params(const Node& n, const Shape& x, const Tensor& starts_t,
                                 const Tensor& ends_t, const Tensor* axes_t,
                                 const Tensor* steps_t) {
  const int64_t rank = static_cast<int64_t>(x.size());
  auto starts = tensor_to_i64(starts_t);
  auto ends = tensor_to_i64(ends_t);
  std::vector<int64_t> axes, steps;
  if (axes_t && axes_t->numel() > 0) {
    axes = tensor_to_i64(*axes_t);
  } else {
    for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
  }
  if (steps_t && steps_t->numel() > 0) {
    steps = tensor_to_i64(*steps_t);
  } else {
    steps.assign(starts.size(), 1);
  }
  if (starts.size() != ends.size() || axes.size() != starts.size() ||
      steps.size() != starts.size()) {
    return BadInput(n.describe() + ": starts, ends, axes and steps differ in length");
  }
  SliceParams p;
  p.start.assign(rank, 0);
  p.step.assign(rank, 1);
  p.out_shape = x;
  std::vector<bool> seen(rank, false);
  for (size_t i = 0; i < starts.size(); ++i) {
    TR_ASSIGN_OR_RETURN(int64_t axis, normalize_axis(n, axes[i], rank));
    if (seen[axis]) return BadInput(n.describe() + ": repeated axis");
    seen[axis] = true;
    const int64_t dim = x[axis];
    if (steps[i] == 0) return BadInput(n.describe() + ": step 0");
    // A step longer than the axis takes one element, like the axis' own length does; clamping
    // it keeps the arithmetic below inside int64 for any value a file holds.
    const int64_t longest = std::max<int64_t>(dim, 1);
    const int64_t step = std::clamp<int64_t>(steps[i], -longest, longest);
    int64_t s = starts[i], e = ends[i];
    if (s < 0) s += dim;
    if (e < 0) e += dim;
    if (step > 0) {
      s = std::clamp<int64_t>(s, 0, dim);
      e = std::clamp<int64_t>(e, 0, dim);
      p.out_shape[axis] = e > s ? (e - s + step - 1) / step : 0;
    } else {
      s = std::clamp<int64_t>(s, 0, dim - 1);
      e = std::clamp<int64_t>(e, -1, dim - 1);
      p.out_shape[axis] = s > e ? (s - e + (-step) - 1) / (-step) : 0;
    }
    p.start[axis] = s;
    p.step[axis] = step;
  }
  return p;
}

Result<DType> dtype_from_onnx(int32_t code) {
  switch (code) {
    case 1:
      return DType::kFloat32;
    case 2:
      return DType::kUint8;
    case 6:
      return DType::kInt32;
    case 7:
      return DType::kInt64;
    case 9:
      return DType::kBool;
    case 10:
      return DType::kFloat16;
    case 11:
      return DType::kFloat64;
    default:
      return BadInput("ONNX data type " + std::to_string(code) + " is not supported");
  }
}

int32_t dtype_to_onnx(DType t) {
  switch (t) {
    case DType::kFloat32:
      return 1;
    case DType::kUint8:
      return 2;
    case DType::kInt32:
      return 6;
    case DType::kInt64:
      return 7;
    case DType::kBool:
      return 9;
    case DType::kFloat16:
      return 10;
    case DType::kFloat64:
      return 11;
  }
  return 0;
}

}  // namespace tr::nn
