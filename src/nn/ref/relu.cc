#include <algorithm>

#include "nn/ref/ref_kernels.h"

namespace tr::nn {

Status ref_Relu(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out) {
  if (in[0]->dtype() != DType::kFloat32) return BadInput(n.describe() + ": float32 only");
  const float* x = in[0]->data<float>();
  float* y = out[0].data<float>();
  for (int64_t i = 0, e = in[0]->numel(); i < e; ++i) y[i] = std::max(x[i], 0.f);
  return Status::Ok();
}

}  // namespace tr::nn
