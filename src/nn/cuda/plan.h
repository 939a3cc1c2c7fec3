// The lowering of a shape-inferred Graph to a CudaPlan: every decision the CUDA executor
// makes (activation layout and precision, buffer sizes and arena offsets, which ops fuse,
// which kernel runs each step, how weights are packed) is taken here, in plain C++ with no
// CUDA header, so that CI machines without a GPU test it (tests/nn/cuda_plan_test.cc) and
// the plan emulator (plan_emulator.h) can run it on the CPU.
//
// Layout: every rank-4 activation is NHWC. A value is a View into a Buffer: the buffer holds
// `pitch` channels per pixel and the view covers channels [c_offset, c_offset + c). Concat
// outputs are buffers whose producers write straight into their slices (pitch = the
// concat's channels), so no concat copies. Pitches are padded to a multiple of 8 elements
// (16 bytes in fp16) so every GEMM leading dimension and vector access is aligned; kernels
// read and write only a view's own channels, never the padding.
//
// GEMMs (cuBLASLt, column-major): a convolution computes D[cout, pixels] = W[cout, k] *
// X[k, pixels] (+ bias per cout, + residual, then ReLU), which in memory is exactly NHWC
// with ld = the pitch of each view. 1x1 stride-1 convs read their input view directly;
// other dense convs first gather patches (im2col) into a scratch buffer laid out
// [pixels, k_pitch] with k = (ky * kw + kx) * cin + ci.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"
#include "nn/graph.h"

namespace tr::nn::cuda {

// Element type of the activations (and of the weights the GEMMs read). GEMMs accumulate in
// fp32 in every case; fp32 storage exists to check the kernels against the reference.
enum class Storage { kF32, kF16, kBF16 };
const char* storage_name(Storage s);
int storage_bytes(Storage s);
// "fp32"/"float32", "fp16"/"float16"/"half", "bf16"/"bfloat16".
Result<Storage> parse_storage(const std::string& s);

// Pitches are rounded up to this many elements; buffer offsets in the arena to kArenaAlign.
inline constexpr int64_t kChannelAlign = 8;
inline constexpr int64_t kArenaAlign = 256;

enum class StepKind {
  kInput,       // graph input: fp32 NCHW staging -> NHWC storage view
  kGemm,        // cuBLASLt: 1x1 stride-1 conv straight on the input view
  kIm2colGemm,  // own im2col kernel into scratch, then cuBLASLt
  kDepthwise,   // own kernel: depthwise conv + bias (+ residual) + activation
  kUpsample,    // own kernel: bilinear resize (align_corners etc.) into the output view
  kCopy,        // own kernel: view -> view channel copy (a concat part that could not be
                // written in place)
  kAdd,         // own kernel: out = act(a + b)
  kActivation,  // own kernel: out = act(in)
  kOutput,      // own kernel: NHWC view -> fp32 NCHW staging, with an activation
                // (the generator's Sigmoid) fused
};
const char* step_kind_name(StepKind k);

enum class Act { kNone, kRelu, kLeakyRelu, kSigmoid };
const char* act_name(Act a);

struct Buffer {
  std::string name;  // the (first) value it holds, for messages and tests
  int64_t n = 0, h = 0, w = 0, pitch = 0;
  int64_t bytes = 0;                  // n * h * w * pitch * element size (scratch: its own size)
  int64_t offset = 0;                 // in the arena, kArenaAlign-aligned
  int first_step = 0, last_step = 0;  // live range (inclusive) over CudaPlan::steps
  bool scratch = false;               // im2col patches
};

// An NHWC tensor inside a buffer.
struct View {
  int buffer = -1;
  int64_t n = 0, h = 0, w = 0, c = 0;
  int64_t c_offset = 0;  // first channel inside the buffer's pitch
  int64_t pitch = 0;     // == buffers[buffer].pitch
  bool valid() const { return buffer >= 0; }
  int64_t pixels() const { return n * h * w; }
};

struct Step {
  StepKind kind = StepKind::kGemm;
  std::string label;               // node names, e.g. "Conv_12+Relu"
  std::vector<std::string> fused;  // the ONNX ops this step covers, e.g. {"Conv","Relu"}
  View in, in2, out;               // in2: residual (GEMM, depthwise) or second Add operand
  Act act = Act::kNone;
  float alpha = 0.01f;  // LeakyRelu slope

  // Convolutions.
  int64_t kh = 1, kw = 1, stride_h = 1, stride_w = 1, dil_h = 1, dil_w = 1;
  int64_t pad_top = 0, pad_left = 0;
  bool has_bias = false;
  // GEMM shape: D[gemm_m = cout, gemm_n = pixels] += W[gemm_m, gemm_k] X[gemm_k, gemm_n].
  int64_t gemm_m = 0, gemm_n = 0, gemm_k = 0;
  int64_t k_pitch = 0;  // leading dimension of the packed weights (and of im2col scratch)
  // Packed weights in CudaPlan::weights (floats): GEMM [gemm_m, k_pitch] row-major;
  // depthwise [kh * kw, c] (channel fastest, so 8 channels are one 16-byte fp16 load).
  int64_t weight_offset = -1, weight_count = 0;
  int64_t bias_offset = -1;  // cout floats, or -1
  int scratch = -1;          // im2col: the scratch buffer

  // Upsample: source coordinate = out_index * mul + add, clamped to [0, in - 1].
  float y_mul = 1.f, y_add = 0.f, x_mul = 1.f, x_add = 0.f;

  // Input / output steps: which graph input / output, and its NCHW shape.
  int io_index = -1;
  Shape nchw;
};

struct CudaPlan {
  Storage storage = Storage::kF16;
  std::string model;  // the graph's name, for messages
  std::vector<Buffer> buffers;
  std::vector<Step> steps;
  int64_t arena_bytes = 0;
  int64_t scratch_bytes_max = 0;  // the largest im2col scratch
  // Packed weights and biases, fp32; each step's offsets point in here. The executor
  // converts them to the storage type once, at compile.
  std::vector<float> weights;
  std::vector<Shape> input_shapes, output_shapes;  // NCHW, in the graph's order

  // Lookups for tests and reports.
  int count(StepKind k) const;
  // Sum of the bytes of every buffer (what the arena would need without reuse).
  int64_t unshared_bytes() const;
  // The "two numbers" for a device run (tools/device/NOTES.md): the bytes the steps must move
  // through device memory as lowered (each step reads its inputs and weights once and
  // writes its output once; im2col writes and re-reads its scratch), and the arithmetic.
  int64_t traffic_bytes() const;
  int64_t flops() const;
  // One line per step: kind, label, shapes, buffer and offsets.
  std::string describe() const;
};

struct PlanOptions {
  Storage storage = Storage::kF16;
  // Write concat parts straight into their slices (off: every part is copied; for tests).
  bool concat_in_place = true;
  // Fuse a Sigmoid that alone reads a conv and feeds a graph output into the output step.
  bool fuse_output_activation = true;
};

// `g` must be optimised (Session's passes) and shape-inferred with concrete shapes: the plan
// is for one batch size. Unsupported ops or layouts give kBadInput naming the node, so a
// caller can fall back to another backend.
Result<CudaPlan> build_cuda_plan(const Graph& g, const PlanOptions& opts = {});

}  // namespace tr::nn::cuda
