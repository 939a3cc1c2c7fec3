#include "nn/ref/ref_kernels.h"

namespace tr::nn {

Status ref_FusedConv(const Node& n, const std::vector<const Tensor*>& in,
                     std::vector<Tensor>& out) {
  TR_ASSIGN_OR_RETURN(ConvParams p, conv_params(n, in[0]->shape(), in[1]->shape()));
  const Tensor* b = in.size() > 2 ? in[2] : nullptr;
  const Tensor* r = in.size() > 3 ? in[3] : nullptr;
  conv2d_reference(p, in[0]->data<float>(), in[1]->data<float>(), b ? b->data<float>() : nullptr,
                   r ? r->data<float>() : nullptr, out[0].data<float>());
  return Status::Ok();
}

}  // namespace tr::nn
