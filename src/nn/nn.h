// talkrender's model runtime: public interface. Everything else in src/nn is internal.
//
// Lifetime and threads: a Model is immutable once loaded and may be shared by any number of
// threads. A Session holds the per-run state (compiled plans, activation buffers) and is NOT
// thread-safe: use one Session per thread; Sessions of one Model share its weights.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"

namespace tr::nn {

class Graph;  // nn/graph.h (internal)

enum class BackendKind { kReference, kCpu, kCuda };
const char* backend_name(BackendKind b);
// "ref"/"reference", "cpu", "cuda" -> BackendKind.
Result<BackendKind> parse_backend(const std::string& s);

struct TensorInfo {
  std::string name;
  Shape shape;  // -1 marks a dynamic dimension (usually the batch)
};

struct LoadOptions {
  bool optimize = true;  // run the graph passes (folding, fusion) after import
  // PyTorch checkpoints (.pth): SyncTalk_2D's ave and hubert generators have the same
  // tensors, so "ave" / "hubert" says which; "" = hubert if the file's or its folder's name
  // says so, else ave.
  std::string checkpoint_audio_mode;
  // A file whose inputs all declare a fixed batch of 1 (Ultralight's pth2onnx.py exports
  // so) loads with a dynamic batch when shape inference proves the graph batch-agnostic
  // (nn/fixed_batch.h); Model::fixed_batch() says whether it did and, if not, why.
  bool relax_fixed_batch = false;
};

// The batch a model file declares, and what LoadOptions::relax_fixed_batch made of it.
struct FixedBatch {
  int64_t file_batch = 0;  // every input's leading dimension in the file; 0 when dynamic
  bool relaxed = false;    // made dynamic at load: inputs() and outputs() show -1
  std::string why_not;     // file_batch > 0, relaxing asked for and refused: the reason
  // The batch one Session::run call must take: 0 = any.
  int64_t required() const { return relaxed ? 0 : file_batch; }
};

class Model {
 public:
  // Errors (kBadInput) name the file and the problem: unreadable, not ONNX, unsupported op
  // (with the node's name), bad shapes.
  static Result<std::shared_ptr<const Model>> load(const std::string& path,
                                                   const LoadOptions& opts = {});
  static Result<std::shared_ptr<const Model>> load_from_bytes(const std::string& bytes,
                                                              const std::string& name,
                                                              const LoadOptions& opts = {});
  ~Model();

  const std::string& name() const;  // the path, or the name given
  const std::vector<TensorInfo>& inputs() const;
  const std::vector<TensorInfo>& outputs() const;
  const Graph& graph() const;
  const LoadOptions& load_options() const;
  const FixedBatch& fixed_batch() const;
  // What a .pth was recognised as (family, S, audio layout, widths); "" for ONNX files.
  const std::string& description() const;

