#include <cmath>

#include "nn/ref/ref_kernels.h"

namespace tr::nn {

// Inference form: y = (x - mean) / sqrt(var + epsilon) * scale + bias, per channel (dim 1).
Status ref_BatchNormalization(const Node& n, const std::vector<const Tensor*>& in,
                              std::vector<Tensor>& out) {
  const Tensor& x = *in[0];
  const float* scale = in[1]->data<float>();
  const float* bias = in[2]->data<float>();
  const float* mean = in[3]->data<float>();
  const float* var = in[4]->data<float>();
  const float eps = n.attr_float("epsilon", 1e-5f);
  const int64_t batch = x.dim(0), channels = x.dim(1);
  const int64_t inner = channels ? x.numel() / (batch * channels) : 0;
  const float* xp = x.data<float>();
  float* yp = out[0].data<float>();
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t c = 0; c < channels; ++c) {
      const float k = scale[c] / std::sqrt(var[c] + eps);
      const float off = bias[c] - mean[c] * k;
      const int64_t base = (b * channels + c) * inner;
      for (int64_t i = 0; i < inner; ++i) yp[base + i] = xp[base + i] * k + off;
    }
  }
  return Status::Ok();
}

}  // namespace tr::nn
