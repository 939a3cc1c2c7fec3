#include "nn/ref/ref_kernels.h"

namespace tr::nn {

Status ref_Sub(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out) {
  return binary_reference(n, BinaryOp::kSub, *in[0], *in[1], out[0]);
}

}  // namespace tr::nn
