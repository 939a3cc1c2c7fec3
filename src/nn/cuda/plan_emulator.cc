#include "nn/cuda/plan_emulator.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace tr::nn::cuda {

float round_to_storage(float f, Storage s) {
  if (s == Storage::kF32 || !std::isfinite(f) || f == 0.f) return f;
  const float a = std::fabs(f);
  const int mantissa_bits = s == Storage::kF16 ? 10 : 7;
  if (s == Storage::kF16) {
    if (a >= 65520.f) return std::copysign(std::numeric_limits<float>::infinity(), f);
    if (a < 6.103515625e-05f) {  // fp16 subnormals: a fixed quantum of 2^-24
      const float q = std::ldexp(1.f, -24);
      return std::copysign(std::nearbyint(a / q) * q, f);
    }
  }
  int e = 0;
  std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1): one ulp is 2^(e - 1 - mantissa_bits)
  const float q = std::ldexp(1.f, e - 1 - mantissa_bits);
  return std::copysign(std::nearbyint(a / q) * q, f);
}

namespace {

float apply(Act act, float v, float alpha) {
  switch (act) {
    case Act::kNone:
      return v;
    case Act::kRelu:
      return v > 0.f ? v : 0.f;
    case Act::kLeakyRelu:
      return v > 0.f ? v : v * alpha;
    case Act::kSigmoid:
      return 1.f / (1.f + std::exp(-v));
  }
  return v;
}

class Emulator {
 public:
  explicit Emulator(const CudaPlan& p) : p_(p), elem_(storage_bytes(p.storage)) {
    // Poison: a step that reads what no step wrote shows up as NaN in the output.
    arena_.assign(static_cast<size_t>(p.arena_bytes / elem_), std::nanf(""));
    weights_.resize(p.weights.size());
    for (size_t i = 0; i < weights_.size(); ++i) {
      weights_[i] = round_to_storage(p.weights[i], p.storage);
    }
  }

  Result<std::vector<Tensor>> run(const std::vector<Tensor>& inputs) {
    if (inputs.size() != p_.input_shapes.size()) {
      return BadInput(p_.model + ": emulate_plan: expected " +
                      std::to_string(p_.input_shapes.size()) + " inputs");
    }
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (inputs[i].shape() != p_.input_shapes[i] || inputs[i].dtype() != DType::kFloat32) {
        return BadInput(p_.model + ": emulate_plan: input " + std::to_string(i) + " is " +
                        shape_str(inputs[i].shape()) + ", the plan is for " +
                        shape_str(p_.input_shapes[i]));
      }
    }
    std::vector<Tensor> outs(p_.output_shapes.size());
    for (const Step& s : p_.steps) {
      switch (s.kind) {
        case StepKind::kInput:
          input(s, inputs[s.io_index]);
          break;
        case StepKind::kOutput:
          outs[s.io_index] = output(s);
          break;
        case StepKind::kGemm:
        case StepKind::kIm2colGemm:
          gemm(s);
          break;
        case StepKind::kDepthwise:
          depthwise(s);
          break;
        case StepKind::kUpsample:
          upsample(s);
          break;
        case StepKind::kCopy:
        case StepKind::kActivation:
          elementwise(s, false);
          break;
        case StepKind::kAdd:
          elementwise(s, true);
          break;
      }
    }
    return outs;
  }

 private:
  // Element (pixel p, channel c) of a view.
  float* at(const View& v, int64_t p, int64_t c) {
    return &arena_[p_.buffers[v.buffer].offset / elem_ + p * v.pitch + v.c_offset + c];
  }
  float store(float v) { return round_to_storage(v, p_.storage); }

  void input(const Step& s, const Tensor& t) {
    const float* src = t.data<float>();
    const View& o = s.out;
    const int64_t hw = o.h * o.w;
    for (int64_t n = 0; n < o.n; ++n) {
      for (int64_t c = 0; c < o.c; ++c) {
        for (int64_t i = 0; i < hw; ++i) *at(o, n * hw + i, c) = store(src[(n * o.c + c) * hw + i]);
      }
    }
  }

  Tensor output(const Step& s) {
    Tensor t = Tensor::f32(s.nchw);
    float* dst = t.data<float>();
    const View& v = s.in;
    const int64_t hw = v.h * v.w;
    for (int64_t n = 0; n < v.n; ++n) {
      for (int64_t c = 0; c < v.c; ++c) {
        for (int64_t i = 0; i < hw; ++i) {
          dst[(n * v.c + c) * hw + i] = apply(s.act, *at(v, n * hw + i, c), s.alpha);
        }
      }
    }
    return t;
  }

