#include <algorithm>
#include <cmath>
#include <vector>

#include "nn/ref/ref_kernels.h"

namespace tr::nn {

namespace {

// One input sample feeding an output coordinate.
struct Tap {
  int64_t index = 0;
  float weight = 0.f;
};
// Per output index of one dimension, its taps (1 nearest, 2 linear, 4 cubic).
using DimTaps = std::vector<std::vector<Tap>>;

DimTaps nearest_taps(const ResizeParams& p, size_t dim) {
  DimTaps taps(p.out_shape[dim]);
  for (int64_t o = 0; o < p.out_shape[dim]; ++o) taps[o] = {{p.nearest_index(dim, o), 1.f}};
  return taps;
}

DimTaps linear_taps(const ResizeParams& p, size_t dim) {
  DimTaps taps(p.out_shape[dim]);
  const int64_t in_len = p.in_shape[dim];
  for (int64_t o = 0; o < p.out_shape[dim]; ++o) {
    float c = p.source_coord(dim, o);
    c = std::clamp(c, 0.f, static_cast<float>(in_len - 1));
    const int64_t lo = static_cast<int64_t>(std::floor(c));
    const float w_hi = c - static_cast<float>(lo);
    taps[o] = {{lo, 1.f - w_hi}, {std::min(lo + 1, in_len - 1), w_hi}};
  }
  return taps;
}

// Keys' cubic convolution (coefficient A) as the ONNX reference implements it: the four
// samples around the source coordinate, indices clamped to the input (edge padding); with
// exclude_outside, samples outside the input get weight 0 and the rest are renormalised.
DimTaps cubic_taps(const ResizeParams& p, size_t dim) {
  DimTaps taps(p.out_shape[dim]);
  const int64_t in_len = p.in_shape[dim];
  const double a = p.cubic_a;
  for (int64_t o = 0; o < p.out_shape[dim]; ++o) {
    // Clamped to a few samples outside the input (taps there are clamped or excluded anyway)
    // so that the integer conversion is defined for any coordinate.
    const double c = std::clamp(static_cast<double>(p.source_coord(dim, o)), -4.0,
                                static_cast<double>(in_len) + 4.0);
    int64_t base = static_cast<int64_t>(std::floor(c));
    double t = c - static_cast<double>(base);
    // An exact sample point uses ratio 1 with the taps shifted left (as the reference does).
    if (t == 0.0) {
      base -= 1;
      t = 1.0;
    }
    const double u = 1.0 - t;
    const double coeff[4] = {
        ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
        ((a + 2) * t - (a + 3)) * t * t + 1,
        ((a + 2) * u - (a + 3)) * u * u + 1,
        ((a * (u + 1) - 5 * a) * (u + 1) + 8 * a) * (u + 1) - 4 * a,
    };
    double sum = 0.0;
    std::vector<Tap>& out = taps[o];
    for (int k = 0; k < 4; ++k) {
      const int64_t i = base - 1 + k;
      const bool outside = i < 0 || i >= in_len;
      const double w = p.exclude_outside && outside ? 0.0 : coeff[k];
      sum += w;
      out.push_back({std::clamp<int64_t>(i, 0, in_len - 1), static_cast<float>(w)});
    }
    if (p.exclude_outside && sum != 0.0) {
      for (Tap& tap : out) tap.weight = static_cast<float>(tap.weight / sum);
    }
  }
  return taps;
}

}  // namespace

// N-linear, N-cubic or nearest resampling over every dimension (dimensions whose scale is 1
// map onto themselves exactly under all supported coordinate transforms).
Status ref_Resize(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out) {
  const Tensor& x = *in[0];
  if (x.dtype() != DType::kFloat32) return BadInput(n.describe() + ": float32 only");
  const Tensor* scales = in.size() > 2 ? in[2] : nullptr;
  const Tensor* sizes = in.size() > 3 ? in[3] : nullptr;
  TR_ASSIGN_OR_RETURN(ResizeParams p, resize_params(n, x.shape(), scales, sizes));
  const size_t rank = x.rank();
  std::vector<int64_t> in_strides(rank, 1);
  for (size_t d = rank - 1; d-- > 0;) in_strides[d] = in_strides[d + 1] * x.dim(d + 1);
  std::vector<DimTaps> taps(rank);
  for (size_t d = 0; d < rank; ++d) {
    if (p.out_shape[d] == p.in_shape[d] && p.scales[d] == 1.f) {
      // Unscaled: the identity (every mode samples exactly on the input grid).
      taps[d].resize(p.out_shape[d]);
      for (int64_t o = 0; o < p.out_shape[d]; ++o) taps[d][o] = {{o, 1.f}};
    } else if (p.mode == ResizeMode::kLinear) {
      taps[d] = linear_taps(p, d);
    } else if (p.mode == ResizeMode::kCubic) {
      taps[d] = cubic_taps(p, d);
    } else {
      taps[d] = nearest_taps(p, d);
    }
  }
  const float* xp = x.data<float>();
  float* yp = out[0].data<float>();
  const int64_t total = out[0].numel();
  std::vector<int64_t> idx(rank, 0);
  std::vector<size_t> pick(rank, 0);
  for (int64_t i = 0; i < total; ++i) {
    // Sum over every combination of one tap per dimension (an odometer over `pick`).
    float acc = 0.f;
    std::fill(pick.begin(), pick.end(), 0);
    while (true) {
      float w = 1.f;
      int64_t off = 0;
      for (size_t d = 0; d < rank; ++d) {
        const Tap& t = taps[d][idx[d]][pick[d]];
        w *= t.weight;
        off += t.index * in_strides[d];
      }
      if (w != 0.f) acc += w * xp[off];
      size_t d = rank;
      while (d-- > 0) {
        if (++pick[d] < taps[d][idx[d]].size()) break;
        pick[d] = 0;
      }
      if (d == static_cast<size_t>(-1)) break;
    }
    yp[i] = acc;
    for (size_t d = rank; d-- > 0;) {
      if (++idx[d] < p.out_shape[d]) break;
      idx[d] = 0;
    }
  }
  return Status::Ok();
}

}  // namespace tr::nn
