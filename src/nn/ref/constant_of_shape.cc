#include <cstring>

#include "nn/ref/ref_kernels.h"

namespace tr::nn {

// Fills with the one-element `value` attribute (float32 0 when absent).
Status ref_ConstantOfShape(const Node& n, const std::vector<const Tensor*>& in,
                           std::vector<Tensor>& out) {
  Tensor& y = out[0];
  const Tensor* v = n.attr_tensor("value");
  if (!v) {
    std::memset(y.raw(), 0, y.nbytes());
    return Status::Ok();
  }
  if (v->numel() != 1) return BadInput(n.describe() + ": value must hold one element");
  const size_t es = dtype_size(y.dtype());
  uint8_t* yp = static_cast<uint8_t*>(y.raw());
  for (int64_t i = 0; i < y.numel(); ++i) std::memcpy(yp + i * es, v->raw(), es);
  return Status::Ok();
}

}  // namespace tr::nn
