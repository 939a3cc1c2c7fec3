#include <algorithm>

#include "nn/ref/ref_kernels.h"

namespace tr::nn {

Status ref_Shape(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out) {
  const Shape& s = in[0]->shape();
  const int64_t rank = static_cast<int64_t>(s.size());
  int64_t start = n.attr_int("start", 0);
  if (start < 0) start += rank;
  start = std::clamp<int64_t>(start, 0, rank);
  for (int64_t i = 0; i < out[0].numel(); ++i) out[0].data<int64_t>()[i] = s[start + i];
  return Status::Ok();
}

}  // namespace tr::nn
