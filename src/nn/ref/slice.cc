#include "nn/ref/copy_util.h"
#include "nn/ref/ref_kernels.h"

namespace tr::nn {

Status ref_Slice(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out) {
  const Tensor& x = *in[0];
  const Tensor* axes = in.size() > 3 ? in[3] : nullptr;
  const Tensor* steps = in.size() > 4 ? in[4] : nullptr;
  TR_ASSIGN_OR_RETURN(SliceParams p, slice_params(n, x.shape(), *in[1], *in[2], axes, steps));
  const auto xs = row_major_strides(x.shape());
  const size_t rank = x.rank();
  gather_elements(x, out[0], [&](const std::vector<int64_t>& idx) {
    int64_t off = 0;
    for (size_t d = 0; d < rank; ++d) off += (p.start[d] + idx[d] * p.step[d]) * xs[d];
    return off;
  });
  return Status::Ok();
}

}  // namespace tr::nn
