// The reference Executable: runs the nodes in topological order with the plain-loop
// kernels, releasing each intermediate after its last reader.
#include <memory>

#include "common/interrupt.h"
#include "nn/backend.h"
#include "nn/ref/ref_kernels.h"

namespace tr::nn {

namespace {

class ReferenceExecutable final : public Executable {
 public:
  explicit ReferenceExecutable(Graph g) : g_(std::move(g)) {
    last_use_.assign(g_.values.size(), -1);
    for (size_t i = 0; i < g_.nodes.size(); ++i) {
      for (ValueId v : g_.nodes[i].inputs) {
        if (v != kNoId) last_use_[v] = static_cast<int>(i);
      }
    }
    // Graph outputs live to the end.
    for (ValueId v : g_.outputs) last_use_[v] = static_cast<int>(g_.nodes.size());
  }

  Result<std::vector<Tensor>> run(const std::vector<Tensor>& inputs) override {
    if (inputs.size() != g_.inputs.size()) {
      return BadInput(g_.name + ": expected " + std::to_string(g_.inputs.size()) + " inputs, got " +
                      std::to_string(inputs.size()));
    }
    std::vector<Tensor> vals(g_.values.size());
    for (size_t v = 0; v < g_.values.size(); ++v) {
      if (g_.values[v].is_constant()) vals[v] = g_.values[v].constant;
    }
    for (size_t i = 0; i < inputs.size(); ++i) {
      const Value& val = g_.values[g_.inputs[i]];
      if (inputs[i].shape() != val.shape || inputs[i].dtype() != val.dtype) {
        return BadInput(g_.name + ": input '" + val.name + "' is " + dtype_name(inputs[i].dtype()) +
                        " " + shape_str(inputs[i].shape()) + ", the plan expects " +
                        dtype_name(val.dtype) + " " + shape_str(val.shape));
      }
      vals[g_.inputs[i]] = inputs[i];
    }
    std::vector<const Tensor*> in;
    for (size_t i = 0; i < g_.nodes.size(); ++i) {
      if (interrupted()) return Interrupted();
      const Node& n = g_.nodes[i];
      in.clear();
      for (ValueId v : n.inputs) in.push_back(v == kNoId ? nullptr : &vals[v]);
      auto outs = run_ref_node(n, in);
      if (!outs.ok()) return RuntimeError(g_.name + ": " + outs.error().message);
      for (size_t o = 0; o < n.outputs.size() && o < outs->size(); ++o) {
        if (n.outputs[o] != kNoId) vals[n.outputs[o]] = std::move((*outs)[o]);
      }
      for (ValueId v : n.inputs) {
        if (v != kNoId && last_use_[v] == static_cast<int>(i) && !g_.values[v].is_constant()) {
          vals[v] = Tensor();
        }
      }
    }
    std::vector<Tensor> result;
    for (ValueId v : g_.outputs) result.push_back(vals[v]);
    return result;
  }

 private:
  Graph g_;
  std::vector<int> last_use_;
};

class ReferenceBackend final : public Backend {
 public:
  const char* name() const override { return "ref"; }
  Result<std::unique_ptr<Executable>> compile(const Graph& g, int) override {
    return std::unique_ptr<Executable>(std::make_unique<ReferenceExecutable>(g));
  }
};

}  // namespace

std::unique_ptr<Backend> make_reference_backend() { return std::make_unique<ReferenceBackend>(); }

}  // namespace tr::nn
