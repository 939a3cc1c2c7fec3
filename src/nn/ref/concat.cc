#include <cstring>

#include "nn/ref/ref_kernels.h"

namespace tr::nn {

// Copies each input's contiguous [axis..] blocks side by side; any dtype.
Status ref_Concat(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out) {
  Tensor& y = out[0];
  const int64_t rank = static_cast<int64_t>(y.rank());
  TR_ASSIGN_OR_RETURN(int64_t axis, normalize_axis(n, n.attr_int("axis", 0), rank));
  int64_t outer = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= y.dim(d);
  const size_t esize = dtype_size(y.dtype());
  const size_t out_row = static_cast<size_t>(outer ? y.numel() / outer : 0) * esize;
  uint8_t* dst = static_cast<uint8_t*>(y.raw());
  size_t offset = 0;
  for (const Tensor* t : in) {
    const size_t row = static_cast<size_t>(outer ? t->numel() / outer : 0) * esize;
    const uint8_t* src = static_cast<const uint8_t*>(t->raw());
    for (int64_t o = 0; o < outer; ++o) {
      if (row) std::memcpy(dst + o * out_row + offset, src + o * row, row);
    }
    offset += row;
  }
  return Status::Ok();
}

}  // namespace tr::nn
