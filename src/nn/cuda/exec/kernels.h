// The CUDA executor's own kernels (kernels.cu). Each implements one CudaPlan step kind with
// exactly the semantics of the CPU plan emulator (nn/cuda/plan_emulator.cc), which CI tests
// against the reference backend; the GEMMs are cuBLASLt's (cuda_backend.cc).
//
// This header is shared by nvcc and the host compiler, so it holds plain structs only (no
// talkrender headers: those are C++20, the .cu files are C++17).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace tr::nn::cuda {

// Element type: 0 fp32, 1 fp16, 2 bf16 (the order of cuda::Storage).
enum class DevType : int { kF32 = 0, kF16 = 1, kBF16 = 2 };
// Activation: the order of cuda::Act.
enum class DevAct : int { kNone = 0, kRelu = 1, kLeakyRelu = 2, kSigmoid = 3 };

// An NHWC view on the device: `ptr` points at channel c_offset of pixel 0; pixel p's
// channel c is ptr[p * pitch + c].
struct DevView {
  void* ptr = nullptr;
  int64_t n = 0, h = 0, w = 0, c = 0, pitch = 0;
};

struct DevConv {
  int64_t kh = 1, kw = 1, stride_h = 1, stride_w = 1, dil_h = 1, dil_w = 1;
  int64_t pad_top = 0, pad_left = 0;
};

// Every launcher returns the launch's error (cudaGetLastError), never synchronises.

// fp32 NCHW `src` -> `out` (rank-2 inputs have h = w = 1).
cudaError_t launch_input(DevType t, const float* src, DevView out, cudaStream_t s);
// `in` -> fp32 NCHW `dst`, with act applied.
cudaError_t launch_output(DevType t, DevView in, float* dst, DevAct act, float alpha,
                          cudaStream_t s);
// Patches of `in` for `out`'s pixels: scratch[p * k_pitch + (ky * kw + kx) * in.c + ci].
cudaError_t launch_im2col(DevType t, DevView in, DevView out, DevConv g, void* scratch,
                          int64_t k_pitch, cudaStream_t s);
// out = act(depthwise(in, w) + bias + res); w is [kh * kw, c], bias/res may be null.
cudaError_t launch_depthwise(DevType t, DevView in, DevView res, DevView out, const void* w,
                             const void* bias, DevConv g, DevAct act, float alpha, cudaStream_t s);
// Bilinear: source coordinate = out_index * mul + add, clamped to [0, in - 1].
cudaError_t launch_upsample(DevType t, DevView in, DevView out, float y_mul, float y_add,
                            float x_mul, float x_add, cudaStream_t s);
// out = act(a (+ b)); b.ptr may be null (copy / activation).
cudaError_t launch_elementwise(DevType t, DevView a, DevView b, DevView out, DevAct act,
                               float alpha, cudaStream_t s);
// fp32 -> the storage type, for the packed weights.
cudaError_t launch_convert(DevType t, const float* src, void* dst, int64_t count, cudaStream_t s);

}  // namespace tr::nn::cuda