  void gemm(const Step& s) {
    const View& in = s.in;
    const View& out = s.out;
    View x = in;  // the GEMM's [pixels, k] operand
    if (s.kind == StepKind::kIm2colGemm) {
      x = View{s.scratch, out.n, out.h, out.w, s.gemm_k, 0, s.k_pitch};
      const int64_t cin = in.c;
      for (int64_t n = 0; n < out.n; ++n) {
        for (int64_t oy = 0; oy < out.h; ++oy) {
          for (int64_t ox = 0; ox < out.w; ++ox) {
            const int64_t p = (n * out.h + oy) * out.w + ox;
            for (int64_t ky = 0; ky < s.kh; ++ky) {
              for (int64_t kx = 0; kx < s.kw; ++kx) {
                const int64_t iy = oy * s.stride_h - s.pad_top + ky * s.dil_h;
                const int64_t ix = ox * s.stride_w - s.pad_left + kx * s.dil_w;
                const bool inside = iy >= 0 && iy < in.h && ix >= 0 && ix < in.w;
                for (int64_t ci = 0; ci < cin; ++ci) {
                  *at(x, p, (ky * s.kw + kx) * cin + ci) =
                      inside ? *at(in, (n * in.h + iy) * in.w + ix, ci) : 0.f;
                }
              }
            }
          }
        }
      }
    }
    const float* w = &weights_[s.weight_offset];
    const int64_t pixels = out.pixels();
    std::vector<float> row(s.gemm_k);
    for (int64_t p = 0; p < pixels; ++p) {
      for (int64_t k = 0; k < s.gemm_k; ++k) row[k] = *at(x, p, k);
      for (int64_t co = 0; co < s.gemm_m; ++co) {
        float acc = 0.f;
        const float* wr = w + co * s.k_pitch;
        for (int64_t k = 0; k < s.gemm_k; ++k) acc += wr[k] * row[k];
        if (s.in2.valid()) acc += *at(s.in2, p, co);
        if (s.has_bias) acc += weights_[s.bias_offset + co];
        *at(out, p, co) = store(apply(s.act, acc, s.alpha));
      }
    }
  }

  void depthwise(const Step& s) {
    const View& in = s.in;
    const View& out = s.out;
    const float* w = &weights_[s.weight_offset];
    for (int64_t n = 0; n < out.n; ++n) {
      for (int64_t oy = 0; oy < out.h; ++oy) {
        for (int64_t ox = 0; ox < out.w; ++ox) {
          const int64_t p = (n * out.h + oy) * out.w + ox;
          for (int64_t c = 0; c < out.c; ++c) {
            float acc = 0.f;
            for (int64_t ky = 0; ky < s.kh; ++ky) {
              const int64_t iy = oy * s.stride_h - s.pad_top + ky * s.dil_h;
              if (iy < 0 || iy >= in.h) continue;
              for (int64_t kx = 0; kx < s.kw; ++kx) {
                const int64_t ix = ox * s.stride_w - s.pad_left + kx * s.dil_w;
                if (ix < 0 || ix >= in.w) continue;
                acc += w[(ky * s.kw + kx) * out.c + c] * *at(in, (n * in.h + iy) * in.w + ix, c);
              }
            }
            if (s.has_bias) acc += weights_[s.bias_offset + c];
            if (s.in2.valid()) acc += *at(s.in2, p, c);
            *at(out, p, c) = store(apply(s.act, acc, s.alpha));
          }
        }
      }
    }
  }

  void upsample(const Step& s) {
    const View& in = s.in;
    const View& out = s.out;
    for (int64_t n = 0; n < out.n; ++n) {
      for (int64_t oy = 0; oy < out.h; ++oy) {
        const float cy = std::clamp(oy * s.y_mul + s.y_add, 0.f, static_cast<float>(in.h - 1));
        const int64_t y0 = static_cast<int64_t>(cy), y1 = std::min(y0 + 1, in.h - 1);
        const float wy = cy - static_cast<float>(y0);
        for (int64_t ox = 0; ox < out.w; ++ox) {
          const float cx = std::clamp(ox * s.x_mul + s.x_add, 0.f, static_cast<float>(in.w - 1));
          const int64_t x0 = static_cast<int64_t>(cx), x1 = std::min(x0 + 1, in.w - 1);
          const float wx = cx - static_cast<float>(x0);
          const int64_t p = (n * out.h + oy) * out.w + ox;
          const int64_t base = n * in.h;
          for (int64_t c = 0; c < out.c; ++c) {
            const float a = *at(in, (base + y0) * in.w + x0, c);
            const float b = *at(in, (base + y0) * in.w + x1, c);
            const float d = *at(in, (base + y1) * in.w + x0, c);
            const float e = *at(in, (base + y1) * in.w + x1, c);
            const float top = a + (b - a) * wx, bottom = d + (e - d) * wx;
            *at(out, p, c) = store(top + (bottom - top) * wy);
          }
        }
      }
    }
  }

  void elementwise(const Step& s, bool add) {
    const int64_t pixels = s.out.pixels();
    for (int64_t p = 0; p < pixels; ++p) {
      for (int64_t c = 0; c < s.out.c; ++c) {
        float v = *at(s.in, p, c);
        if (add) v += *at(s.in2, p, c);
        *at(s.out, p, c) = store(apply(s.act, v, s.alpha));
      }
    }
  }

  const CudaPlan& p_;
  const int64_t elem_;
  std::vector<float> arena_;
  std::vector<float> weights_;
};

}  // namespace

Result<std::vector<Tensor>> emulate_plan(const CudaPlan& plan, const std::vector<Tensor>& inputs) {
  return Emulator(plan).run(inputs);
}

}  // namespace tr::nn::cuda
