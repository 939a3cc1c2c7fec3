// The interface between the Graph and whatever executes it. Session picks a Backend,
// compiles each (shape-inferred) graph once and runs the Executable many times.
#pragma once

#include <memory>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"
#include "nn/graph.h"
#include "nn/nn.h"

namespace tr::nn {

class Executable {
 public:
  virtual ~Executable() = default;
  // `inputs` follow Graph::inputs (same order, shapes and dtypes the graph was compiled
  // for); returns Graph::outputs in order. Not thread-safe; one Executable per Session.
  virtual Result<std::vector<Tensor>> run(const std::vector<Tensor>& inputs) = 0;
  // Per-step figures when the backend was made to profile (cpu); empty otherwise.
  virtual std::vector<LayerProfile> profile() const { return {}; }
  // Bytes held beside the weights, for memory reports: the activation arena and scratch
  // buffers. 0 when the backend does not say.
  virtual int64_t workspace_bytes() const { return 0; }
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  // `g` is optimised and shape-inferred with every shape concrete (batch included).
  // The Executable may keep references into g's constant tensors (shared buffers) but not to
  // g itself: the caller may destroy g after compile() returns.
  // threads: 0 = one per core.
  virtual Result<std::unique_ptr<Executable>> compile(const Graph& g, int threads) = 0;
};

// Plain loops, one kernel per op (src/nn/ref/): the correctness oracle.
std::unique_ptr<Backend> make_reference_backend();
// The optimised CPU backend (src/nn/cpu/, engineer nncpu). Defined there; the build defines
// TR_NN_HAVE_CPU_BACKEND when src/nn/cpu/ has sources, otherwise Session falls back to the
// reference backend for BackendKind::kCpu.
// `precision` is resolved (kFloat32 or kBFloat16); `profile` times every step.
std::unique_ptr<Backend> make_cpu_backend(Precision precision, bool profile);
// The CUDA backend (src/nn/cuda/exec/), only in builds with TR_NN_HAVE_CUDA_BACKEND: the
// graph is lowered to a CudaPlan (src/nn/cuda/plan.h) and run with cuBLASLt and own kernels.
// Defined in libtalkrender_cuda.so (which Session loads, nn/cuda/exec/module.h) and in
// talkrender-nn; talkrender itself does not link it.
std::unique_ptr<Backend> make_cuda_backend(Precision precision);

}  // namespace tr::nn
