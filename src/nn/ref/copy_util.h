// Strided copies shared by the data-movement kernels (Pad, Slice, Transpose, Gather).
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "common/tensor.h"

namespace tr::nn {

// Row-major strides (in elements) of a shape.
inline std::vector<int64_t> row_major_strides(const Shape& s) {
  std::vector<int64_t> st(s.size(), 1);
  for (size_t d = s.size(); d-- > 1;) st[d - 1] = st[d] * s[d];
  return st;
}

// For every output index, copies the element at input offset `src(out_index)`.
template <class SrcOffset>
void gather_elements(const Tensor& x, Tensor& y, SrcOffset src) {
  const size_t es = dtype_size(x.dtype());
  const uint8_t* xp = static_cast<const uint8_t*>(x.raw());
  uint8_t* yp = static_cast<uint8_t*>(y.raw());
  const Shape& os = y.shape();
  const int64_t total = y.numel();
  std::vector<int64_t> idx(os.size(), 0);
  for (int64_t i = 0; i < total; ++i) {
    std::memcpy(yp + i * es, xp + src(idx) * es, es);
    for (size_t d = os.size(); d-- > 0;) {
      if (++idx[d] < os[d]) break;
      idx[d] = 0;
    }
  }
}

}  // namespace tr::nn
