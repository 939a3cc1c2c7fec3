// Own kernels of the CUDA executor; see kernels.h. Written for clarity first: one thread per
// output element, or per 8 consecutive channels (one 16-byte load in fp16) where the view's
// channels, pitch and address allow; grid-stride loops with 64-bit indices (batch 32 at
// 320x320 has 3.3 M pixels). Every kernel accumulates in fp32.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "nn/cuda/exec/kernels.h"

namespace tr::nn::cuda {
namespace {

constexpr int kThreads = 256;

template <class T>
__device__ __forceinline__ float to_f(T v);
template <>
__device__ __forceinline__ float to_f<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ float to_f<__half>(__half v) {
  return __half2float(v);
}
template <>
__device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

template <class T>
__device__ __forceinline__ T from_f(float v);
template <>
__device__ __forceinline__ float from_f<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_f<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// V consecutive elements at p, as floats. V == 8 needs p 16-byte aligned.
template <class T, int V>
__device__ __forceinline__ void load(const T* p, float (&f)[V]) {
  if constexpr (V == 8 && sizeof(T) == 2) {
    const uint4 u = *reinterpret_cast<const uint4*>(p);
    const T* e = reinterpret_cast<const T*>(&u);
#pragma unroll
    for (int i = 0; i < 8; ++i) f[i] = to_f<T>(e[i]);
  } else if constexpr (V == 8 && sizeof(T) == 4) {
    const float4 a = reinterpret_cast<const float4*>(p)[0];
    const float4 b = reinterpret_cast<const float4*>(p)[1];
    f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w;
    f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i) f[i] = to_f<T>(p[i]);
  }
}

template <class T, int V>
__device__ __forceinline__ void store(T* p, const float (&f)[V]) {
  if constexpr (V == 8 && sizeof(T) == 2) {
    uint4 u;
    T* e = reinterpret_cast<T*>(&u);
#pragma unroll
    for (int i = 0; i < 8; ++i) e[i] = from_f<T>(f[i]);
    *reinterpret_cast<uint4*>(p) = u;
  } else if constexpr (V == 8 && sizeof(T) == 4) {
    reinterpret_cast<float4*>(p)[0] = make_float4(f[0], f[1], f[2], f[3]);
    reinterpret_cast<float4*>(p)[1] = make_float4(f[4], f[5], f[6], f[7]);
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i) p[i] = from_f<T>(f[i]);
  }
}

__device__ __forceinline__ float activate(DevAct a, float v, float alpha) {
  switch (a) {
    case DevAct::kRelu:
      return fmaxf(v, 0.f);
    case DevAct::kLeakyRelu:
      return v > 0.f ? v : v * alpha;
    case DevAct::kSigmoid:
      return 1.f / (1.f + expf(-v));
    default:
      return v;
  }
}

template <class T>
__device__ __forceinline__ T* at(const DevView& v, int64_t pixel, int64_t c) {
  return static_cast<T*>(v.ptr) + pixel * v.pitch + c;
}

#define TR_GRID_STRIDE(i, total)                                                             \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (total); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

template <class T>
__global__ void input_kernel(const float* src, DevView out, int64_t total) {
  const int64_t hw = out.h * out.w;
  TR_GRID_STRIDE(i, total) {  // i walks the NCHW source: coalesced reads
    const int64_t x = i % hw, t = i / hw;
    const int64_t c = t % out.c, n = t / out.c;
    *at<T>(out, n * hw + x, c) = from_f<T>(src[i]);
  }
}

template <class T>
__global__ void output_kernel(DevView in, float* dst, DevAct act, float alpha, int64_t total) {
  const int64_t hw = in.h * in.w;
  TR_GRID_STRIDE(i, total) {  // i walks the NCHW destination: coalesced writes
    const int64_t x = i % hw, t = i / hw;
    const int64_t c = t % in.c, n = t / in.c;
    dst[i] = activate(act, to_f<T>(*at<T>(in, n * hw + x, c)), alpha);
  }
}

template <class T, int V>
__global__ void im2col_kernel(DevView in, DevView out, DevConv g, T* scratch, int64_t k_pitch,
                              int64_t total) {
  const int64_t groups = in.c / V, taps = g.kh * g.kw;
  TR_GRID_STRIDE(i, total) {
    const int64_t ci = (i % groups) * V, t = i / groups;
    const int64_t tap = t % taps, p = t / taps;
    const int64_t ox = p % out.w, q = p / out.w;
    const int64_t oy = q % out.h, n = q / out.h;
    const int64_t iy = oy * g.stride_h - g.pad_top + (tap / g.kw) * g.dil_h;
    const int64_t ix = ox * g.stride_w - g.pad_left + (tap % g.kw) * g.dil_w;
    float v[V];
#pragma unroll
    for (int k = 0; k < V; ++k) v[k] = 0.f;
    if (iy >= 0 && iy < in.h && ix >= 0 && ix < in.w) {
      load<T, V>(at<T>(in, (n * in.h + iy) * in.w + ix, ci), v);
    }
    store<T, V>(scratch + p * k_pitch + tap * in.c + ci, v);
  }
}

