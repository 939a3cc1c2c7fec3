#include <algorithm>
#include <cmath>
#include <vector>

#include "nn/ref/ref_kernels.h"

namespace tr::nn {

namespace {

// One dimension's sampling: the two neighbouring input indices and the weight of the upper.
struct Tap {
  int64_t lo = 0, hi = 0;
  float w_hi = 0.f;
};

std::vector<Tap> linear_taps(const ResizeParams& p, size_t dim) {
  std::vector<Tap> taps(p.out_shape[dim]);
  const int64_t in_len = p.in_shape[dim];
  for (int64_t o = 0; o < p.out_shape[dim]; ++o) {
    float c = p.source_coord(dim, o);
    c = std::clamp(c, 0.f, static_cast<float>(in_len - 1));
    const int64_t lo = static_cast<int64_t>(std::floor(c));
    taps[o].lo = lo;
    taps[o].hi = std::min(lo + 1, in_len - 1);
    taps[o].w_hi = c - static_cast<float>(lo);
  }
  return taps;
}

}  // namespace

// N-linear or nearest resampling over every dimension (dimensions whose scale is 1 map
// onto themselves exactly under all supported coordinate transforms).
Status ref_Resize(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out) {
  const Tensor& x = *in[0];
  if (x.dtype() != DType::kFloat32) return BadInput(n.describe() + ": float32 only");
  const Tensor* scales = in.size() > 2 ? in[2] : nullptr;
  const Tensor* sizes = in.size() > 3 ? in[3] : nullptr;
  TR_ASSIGN_OR_RETURN(ResizeParams p, resize_params(n, x.shape(), scales, sizes));
  const size_t rank = x.rank();
  std::vector<int64_t> in_strides(rank, 1);
  for (size_t d = rank - 1; d-- > 0;) in_strides[d] = in_strides[d + 1] * x.dim(d + 1);
  std::vector<std::vector<Tap>> taps(rank);
  for (size_t d = 0; d < rank; ++d) {
    if (p.mode == ResizeMode::kLinear) {
      taps[d] = linear_taps(p, d);
    } else {
      taps[d].resize(p.out_shape[d]);
      for (int64_t o = 0; o < p.out_shape[d]; ++o) {
        taps[d][o].lo = taps[d][o].hi = p.nearest_index(d, o);
      }
    }
  }
  const float* xp = x.data<float>();
  float* yp = out[0].data<float>();
  const int64_t total = out[0].numel();
  std::vector<int64_t> idx(rank, 0);
  for (int64_t i = 0; i < total; ++i) {
    // Sum over the 2^rank corners, skipping those with zero weight.
    float acc = 0.f;
    for (uint32_t corner = 0; corner < (1u << rank); ++corner) {
      float w = 1.f;
      int64_t off = 0;
      for (size_t d = 0; d < rank && w != 0.f; ++d) {
        const Tap& t = taps[d][idx[d]];
        const bool upper = (corner >> d) & 1u;
        if (upper) {
          w *= t.w_hi;
          off += t.hi * in_strides[d];
        } else {
          w *= 1.f - t.w_hi;
          off += t.lo * in_strides[d];
        }
      }
      if (w != 0.f) acc += w * xp[off];
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
