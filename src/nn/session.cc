// Session: validates named inputs, compiles one plan per input-shape set (shape inference,
// per-shape passes, backend compile) and runs it.
#include <cstring>
#include <map>

#include "nn/backend.h"
#ifdef TR_NN_CUDA_MODULE_BUILT
#include "nn/cuda/exec/module.h"
#endif
#include "nn/graph.h"
#include "nn/nn.h"
#include "nn/ops/infer.h"
#include "nn/passes/passes.h"

namespace tr::nn {

#ifndef TR_NN_HAVE_CPU_BACKEND
// Until src/nn/cpu/ exists, "cpu" is served by the reference kernels.
std::unique_ptr<Backend> make_cpu_backend(Precision, bool) { return make_reference_backend(); }
CpuInfo cpu_info() { return CpuInfo{"none (reference kernels)", false, 8}; }
#endif

Result<Precision> resolve_precision(BackendKind backend, std::optional<Precision> requested) {
  switch (backend) {
    case BackendKind::kCuda:
      return !requested || *requested == Precision::kAuto ? Precision::kFloat16 : *requested;
    case BackendKind::kReference:
      if (requested && *requested != Precision::kFloat32 && *requested != Precision::kAuto)
        return BadInput(std::string("the reference backend computes in fp32 only, not ") +
                        precision_name(*requested));
      return Precision::kFloat32;
    case BackendKind::kCpu:
      break;
  }
  if (!requested || *requested == Precision::kFloat32) return Precision::kFloat32;
  const CpuInfo cpu = cpu_info();
  switch (*requested) {
    case Precision::kAuto:
      return cpu.bf16_faster ? Precision::kBFloat16 : Precision::kFloat32;
    case Precision::kBFloat16:
      if (!cpu.native_bf16)
        return BadInput(
            "precision bf16 on the cpu backend needs a CPU with native bf16 "
            "(AVX512_BF16 or AMX); this one lacks both (oneDNN's ISA here: " +
            cpu.isa + "); use fp32 or auto");
      return Precision::kBFloat16;
    default:
      return BadInput(std::string("the cpu backend computes in fp32 or bf16, not ") +
                      precision_name(*requested));
  }
}

bool cuda_backend_built() {
#ifdef TR_NN_CUDA_MODULE_BUILT
  return true;
#else
  return false;
#endif
}

// Plans kept per Session (one per input-shape set, e.g. per batch size in use).
constexpr size_t kMaxCachedPlans = 16;
// Graph inputs that feed shape computation (Resize scales/sizes, Reshape shape, Pad pads...)
// and hold at most this many elements are baked into the plan as constants, keyed by value.
constexpr int64_t kMaxBakedElements = 64;

namespace {

// The plan key: every input's shape, plus the contents of the baked ones.
struct PlanKey {
  std::vector<Shape> shapes;
  std::string baked_bytes;
  bool operator<(const PlanKey& o) const {
    return shapes != o.shapes ? shapes < o.shapes : baked_bytes < o.baked_bytes;
  }
};

}  // namespace

struct Session::Impl {
  // What run() needs of the model, copied so that the Model itself need not outlive us.
  std::string name;
  std::vector<TensorInfo> inputs;
  bool optimize = true;
  // The graph plans are compiled from: shares the model's tensors (no copy of the weights);
  // emptied after the first compile with SessionOptions::release_weights.
  Graph graph;
  bool weights_released = false;
  SessionOptions opts;
  Precision precision = Precision::kFloat32;  // opts.precision resolved
  std::unique_ptr<Backend> backend;
  const Executable* last_run = nullptr;  // for profile()
  std::vector<bool> shape_operand;       // per graph input: feeds shape computation
  int64_t weights_bytes = 0;             // the graph's constants at create (memory_use())
  std::map<PlanKey, std::pair<std::unique_ptr<Executable>, std::vector<bool>>> plans;
};

Session::Session(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Session::~Session() = default;

Result<std::unique_ptr<Session>> Session::create(std::shared_ptr<const Model> model,
                                                 const SessionOptions& opts) {
  if (!model) return BadInput("Session::create: no model");
  auto impl = std::make_unique<Impl>();
  impl->name = model->name();
  impl->inputs = model->inputs();
  impl->optimize = model->load_options().optimize;
  impl->graph = model->graph();
  impl->opts = opts;
  TR_ASSIGN_OR_RETURN(impl->precision, resolve_precision(opts.backend, opts.precision));
  switch (opts.backend) {
    case BackendKind::kReference:
      impl->backend = make_reference_backend();
      break;
    case BackendKind::kCpu:
      impl->backend = make_cpu_backend(impl->precision, opts.profile);
      break;
    case BackendKind::kCuda:
#ifdef TR_NN_CUDA_MODULE_BUILT
    {
      // The executor lives in libtalkrender_cuda.so, loaded only now (module.h), so that
      // this binary starts on machines without CUDA. Fail at create, not at the first
      // frame: no module, no CUDA libraries, no driver or no GPU, each with its own line.
      TR_ASSIGN_OR_RETURN(const cuda::ModuleApi* api, cuda::load_module());
      auto device = api->device_description();
      if (!device.ok()) return device.error();
      impl->backend = api->make_backend(impl->precision);
      break;
    }
#else
      return BadInput(
          "backend 'cuda' is not built into this binary (configure with -DTALKRENDER_CUDA=ON "
          "on a machine with the CUDA toolkit)");
#endif
  }
  if (!impl->backend)
    return RuntimeError("backend '" + std::string(backend_name(opts.backend)) +
                        "' is not available");
  impl->shape_operand = shape_operand_inputs(impl->graph);
  for (const Value& v : impl->graph.values) {
    if (v.is_constant()) impl->weights_bytes += static_cast<int64_t>(v.constant.nbytes());
  }
  return std::make_unique<Session>(std::move(impl));
}

Result<std::vector<Tensor>> Session::run(const std::vector<NamedTensor>& inputs) {
  const Impl& m = *impl_;
  const Graph& mg = m.graph;
  const auto& infos = m.inputs;
  // Order the inputs as the graph expects, checking names, types and ranks.
  std::vector<Tensor> ordered(infos.size());
  std::vector<bool> given(infos.size(), false);
  for (const auto& [name, t] : inputs) {
    size_t i = 0;
    while (i < infos.size() && infos[i].name != name) ++i;
    if (i == infos.size()) {
      std::string names;
      for (const auto& info : infos) names += (names.empty() ? "" : ", ") + info.name;
      return BadInput(m.name + ": the model has no input '" + name + "' (inputs: " + names + ")");
    }
    if (given[i]) return BadInput(m.name + ": input '" + name + "' given twice");
    given[i] = true;
    const Value& val = mg.values[mg.inputs[i]];
    if (t.empty() || t.dtype() != val.dtype) {
      return BadInput(m.name + ": input '" + name + "' must be " + dtype_name(val.dtype) +
                      ", got " + (t.empty() ? "nothing" : dtype_name(t.dtype())));
    }
    const Shape& want = infos[i].shape;
    bool fits = t.rank() == want.size();
    for (size_t d = 0; fits && d < want.size(); ++d) fits = want[d] < 0 || want[d] == t.dim(d);
    if (!fits) {
      return BadInput(m.name + ": input '" + name + "' has shape " + shape_str(t.shape()) +
                      ", the model expects " + shape_str(want) + " (-1: any)");
    }
    for (int64_t d : t.shape()) {
      if (d == 0) return BadInput(m.name + ": input '" + name + "' is empty");
    }
    ordered[i] = t;
  }
  for (size_t i = 0; i < infos.size(); ++i) {
    if (!given[i]) return BadInput(m.name + ": input '" + infos[i].name + "' is missing");
  }
  PlanKey key;
  std::vector<bool> baked(ordered.size(), false);
  for (size_t i = 0; i < ordered.size(); ++i) {
    const Tensor& t = ordered[i];
    key.shapes.push_back(t.shape());
    if (impl_->shape_operand[i] && t.numel() <= kMaxBakedElements) {
      baked[i] = true;
      key.baked_bytes.append(std::to_string(i) + ":");
      key.baked_bytes.append(static_cast<const char*>(t.raw()), t.nbytes());
    }
  }
  auto it = impl_->plans.find(key);
  if (it == impl_->plans.end() && impl_->weights_released) {
    return BadInput(m.name +
                    ": this session released its weights after its first plan "
                    "(SessionOptions::release_weights) and cannot run other input shapes (" +
                    shape_str(key.shapes[0]) + ")");
  }
  if (it == impl_->plans.end()) {
    // Compile a plan for this shape set on a copy (weights are shared, not copied).
    Graph g = mg;
    std::vector<ValueId> runtime_inputs;
    for (size_t i = 0; i < g.inputs.size(); ++i) {
      Value& v = g.values[g.inputs[i]];
      v.shape = key.shapes[i];
      v.shape_known = true;
      if (baked[i]) {
        // A copy: the caller may reuse its buffer for the next run.
        v.constant = ordered[i].clone();
      } else {
        runtime_inputs.push_back(g.inputs[i]);
      }
    }
    g.inputs = runtime_inputs;
    auto st = infer_shapes(g);
    if (!st.ok()) return BadInput(st.error().message);
    if (m.optimize) {
      st = optimize_for_shapes(g);
      if (!st.ok()) return BadInput(st.error().message);
    }
    TR_ASSIGN_OR_RETURN(auto exe, impl_->backend->compile(g, impl_->opts.threads));
    // Bound the cache: a caller cycling through many shapes must not grow memory forever.
    if (impl_->plans.size() >= kMaxCachedPlans) impl_->plans.clear();
    it = impl_->plans.emplace(key, std::make_pair(std::move(exe), baked)).first;
    if (impl_->opts.release_weights) {
      // Input and output descriptions stay (run() checks against them); the tensors go.
      for (Value& v : impl_->graph.values) v.constant = Tensor();
      impl_->weights_released = true;
    }
  }
  std::vector<Tensor> runtime;
  for (size_t i = 0; i < ordered.size(); ++i) {
    if (!it->second.second[i]) runtime.push_back(ordered[i]);
  }
  impl_->last_run = it->second.first.get();
  return it->second.first->run(runtime);
}

Precision Session::precision() const { return impl_->precision; }

Session::MemoryUse Session::memory_use() const {
  MemoryUse m;
  m.weights_bytes = impl_->weights_bytes;
  for (const auto& [key, plan] : impl_->plans) m.workspace_bytes += plan.first->workspace_bytes();
  return m;
}

std::vector<LayerProfile> Session::profile() const {
  return impl_->last_run ? impl_->last_run->profile() : std::vector<LayerProfile>{};
}

Result<std::vector<Tensor>> run_in_calls(Session& session, const std::vector<NamedTensor>& inputs,
                                         int64_t per_call) {
  if (inputs.empty() || inputs[0].second.rank() == 0) return session.run(inputs);
  const int64_t batch = inputs[0].second.dim(0);
  if (per_call <= 0 || per_call == batch) return session.run(inputs);
  for (const auto& [name, t] : inputs) {
    if (t.rank() == 0 || t.dim(0) != batch)
      return BadInput("input '" + name + "' has shape " + shape_str(t.shape()) +
                      ": every input needs the same batch, " + std::to_string(batch));
  }
  if (batch % per_call != 0)
    return BadInput("the model runs a fixed batch of " + std::to_string(per_call) +
                    "; a batch of " + std::to_string(batch) + " is not a multiple of it");
  std::vector<Tensor> outs;
  for (int64_t start = 0; start < batch; start += per_call) {
    std::vector<NamedTensor> part;
    for (const auto& [name, t] : inputs) {
      Shape s = t.shape();
      s[0] = per_call;
      Tensor slice(t.dtype(), s);
      std::memcpy(slice.raw(),
                  static_cast<const char*>(t.raw()) + start / per_call * slice.nbytes(),
                  slice.nbytes());
      part.emplace_back(name, std::move(slice));
    }
    TR_ASSIGN_OR_RETURN(std::vector<Tensor> got, session.run(part));
    if (outs.empty()) {
      for (const Tensor& o : got) {
        if (o.rank() == 0 || o.dim(0) != per_call)
          return BadInput("output of shape " + shape_str(o.shape()) + " does not have the " +
                          "call's batch " + std::to_string(per_call) + " as dimension 0");
        Shape s = o.shape();
        s[0] = batch;
        outs.emplace_back(o.dtype(), s);
      }
    }
    if (got.size() != outs.size()) return RuntimeError("the calls returned different outputs");
    for (size_t i = 0; i < got.size(); ++i) {
      if (got[i].nbytes() * static_cast<size_t>(batch / per_call) != outs[i].nbytes())
        return RuntimeError("output " + std::to_string(i) + " changed its shape between calls");
      std::memcpy(static_cast<char*>(outs[i].raw()) + start / per_call * got[i].nbytes(),
                  got[i].raw(), got[i].nbytes());
    }
  }
  return outs;
}

}  // namespace tr::nn