template <class T, int V>
__global__ void depthwise_kernel(DevView in, DevView res, DevView out, const T* w, const T* bias,
                                 DevConv g, DevAct act, float alpha, int64_t total) {
  const int64_t groups = out.c / V;
  TR_GRID_STRIDE(i, total) {
    const int64_t c = (i % groups) * V, p = i / groups;
    const int64_t ox = p % out.w, q = p / out.w;
    const int64_t oy = q % out.h, n = q / out.h;
    float acc[V];
#pragma unroll
    for (int k = 0; k < V; ++k) acc[k] = 0.f;
    for (int64_t ky = 0; ky < g.kh; ++ky) {
      const int64_t iy = oy * g.stride_h - g.pad_top + ky * g.dil_h;
      if (iy < 0 || iy >= in.h) continue;
      for (int64_t kx = 0; kx < g.kw; ++kx) {
        const int64_t ix = ox * g.stride_w - g.pad_left + kx * g.dil_w;
        if (ix < 0 || ix >= in.w) continue;
        float x[V], wv[V];
        load<T, V>(at<T>(in, (n * in.h + iy) * in.w + ix, c), x);
        load<T, V>(w + (ky * g.kw + kx) * out.c + c, wv);
#pragma unroll
        for (int k = 0; k < V; ++k) acc[k] += wv[k] * x[k];
      }
    }
    float extra[V];
    if (bias) {
      load<T, V>(bias + c, extra);
#pragma unroll
      for (int k = 0; k < V; ++k) acc[k] += extra[k];
    }
    if (res.ptr) {
      load<T, V>(at<T>(res, p, c), extra);
#pragma unroll
      for (int k = 0; k < V; ++k) acc[k] += extra[k];
    }
#pragma unroll
    for (int k = 0; k < V; ++k) acc[k] = activate(act, acc[k], alpha);
    store<T, V>(at<T>(out, p, c), acc);
  }
}

template <class T, int V>
__global__ void upsample_kernel(DevView in, DevView out, float y_mul, float y_add, float x_mul,
                                float x_add, int64_t total) {
  const int64_t groups = out.c / V;
  TR_GRID_STRIDE(i, total) {
    const int64_t c = (i % groups) * V, p = i / groups;
    const int64_t ox = p % out.w, q = p / out.w;
    const int64_t oy = q % out.h, n = q / out.h;
    const float cy = fminf(fmaxf(oy * y_mul + y_add, 0.f), static_cast<float>(in.h - 1));
    const float cx = fminf(fmaxf(ox * x_mul + x_add, 0.f), static_cast<float>(in.w - 1));
    const int64_t y0 = static_cast<int64_t>(cy), x0 = static_cast<int64_t>(cx);
    const int64_t y1 = y0 + 1 < in.h ? y0 + 1 : in.h - 1, x1 = x0 + 1 < in.w ? x0 + 1 : in.w - 1;
    const float wy = cy - static_cast<float>(y0), wx = cx - static_cast<float>(x0);
    const int64_t row0 = (n * in.h + y0) * in.w, row1 = (n * in.h + y1) * in.w;
    float a[V], b[V], d[V], e[V];
    load<T, V>(at<T>(in, row0 + x0, c), a);
    load<T, V>(at<T>(in, row0 + x1, c), b);
    load<T, V>(at<T>(in, row1 + x0, c), d);
    load<T, V>(at<T>(in, row1 + x1, c), e);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const float top = a[k] + (b[k] - a[k]) * wx, bottom = d[k] + (e[k] - d[k]) * wx;
      a[k] = top + (bottom - top) * wy;
    }
    store<T, V>(at<T>(out, p, c), a);
  }
}

template <class T, int V>
__global__ void elementwise_kernel(DevView a, DevView b, DevView out, DevAct act, float alpha,
                                   int64_t total) {
  const int64_t groups = out.c / V;
  TR_GRID_STRIDE(i, total) {
    const int64_t c = (i % groups) * V, p = i / groups;
    float x[V];
    load<T, V>(at<T>(a, p, c), x);
    if (b.ptr) {
      float y[V];
      load<T, V>(at<T>(b, p, c), y);
#pragma unroll
      for (int k = 0; k < V; ++k) x[k] += y[k];
    }
#pragma unroll
    for (int k = 0; k < V; ++k) x[k] = activate(act, x[k], alpha);
    store<T, V>(at<T>(out, p, c), x);
  }
}

template <class T>
__global__ void convert_kernel(const float* src, T* dst, int64_t total) {
  TR_GRID_STRIDE(i, total) { dst[i] = from_f<T>(src[i]); }
}

unsigned grid_for(int64_t total) {
  // Enough blocks to fill any GPU several times over; the loops stride over the rest.
  return static_cast<unsigned>(
      std::max<int64_t>(1, std::min<int64_t>((total + kThreads - 1) / kThreads, 1 << 16)));
}

// 8-channel vector access is possible on this view: channels, pitch and address aligned.
bool vec8(const DevView& v) {
  return !v.ptr ||
         (v.c % 8 == 0 && v.pitch % 8 == 0 && reinterpret_cast<uintptr_t>(v.ptr) % 16 == 0);
}

