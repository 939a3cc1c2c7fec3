#include <algorithm>
#include <cstring>

#include "nn/ref/ref_kernels.h"

namespace tr::nn {

void conv2d_reference(const ConvParams& p, const float* x, const float* w, const float* b,
                      const float* residual, float* y) {
  const int64_t icg = p.in_c_per_group(), ocg = p.out_c_per_group();
  // 1-D and 2-D convolutions are the depth-1 case of this 3-D loop nest.
  const int64_t in_plane = p.in_h * p.in_w, out_plane = p.out_h * p.out_w;
  const int64_t in_vol = p.in_d * in_plane, out_vol = p.out_d * out_plane;
  const int64_t kvol = p.kernel_d * p.kernel_h * p.kernel_w;
  for (int64_t n = 0; n < p.batch; ++n) {
    for (int64_t oc = 0; oc < p.out_c; ++oc) {
      const int64_t g = oc / ocg;
      float* yv = y + (n * p.out_c + oc) * out_vol;
      std::fill(yv, yv + out_vol, b ? b[oc] : 0.f);
      for (int64_t ic = 0; ic < icg; ++ic) {
        const float* xv = x + (n * p.in_c + g * icg + ic) * in_vol;
        const float* wv_base = w + (oc * icg + ic) * kvol;
        for (int64_t kz = 0; kz < p.kernel_d; ++kz) {
          for (int64_t oz = 0; oz < p.out_d; ++oz) {
            const int64_t iz = oz * p.stride_d - p.pad_front + kz * p.dilation_d;
            if (iz < 0 || iz >= p.in_d) continue;
            const float* xp = xv + iz * in_plane;
            float* yp = yv + oz * out_plane;
            const float* wp = wv_base + kz * p.kernel_h * p.kernel_w;
            for (int64_t ky = 0; ky < p.kernel_h; ++ky) {
              for (int64_t kx = 0; kx < p.kernel_w; ++kx) {
                const float wv = wp[ky * p.kernel_w + kx];
                // Output columns whose input column ix = ox * stride - pad + kx * dilation
                // is inside the image; computing the range keeps the inner loop branch-free.
                const int64_t shift = kx * p.dilation_w - p.pad_left;
                int64_t ox_begin = shift >= 0 ? 0 : (-shift + p.stride_w - 1) / p.stride_w;
                int64_t ox_end = p.in_w - shift <= 0 ? 0 : (p.in_w - shift - 1) / p.stride_w + 1;
                ox_end = std::min(ox_end, p.out_w);
                for (int64_t oy = 0; oy < p.out_h; ++oy) {
                  const int64_t iy = oy * p.stride_h - p.pad_top + ky * p.dilation_h;
                  if (iy < 0 || iy >= p.in_h) continue;
                  const float* xrow = xp + iy * p.in_w;
                  float* yrow = yp + oy * p.out_w;
                  if (p.stride_w == 1) {
                    for (int64_t ox = ox_begin; ox < ox_end; ++ox)
                      yrow[ox] += wv * xrow[ox + shift];
                  } else {
                    for (int64_t ox = ox_begin; ox < ox_end; ++ox) {
                      yrow[ox] += wv * xrow[ox * p.stride_w + shift];
                    }
                  }
                }
              }
            }
          }
        }
      }
      if (residual) {
        const float* rp = residual + (n * p.out_c + oc) * out_vol;
        for (int64_t i = 0; i < out_vol; ++i) yv[i] += rp[i];
      }
      if (p.activation == Activation::kRelu) {
        for (int64_t i = 0; i < out_vol; ++i) yv[i] = std::max(yv[i], 0.f);
      } else if (p.activation == Activation::kLeakyRelu) {
        for (int64_t i = 0; i < out_vol; ++i) yv[i] = yv[i] < 0.f ? yv[i] * p.alpha : yv[i];
      }
    }
  }
}

Status ref_Conv(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out) {
  TR_ASSIGN_OR_RETURN(ConvParams p, conv_params(n, in[0]->shape(), in[1]->shape()));
  const Tensor* b = in.size() > 2 ? in[2] : nullptr;
  if (in[0]->dtype() != DType::kFloat32 || in[1]->dtype() != DType::kFloat32) {
    return BadInput(n.describe() + ": only float32 is supported");
  }
  conv2d_reference(p, in[0]->data<float>(), in[1]->data<float>(), b ? b->data<float>() : nullptr,
                   nullptr, out[0].data<float>());
  return Status::Ok();
}

}  // namespace tr::nn
