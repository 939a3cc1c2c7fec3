// Model: import, load-time optimisation and validation; the public face of src/nn.
#include <algorithm>
#include <chrono>

#include "common/files.h"
#include "nn/checkpoint/pth_reader.h"
#include "nn/checkpoint/state_dict_graph.h"
#include "nn/fixed_batch.h"
#include "nn/graph.h"
#include "nn/nn.h"
#include "nn/onnx_import.h"
#include "nn/ops/infer.h"
#include "nn/passes/passes.h"

namespace tr::nn {

const char* backend_name(BackendKind b) {
  switch (b) {
    case BackendKind::kReference:
      return "ref";
    case BackendKind::kCpu:
      return "cpu";
    case BackendKind::kCuda:
      return "cuda";
  }
  return "?";
}

Result<BackendKind> parse_backend(const std::string& s) {
  if (s == "ref" || s == "reference") return BackendKind::kReference;
  if (s == "cpu") return BackendKind::kCpu;
  if (s == "cuda") return BackendKind::kCuda;
  return BadInput("unknown backend '" + s + "' (ref, cpu or cuda)");
}

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::kFloat16:
      return "fp16";
    case Precision::kBFloat16:
      return "bf16";
    case Precision::kFloat32:
      return "fp32";
    case Precision::kAuto:
      return "auto";
  }
  return "?";
}

Result<Precision> parse_precision(const std::string& s) {
  if (s == "fp16" || s == "float16") return Precision::kFloat16;
  if (s == "bf16" || s == "bfloat16") return Precision::kBFloat16;
  if (s == "fp32" || s == "float32") return Precision::kFloat32;
  if (s == "auto") return Precision::kAuto;
  return BadInput("unknown precision '" + s + "' (fp16, bf16, fp32 or auto)");
}

struct Model::Impl {
  std::string name;
  Graph graph;
  std::vector<TensorInfo> inputs, outputs;
  LoadOptions opts;
  std::string description;
  FixedBatch fixed_batch;
};

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;
const std::string& Model::name() const { return impl_->name; }
const std::vector<TensorInfo>& Model::inputs() const { return impl_->inputs; }
const std::vector<TensorInfo>& Model::outputs() const { return impl_->outputs; }
const Graph& Model::graph() const { return impl_->graph; }
const LoadOptions& Model::load_options() const { return impl_->opts; }
const FixedBatch& Model::fixed_batch() const { return impl_->fixed_batch; }
const std::string& Model::description() const { return impl_->description; }

namespace {

// Output shapes with the dynamic dimensions marked -1: infer at two different sizes of
// every dynamic input dimension (1 and 2) and mark what differs.
Result<std::vector<Shape>> output_shapes(const Graph& g) {
  std::vector<Shape> at[2];
  bool any_dynamic = false;
  for (int pass = 0; pass < 2; ++pass) {
    Graph copy = g;
    for (ValueId v : copy.inputs) {
      Value& val = copy.values[v];
      if (!val.shape_known) {
        return BadInput(g.name + ": input '" + val.name + "' has no declared shape");
      }
      for (int64_t& d : val.shape) {
        if (d < 0) {
          d = pass + 1;
          any_dynamic = true;
        }
      }
    }
    auto st = infer_shapes(copy);
    if (!st.ok()) return st.error();
    for (ValueId v : copy.outputs) at[pass].push_back(copy.values[v].shape);
    if (!any_dynamic) {
      at[1] = at[0];
      break;
    }
  }
  std::vector<Shape> out = at[0];
  for (size_t i = 0; i < out.size(); ++i) {
    if (at[1][i].size() != out[i].size()) {
      out[i].assign(out[i].size(), -1);
      continue;
    }
    for (size_t d = 0; d < out[i].size(); ++d) {
      if (at[1][i][d] != out[i][d]) out[i][d] = -1;
    }
  }
  return out;
}

// torch.save's zip format (by its magic), or a .pth/.pt name: pth_reader then says what is
// wrong with a legacy or non-zip file instead of the ONNX parser failing obscurely.
bool is_checkpoint(const std::string& bytes, const std::string& name) {
  if (bytes.compare(0, 4, "PK\x03\x04") == 0) return true;
  auto ends = [&](const char* ext) {
    const size_t n = std::char_traits<char>::length(ext);
    return name.size() >= n && name.compare(name.size() - n, n, ext) == 0;
  };
  return ends(".pth") || ends(".pt");
}

}  // namespace

Result<std::shared_ptr<const Model>> Model::load_from_bytes(const std::string& bytes,
                                                            const std::string& name,
                                                            const LoadOptions& opts) {
  Graph g;
  std::string description;
  if (is_checkpoint(bytes, name)) {
    // A PyTorch state dict (issue 16): the graph is built from the tensors' names and shapes.
    TR_ASSIGN_OR_RETURN(const StateDict sd, read_pth_bytes(bytes, name));
    StateDictModelInfo info;
    StateDictGraphOptions sdo;
    sdo.audio_mode = opts.checkpoint_audio_mode;
    TR_ASSIGN_OR_RETURN(g, graph_from_state_dict(sd, name, sdo, &info));
    description = info.describe();
  } else {
    TR_ASSIGN_OR_RETURN(g, import_onnx(bytes, name));
  }
  if (opts.optimize) {
    auto st = optimize_for_load(g);
    if (!st.ok()) return BadInput(st.error().message);
  }
  auto impl = std::make_unique<Impl>();
  // The file's batch: the leading dimension every input declares, when they agree on one.
  FixedBatch& fb = impl->fixed_batch;
  for (ValueId v : g.inputs) {
    const Value& val = g.values[v];
    const int64_t b = val.shape_known && !val.shape.empty() ? val.shape[0] : -1;
    fb.file_batch = v == g.inputs[0] ? std::max<int64_t>(b, 0) : (b == fb.file_batch ? b : 0);
  }
  if (opts.relax_fixed_batch && fb.file_batch > 0) {
    TR_ASSIGN_OR_RETURN(fb.relaxed, relax_fixed_batch(g, &fb.why_not));
  }
  impl->name = name;
  impl->opts = opts;
  impl->description = std::move(description);
  for (ValueId v : g.inputs) impl->inputs.push_back({g.values[v].name, g.values[v].shape});
  // Validate the whole graph (ops, attributes, shapes) now, so a bad model fails at load
  // and not at the first frame.
  auto shapes = output_shapes(g);
  if (!shapes.ok()) {
    // A graph input read as a shape operand (Resize scales fed at run time) makes the shapes
    // downstream known only per run: Session validates those when it compiles each plan.
    const auto operands = shape_operand_inputs(g);
    if (std::find(operands.begin(), operands.end(), true) == operands.end()) {
      return BadInput(shapes.error().message);
    }
    std::vector<Shape> declared;
    for (ValueId v : g.outputs) {
      const Value& val = g.values[v];
      declared.push_back(val.shape_known ? Shape(val.shape.size(), -1) : Shape{});
    }
    shapes = std::move(declared);
  }
  for (size_t i = 0; i < g.outputs.size(); ++i) {
    impl->outputs.push_back({g.values[g.outputs[i]].name, (*shapes)[i]});
  }
  impl->graph = std::move(g);
  return std::shared_ptr<const Model>(std::make_shared<Model>(std::move(impl)));
}

Result<std::shared_ptr<const Model>> Model::load(const std::string& path, const LoadOptions& opts) {
  auto bytes = read_file(path);
  if (!bytes.ok()) return BadInput(bytes.error().message);
  return load_from_bytes(*bytes, path, opts);
}

}  // namespace tr::nn
