// Attribute and shape logic shared by every backend: each backend's kernels read their
// parameters through these functions, so the backends can't disagree about what an
// attribute means. Errors (kBadInput) name the node.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"
#include "nn/graph.h"

namespace tr::nn {

enum class Activation { kNone, kRelu, kLeakyRelu };

// Conv and FusedConv over NCW, NCHW or NCDHW inputs (1-D, 2-D, 3-D convolution; the lower
// ranks are handled as 3-D with unit depth/height, output_shape() keeps the input's rank);
// any dilation. Backends other than the reference handle the 2-D case (spatial == 2).
// FusedConv: y = act(conv(x, W) + B + Residual); inputs X, W, B (optional), Residual
// (optional, same shape as y); attributes as Conv plus activation "" | "Relu" | "LeakyRelu"
// and alpha (LeakyRelu slope, default 0.01).
struct ConvParams {
  int64_t batch = 0, in_c = 0, in_h = 0, in_w = 0;
  int64_t out_c = 0, out_h = 0, out_w = 0;
  int64_t kernel_h = 0, kernel_w = 0;
  int64_t stride_h = 1, stride_w = 1;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  // Depth (3-D only; 1 / 0 otherwise).
  int64_t in_d = 1, out_d = 1, kernel_d = 1, stride_d = 1, dilation_d = 1;
  int64_t pad_front = 0, pad_back = 0;
  int64_t group = 1;
  bool has_bias = false;
  bool has_residual = false;
  Activation activation = Activation::kNone;
  float alpha = 0.01f;
  int spatial = 2;  // 1, 2 or 3 spatial dimensions

  int64_t in_c_per_group() const { return in_c / group; }
  int64_t out_c_per_group() const { return out_c / group; }
  bool is_depthwise() const { return group == in_c && group == out_c; }
  bool is_dilated() const { return dilation_h != 1 || dilation_w != 1 || dilation_d != 1; }
  Shape output_shape() const {
    if (spatial == 1) return {batch, out_c, out_w};
    if (spatial == 3) return {batch, out_c, out_d, out_h, out_w};
    return {batch, out_c, out_h, out_w};
  }
};
// x: input shape, w: weight shape [out_c, in_c/group, kh, kw].
Result<ConvParams> conv_params(const Node& n, const Shape& x, const Shape& w);

enum class ResizeMode { kNearest, kLinear, kCubic };
enum class CoordTransform {
  kHalfPixel,
  kPytorchHalfPixel,
  kAlignCorners,
  kAsymmetric,
};
enum class NearestRounding { kRoundPreferFloor, kRoundPreferCeil, kFloor, kCeil };

struct ResizeParams {
  ResizeMode mode = ResizeMode::kNearest;
  CoordTransform coord = CoordTransform::kHalfPixel;
  NearestRounding nearest = NearestRounding::kRoundPreferFloor;
  float cubic_a = -0.75f;        // cubic_coeff_a
  bool exclude_outside = false;  // cubic: zero the taps outside the input, renormalise
  Shape in_shape, out_shape;
  std::vector<float> scales;  // per dimension: the given scale, or out/in when sizes given
  // Per dimension: the resized length align_corners divides by. With `scales` this is the
  // unrounded in * scale, as the ONNX reference implementation (and its test data) does;
  // with `sizes` it is the output length.
  std::vector<float> resized_len;

  // The input coordinate (continuous) that output index `out_index` of dimension `dim`
  // samples, before clamping.
  float source_coord(size_t dim, int64_t out_index) const;
  // Nearest mode: the input index for output index `out_index`, clamped.
  int64_t nearest_index(size_t dim, int64_t out_index) const;
};
// scales/sizes: the node's constant scale or size inputs (nullptr when absent or empty).
Result<ResizeParams> resize_params(const Node& n, const Shape& x, const Tensor* scales,
                                   const Tensor* sizes);

// numpy broadcasting of two shapes.
Result<Shape> broadcast_shapes(const Shape& a, const Shape& b);

// Pad: per-dimension pads (begins then ends, ONNX order), mode and value.
enum class PadMode { kConstant, kReflect, kEdge };
struct PadParams {
  PadMode mode = PadMode::kConstant;
  std::vector<int64_t> pads;  // 2 * rank: begin_0.. begin_{r-1}, end_0.. end_{r-1}
  float value = 0.f;
  Shape out_shape;
  bool is_noop() const;
  // Reflect/edge: the input index that output index `o` of dimension `d` copies.
  int64_t source_index(size_t d, int64_t o, int64_t in_len) const;
};
// pads/value: the constant inputs (opset >= 11) or nullptr to use the attribute form.
Result<PadParams> pad_params(const Node& n, const Shape& x, const Tensor* pads,
                             const Tensor* value);

// ConvTranspose (2-D, NCHW): weight [in_c, out_c/group, kh, kw]; strides, pads, dilations,
// output_padding, group; output_shape / auto_pad are resolved into pads.
struct ConvTransposeParams {
  int64_t batch = 0, in_c = 0, in_h = 0, in_w = 0;
  int64_t out_c = 0, out_h = 0, out_w = 0;
  int64_t kernel_h = 0, kernel_w = 0;
  int64_t stride_h = 1, stride_w = 1;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t pad_top = 0, pad_left = 0;
  int64_t group = 1;
  Shape output_shape() const { return {batch, out_c, out_h, out_w}; }
};
Result<ConvTransposeParams> conv_transpose_params(const Node& n, const Shape& x, const Shape& w);

// Maps a possibly negative axis into [0, rank); error naming the node when out of range.
Result<int64_t> normalize_axis(const Node& n, int64_t axis, int64_t rank);

// Reads an integer tensor (int64 or int32) as int64 values.
std::vector<int64_t> tensor_to_i64(const Tensor& t);

}  // namespace tr::nn

namespace tr::nn {

// Slice (opset >= 10 input form): per-dimension first index, step and output length.
struct SliceParams {
  std::vector<int64_t> start, step;  // one per input dimension (step 1 / start 0 if unsliced)
  Shape out_shape;
};
Result<SliceParams> slice_params(const Node& n, const Shape& x, const Tensor& starts,
                                 const Tensor& ends, const Tensor* axes, const Tensor* steps);

// ONNX TensorProto data type code <-> DType (error for the ones Tensor can't hold).
Result<DType> dtype_from_onnx(int32_t code);
int32_t dtype_to_onnx(DType t);

}  // namespace tr::nn
