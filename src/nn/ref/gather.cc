#include "nn/ref/copy_util.h"
#include "nn/ref/ref_kernels.h"

namespace tr::nn {

Status ref_Gather(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out) {
  const Tensor& x = *in[0];
  const int64_t rank = static_cast<int64_t>(x.rank());
  TR_ASSIGN_OR_RETURN(int64_t axis, normalize_axis(n, n.attr_int("axis", 0), rank));
  auto indices = tensor_to_i64(*in[1]);
  const int64_t len = x.dim(axis);
  for (int64_t& i : indices) {
    if (i < 0) i += len;
    if (i < 0 || i >= len) return BadInput(n.describe() + ": index out of range");
  }
  const auto xs = row_major_strides(x.shape());
  const auto is = row_major_strides(in[1]->shape());
  const int64_t irank = static_cast<int64_t>(in[1]->rank());
  gather_elements(x, out[0], [&](const std::vector<int64_t>& idx) {
    // Output index = x[:axis] ++ indices' index ++ x[axis+1:].
    int64_t off = 0;
    for (int64_t d = 0; d < axis; ++d) off += idx[d] * xs[d];
    int64_t flat = 0;
    for (int64_t d = 0; d < irank; ++d) flat += idx[axis + d] * is[d];
    off += indices[flat] * xs[axis];
    for (int64_t d = axis + 1; d < rank; ++d) off += idx[d - 1 + irank] * xs[d];
    return off;
  });
  return Status::Ok();
}

}  // namespace tr::nn
