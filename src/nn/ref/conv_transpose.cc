#include <algorithm>

#include "nn/ref/ref_kernels.h"

namespace tr::nn {

// ConvTranspose as the scatter form of convolution: input pixel (iy, ix) adds
// x * w[ky, kx] to output (iy * stride - pad + ky * dilation, ...) when that lands inside.
Status ref_ConvTranspose(const Node& n, const std::vector<const Tensor*>& in,
                         std::vector<Tensor>& out) {
  TR_ASSIGN_OR_RETURN(ConvTransposeParams p,
                      conv_transpose_params(n, in[0]->shape(), in[1]->shape()));
  if (in[0]->dtype() != DType::kFloat32 || in[1]->dtype() != DType::kFloat32) {
    return BadInput(n.describe() + ": only float32 is supported");
  }
  const Tensor* bias = in.size() > 2 ? in[2] : nullptr;
  const float* x = in[0]->data<float>();
  const float* w = in[1]->data<float>();
  float* y = out[0].data<float>();
  const int64_t icg = p.in_c / p.group, ocg = p.out_c / p.group;
  const int64_t out_plane = p.out_h * p.out_w, in_plane = p.in_h * p.in_w;
  for (int64_t b = 0; b < p.batch; ++b) {
    for (int64_t oc = 0; oc < p.out_c; ++oc) {
      float* yp = y + (b * p.out_c + oc) * out_plane;
      std::fill(yp, yp + out_plane, bias ? bias->data<float>()[oc] : 0.f);
    }
    for (int64_t ic = 0; ic < p.in_c; ++ic) {
      const int64_t g = ic / icg;
      const float* xp = x + (b * p.in_c + ic) * in_plane;
      for (int64_t j = 0; j < ocg; ++j) {
        const int64_t oc = g * ocg + j;
        // Weight layout [in_c, out_c / group, kh, kw].
        const float* wp = w + (ic * ocg + j) * p.kernel_h * p.kernel_w;
        float* yp = y + (b * p.out_c + oc) * out_plane;
        for (int64_t iy = 0; iy < p.in_h; ++iy) {
          for (int64_t ky = 0; ky < p.kernel_h; ++ky) {
            const int64_t oy = iy * p.stride_h - p.pad_top + ky * p.dilation_h;
            if (oy < 0 || oy >= p.out_h) continue;
            for (int64_t ix = 0; ix < p.in_w; ++ix) {
              const float xv = xp[iy * p.in_w + ix];
              for (int64_t kx = 0; kx < p.kernel_w; ++kx) {
                const int64_t ox = ix * p.stride_w - p.pad_left + kx * p.dilation_w;
                if (ox < 0 || ox >= p.out_w) continue;
                yp[oy * p.out_w + ox] += xv * wp[ky * p.kernel_w + kx];
              }
            }
          }
        }
      }
    }
  }
  return Status::Ok();
}

}  // namespace tr::nn