#define TR_DISPATCH_TYPE(t, ...) \
  switch (t) {                   \
    case DevType::kF32: {        \
      using T = float;           \
      __VA_ARGS__;               \
      break;                     \
    }                            \
    case DevType::kF16: {        \
      using T = __half;          \
      __VA_ARGS__;               \
      break;                     \
    }                            \
    case DevType::kBF16: {       \
      using T = __nv_bfloat16;   \
      __VA_ARGS__;               \
      break;                     \
    }                            \
  }

}  // namespace

cudaError_t launch_input(DevType t, const float* src, DevView out, cudaStream_t s) {
  const int64_t total = out.n * out.c * out.h * out.w;
  TR_DISPATCH_TYPE(t, input_kernel<T><<<grid_for(total), kThreads, 0, s>>>(src, out, total));
  return cudaGetLastError();
}

cudaError_t launch_output(DevType t, DevView in, float* dst, DevAct act, float alpha,
                          cudaStream_t s) {
  const int64_t total = in.n * in.c * in.h * in.w;
  TR_DISPATCH_TYPE(
      t, output_kernel<T><<<grid_for(total), kThreads, 0, s>>>(in, dst, act, alpha, total));
  return cudaGetLastError();
}

cudaError_t launch_im2col(DevType t, DevView in, DevView out, DevConv g, void* scratch,
                          int64_t k_pitch, cudaStream_t s) {
  const bool v8 = vec8(in) && k_pitch % 8 == 0;
  const int64_t total = out.n * out.h * out.w * g.kh * g.kw * (in.c / (v8 ? 8 : 1));
  if (v8) {
    TR_DISPATCH_TYPE(t, im2col_kernel<T, 8><<<grid_for(total), kThreads, 0, s>>>(
                            in, out, g, static_cast<T*>(scratch), k_pitch, total));
  } else {
    TR_DISPATCH_TYPE(t, im2col_kernel<T, 1><<<grid_for(total), kThreads, 0, s>>>(
                            in, out, g, static_cast<T*>(scratch), k_pitch, total));
  }
  return cudaGetLastError();
}

cudaError_t launch_depthwise(DevType t, DevView in, DevView res, DevView out, const void* w,
                             const void* bias, DevConv g, DevAct act, float alpha, cudaStream_t s) {
  const bool v8 = vec8(in) && vec8(res) && vec8(out) && reinterpret_cast<uintptr_t>(w) % 16 == 0 &&
                  reinterpret_cast<uintptr_t>(bias) % 16 == 0;
  const int64_t total = out.n * out.h * out.w * (out.c / (v8 ? 8 : 1));
  if (v8) {
    TR_DISPATCH_TYPE(t, depthwise_kernel<T, 8><<<grid_for(total), kThreads, 0, s>>>(
                            in, res, out, static_cast<const T*>(w), static_cast<const T*>(bias), g,
                            act, alpha, total));
  } else {
    TR_DISPATCH_TYPE(t, depthwise_kernel<T, 1><<<grid_for(total), kThreads, 0, s>>>(
                            in, res, out, static_cast<const T*>(w), static_cast<const T*>(bias), g,
                            act, alpha, total));
  }
  return cudaGetLastError();
}

cudaError_t launch_upsample(DevType t, DevView in, DevView out, float y_mul, float y_add,
                            float x_mul, float x_add, cudaStream_t s) {
  const bool v8 = vec8(in) && vec8(out);
  const int64_t total = out.n * out.h * out.w * (out.c / (v8 ? 8 : 1));
  if (v8) {
    TR_DISPATCH_TYPE(t, upsample_kernel<T, 8><<<grid_for(total), kThreads, 0, s>>>(
                            in, out, y_mul, y_add, x_mul, x_add, total));
  } else {
    TR_DISPATCH_TYPE(t, upsample_kernel<T, 1><<<grid_for(total), kThreads, 0, s>>>(
                            in, out, y_mul, y_add, x_mul, x_add, total));
  }
  return cudaGetLastError();
}

cudaError_t launch_elementwise(DevType t, DevView a, DevView b, DevView out, DevAct act,
                               float alpha, cudaStream_t s) {
  const bool v8 = vec8(a) && vec8(b) && vec8(out);
  const int64_t total = out.n * out.h * out.w * (out.c / (v8 ? 8 : 1));
  if (v8) {
    TR_DISPATCH_TYPE(t, elementwise_kernel<T, 8>
                     <<<grid_for(total), kThreads, 0, s>>>(a, b, out, act, alpha, total));
  } else {
    TR_DISPATCH_TYPE(t, elementwise_kernel<T, 1>
                     <<<grid_for(total), kThreads, 0, s>>>(a, b, out, act, alpha, total));
  }
  return cudaGetLastError();
}

cudaError_t launch_convert(DevType t, const float* src, void* dst, int64_t count, cudaStream_t s) {
  TR_DISPATCH_TYPE(
      t, convert_kernel<T><<<grid_for(count), kThreads, 0, s>>>(src, static_cast<T*>(dst), count));
  return cudaGetLastError();
}

}  // namespace tr::nn::cuda
