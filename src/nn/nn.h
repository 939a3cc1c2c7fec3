// talkrender's model runtime: public interface. Everything else in src/nn is internal.
//
// Lifetime and threads: a Model is immutable once loaded and may be shared by any number of
// threads. A Session holds the per-run state (compiled plans, activation buffers) and is NOT
// thread-safe: use one Session per thread; Sessions of one Model share its weights.
#pragma once

#include <memory>
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

  struct Impl;
  explicit Model(std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

// Activation precision of the cuda backend; the cpu and reference backends always compute in
// float32. Inputs and outputs are float32 whatever the precision.
enum class Precision { kFloat16, kBFloat16, kFloat32 };
const char* precision_name(Precision p);
// "fp16"/"float16", "bf16"/"bfloat16", "fp32"/"float32" -> Precision.
Result<Precision> parse_precision(const std::string& s);
// Whether this binary was built with the CUDA backend (TALKRENDER_CUDA).
bool cuda_backend_built();

struct SessionOptions {
  BackendKind backend = BackendKind::kCpu;
  int threads = 0;                            // 0 = one per core
  Precision precision = Precision::kFloat16;  // cuda only
  // Drop the session's reference to the model's weights once the first plan is compiled
  // (the backend keeps its own copy in the layout it needs): a long render then holds the
  // weights once, not twice. The session cannot compile another plan afterwards, so this
  // is for callers that run one set of input shapes; memory is freed only if the caller
  // drops its Model too.
  bool release_weights = false;
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

  struct Impl;
  explicit Session(std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace tr::nn