  struct Impl;
  explicit Model(std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

// Activation precision. Inputs and outputs are float32 whatever the precision.
// cuda: fp16 (its default), bf16 or fp32. cpu: fp32 (its default) or bf16, which needs a CPU
// that computes bf16 natively (AVX512_BF16 or AMX); weights are converted once at compile and
// the first conv and the output conv (with its sigmoid) stay fp32. reference: fp32 only.
// kAuto: cpu bf16 where the CPU has native bf16, otherwise fp32; cuda fp16.
enum class Precision { kFloat16, kBFloat16, kFloat32, kAuto };
const char* precision_name(Precision p);
// "fp16"/"float16", "bf16"/"bfloat16", "fp32"/"float32", "auto" -> Precision.
Result<Precision> parse_precision(const std::string& s);
// Whether this binary was built with the CUDA backend (TALKRENDER_CUDA).
bool cuda_backend_built();

// What the cpu backend runs on this machine (oneDNN's view of the CPU, which honours
// DNNL_MAX_CPU_ISA).
struct CpuInfo {
  std::string isa;           // oneDNN's effective ISA, e.g. "avx512_core_bf16", "avx2"
  bool native_bf16 = false;  // AVX512_BF16 or AMX
  // bf16 measured faster than fp32 on this kind of CPU, which is what `auto` goes by: AMX,
  // or AMD's AVX512_BF16 (Zen 4/5: about 2x fp32 on the generators). Intel's AVX512_BF16
  // without AMX (Cooper Lake, or Sapphire Rapids with AMX hidden by a hypervisor) runs
  // vdpbf16ps at fp32's FMA rate plus conversions: 1.4-1.5x slower than fp32 there.
  bool bf16_faster = false;
  std::string vendor;  // cpuid vendor string, e.g. "GenuineIntel", "AuthenticAMD"
  // Channel block of the activation layout (nChw16c on AVX-512, nChw8c otherwise);
  // TALKRENDER_CPU_BLOCK=8|16 forces one (tests run both on any machine).
  int block = 8;
};
CpuInfo cpu_info();

// The precision a session with these options computes in, or kBadInput (exit 2) saying why
// it cannot: bf16 on a CPU without native bf16 names what the CPU lacks. `requested` unset:
// the backend's default (cpu and reference fp32, cuda fp16).
Result<Precision> resolve_precision(BackendKind backend, std::optional<Precision> requested);

// One step of a compiled plan, with SessionOptions::profile: the layer (node) it runs, its op
// type, the implementation (oneDNN's impl_info_str(), or "talkrender:..." for our kernels) and
// its mean wall time over the runs so far.
struct LayerProfile {
  std::string layer, op, impl;
  double ms = 0;
};

struct SessionOptions {
  BackendKind backend = BackendKind::kCpu;
  int threads = 0;  // 0 = one per core
  // Unset: the backend's default (see resolve_precision). Session::create fails with
  // kBadInput when the backend cannot run the precision asked for.
  std::optional<Precision> precision;
  // Drop the session's reference to the model's weights once the first plan is compiled
  // (the backend keeps its own copy in the layout it needs): a long render then holds the
  // weights once, not twice. The session cannot compile another plan afterwards, so this
  // is for callers that run one set of input shapes; memory is freed only if the caller
  // drops its Model too.
  bool release_weights = false;
  // Time every step (cpu backend): Session::profile() then reports per-layer figures.
  bool profile = false;
};

using NamedTensor = std::pair<std::string, Tensor>;

class Session {
 public:
  static Result<std::unique_ptr<Session>> create(std::shared_ptr<const Model> model,
                                                 const SessionOptions& opts = {});
  ~Session();

  // Runs the model. Inputs by name, float32; any batch size. Returns the outputs in the
  // model's output order. The first run at a new set of input shapes compiles a plan.
  Result<std::vector<Tensor>> run(const std::vector<NamedTensor>& inputs);
  // The precision this session computes in (SessionOptions::precision resolved).
  Precision precision() const;
  // With SessionOptions::profile: the steps of the plan that ran last, in plan order; empty
  // for backends that do not profile.
  std::vector<LayerProfile> profile() const;
  // Memory the session's runtime holds, for reports (issue 21): the model's weights as loaded
  // (the backend keeps its own copy in its layout, about as large in fp32) and the compiled
  // plans' workspace (activation arena + scratch, Executable::workspace_bytes()).
  struct MemoryUse {
    int64_t weights_bytes = 0, workspace_bytes = 0;
  };
  MemoryUse memory_use() const;

  struct Impl;
  explicit Session(std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

// Runs a batch of B = k * per_call samples (every input's dimension 0) as k calls of
// per_call samples and concatenates the outputs along dimension 0: how a model that keeps
// a fixed batch (FixedBatch::required()) takes any multiple of it. per_call <= 0 or
// per_call == B: one call. A B that is not a multiple is a kBadInput naming both.
Result<std::vector<Tensor>> run_in_calls(Session& session, const std::vector<NamedTensor>& inputs,
                                         int64_t per_call);

}  // namespace tr::nn
