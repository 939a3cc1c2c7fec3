#include "nn/ref/copy_util.h"
#include "nn/ref/ref_kernels.h"

namespace tr::nn {

Status ref_Transpose(const Node& n, const std::vector<const Tensor*>& in,
                     std::vector<Tensor>& out) {
  const Tensor& x = *in[0];
  const int64_t rank = static_cast<int64_t>(x.rank());
  std::vector<int64_t> perm = n.attr_ints("perm");
  if (perm.empty()) {
    for (int64_t i = rank - 1; i >= 0; --i) perm.push_back(i);
  }
  const auto xs = row_major_strides(x.shape());
  gather_elements(x, out[0], [&](const std::vector<int64_t>& idx) {
    int64_t off = 0;
    for (int64_t d = 0; d < rank; ++d) off += idx[d] * xs[perm[d]];
    return off;
  });
  return Status::Ok();
}

}  // namespace tr::nn
