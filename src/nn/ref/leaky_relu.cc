#include "nn/ref/ref_kernels.h"

namespace tr::nn {

Status ref_LeakyRelu(const Node& n, const std::vector<const Tensor*>& in,
                     std::vector<Tensor>& out) {
  if (in[0]->dtype() != DType::kFloat32) return BadInput(n.describe() + ": float32 only");
  const float alpha = n.attr_float("alpha", 0.01f);
  const float* x = in[0]->data<float>();
  float* y = out[0].data<float>();
  for (int64_t i = 0, e = in[0]->numel(); i < e; ++i) y[i] = x[i] < 0.f ? x[i] * alpha : x[i];
  return Status::Ok();
}

}  // namespace tr::nn
