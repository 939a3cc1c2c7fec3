// talkrender-nn: the lean model runner for a bare GPU machine (tools/device/run.sh). It
// links only the nn core (protobuf/onnx) and, when built, the CUDA executor: no FFmpeg,
// OpenCV, oneDNN or OpenMP.
//
//   talkrender-nn info
//   talkrender-nn plan  --model M.onnx [--batch B] [--precision fp16|bf16|fp32]
//   talkrender-nn check --model M.onnx --goldens PREFIX --batches 1,4,32
//                       [--device cuda|plan|ref] [--precision P] [--tol X]
//       reads PREFIX.b<B>.<input>.npy per model input and PREFIX.b<B>.output.npy (the
//       layout tools/export_models.py writes); exit 1 when max |ours - golden| > tol
//   talkrender-nn bench --model M.onnx --batches 1,4,8,32 [--device ...] [--precision P]
//                       [--iters N] [--repeats R]
//       seeded random inputs in [0, 1); ms/frame of the device work alone (CUDA graph
//       replays, events) and of a whole run() (upload, compute, download), per batch
//
// --device plan runs the CUDA plan in the CPU emulator and ref the reference backend: with
// them the device script is dry-run on a machine without a GPU. Every result line starts
// with "RESULT" and is key=value, for the script's table.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/npy.h"
#include "nn/backend.h"
#include "nn/cuda/plan.h"
#include "nn/cuda/plan_emulator.h"
#include "nn/graph.h"
#include "nn/nn.h"
#include "nn/ops/infer.h"
#include "nn/passes/passes.h"
#ifdef TR_NN_HAVE_CUDA_BACKEND
#include "nn/cuda/exec/cuda_backend.h"
#endif

namespace tr::nn {
namespace {

const char* kUsage =
    "usage: talkrender-nn info\n"
    "       talkrender-nn plan  --model M.onnx [--batch B] [--precision fp16|bf16|fp32]\n"
    "       talkrender-nn check --model M.onnx --goldens PREFIX --batches 1,4,32\n"
    "                           [--device cuda|plan|ref] [--precision P] [--tol X]\n"
    "       talkrender-nn bench --model M.onnx --batches 1,4,8,32 [--device cuda|plan|ref]\n"
    "                           [--precision P] [--iters N] [--repeats R]\n";

int fail(const Error& e) {
  std::fprintf(stderr, "talkrender-nn: %s\n", e.message.c_str());
  return e.exit_code();
}

using Args = std::map<std::string, std::string>;

Result<Args> parse_args(int argc, char** argv, int first) {
  Args a;
  for (int i = first; i < argc; ++i) {
    const std::string k = argv[i];
    if (k.rfind("--", 0) != 0 || i + 1 >= argc) {
      return BadInput("bad argument '" + k + "' (options are --name value)\n" + kUsage);
    }
    a[k.substr(2)] = argv[++i];
  }
  return a;
}

std::string get(const Args& a, const std::string& k, const std::string& def = "") {
  auto it = a.find(k);
  return it == a.end() ? def : it->second;
}

Result<std::vector<int64_t>> parse_batches(const std::string& s) {
  std::vector<int64_t> out;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t comma = s.find(',', pos);
    if (comma == std::string::npos) comma = s.size();
    const std::string tok = s.substr(pos, comma - pos);
    char* end = nullptr;
    const long v = std::strtol(tok.c_str(), &end, 10);
    if (tok.empty() || *end != '\0' || v < 1 || v > 4096) {
      return BadInput("--batches '" + s + "': each batch must be an integer in 1..4096");
    }
    out.push_back(v);
    pos = comma + 1;
  }
  if (out.empty()) return BadInput("--batches is empty");
  return out;
}

// Session's per-shape preparation, for the backends this binary drives directly.
Result<Graph> prepare(const Model& m, const std::vector<Shape>& shapes) {
  Graph g = m.graph();
  for (size_t i = 0; i < g.inputs.size(); ++i) {
    g.values[g.inputs[i]].shape = shapes[i];
    g.values[g.inputs[i]].shape_known = true;
  }
  TR_RETURN_IF_ERROR(infer_shapes(g));
  TR_RETURN_IF_ERROR(optimize_for_shapes(g));
  return g;
}

std::vector<Shape> input_shapes(const Model& m, int64_t batch) {
  std::vector<Shape> out;
  for (const TensorInfo& info : m.inputs()) {
    Shape s = info.shape;
    for (int64_t& d : s) d = d < 0 ? batch : d;
    if (!s.empty()) s[0] = batch;
    out.push_back(s);
  }
  return out;
}

// One compiled model at one batch size on one device.
class Runner {
 public:
  virtual ~Runner() = default;
  virtual Result<std::vector<Tensor>> run(const std::vector<Tensor>& in) = 0;
  // Device time per run without host copies, where the device can tell.
  virtual Result<double> compute_ms(int iters, int repeats) { return BadInput("no device timing"); }
};

class ExeRunner : public Runner {
 public:
  explicit ExeRunner(std::unique_ptr<Executable> e, bool cuda) : exe_(std::move(e)), cuda_(cuda) {}
  Result<std::vector<Tensor>> run(const std::vector<Tensor>& in) override { return exe_->run(in); }
  Result<double> compute_ms(int iters, int repeats) override {
#ifdef TR_NN_HAVE_CUDA_BACKEND
    if (cuda_) return cuda::compute_ms(*exe_, iters, repeats);
#endif
    return Runner::compute_ms(iters, repeats);
  }

 private:
  std::unique_ptr<Executable> exe_;
  bool cuda_;
};

class PlanRunner : public Runner {
 public:
  explicit PlanRunner(cuda::CudaPlan p) : plan_(std::move(p)) {}
  Result<std::vector<Tensor>> run(const std::vector<Tensor>& in) override {
    return cuda::emulate_plan(plan_, in);
  }

 private:
  cuda::CudaPlan plan_;
};

Result<std::unique_ptr<Runner>> make_runner(const Model& m, int64_t batch,
                                            const std::string& device, Precision precision) {
  TR_ASSIGN_OR_RETURN(Graph g, prepare(m, input_shapes(m, batch)));
  if (device == "ref") {
    TR_ASSIGN_OR_RETURN(auto exe, make_reference_backend()->compile(g, 0));
    return std::unique_ptr<Runner>(std::make_unique<ExeRunner>(std::move(exe), false));
  }
  TR_ASSIGN_OR_RETURN(cuda::Storage storage, cuda::parse_storage(precision_name(precision)));
  if (device == "plan") {
    cuda::PlanOptions opts;
    opts.storage = storage;
    TR_ASSIGN_OR_RETURN(cuda::CudaPlan plan, cuda::build_cuda_plan(g, opts));
    return std::unique_ptr<Runner>(std::make_unique<PlanRunner>(std::move(plan)));
  }
  if (device == "cuda") {
#ifdef TR_NN_HAVE_CUDA_BACKEND
    TR_ASSIGN_OR_RETURN(auto exe, make_cuda_backend(precision)->compile(g, 0));
    return std::unique_ptr<Runner>(std::make_unique<ExeRunner>(std::move(exe), true));
#else
    return BadInput(
        "--device cuda: this talkrender-nn was built without CUDA "
        "(configure with -DTALKRENDER_CUDA=ON)");
#endif
  }
  return BadInput("unknown --device '" + device + "' (cuda, plan or ref)");
}

struct Common {
  std::shared_ptr<const Model> model;
  std::string model_path, device;
  Precision precision = Precision::kFloat16;
};

Result<Common> load_common(const Args& a) {
  Common c;
  c.model_path = get(a, "model");
  if (c.model_path.empty()) return BadInput(std::string("--model is required\n") + kUsage);
  c.device = get(a, "device", "cuda");
  TR_ASSIGN_OR_RETURN(c.precision, parse_precision(get(a, "precision", "fp16")));
  TR_ASSIGN_OR_RETURN(c.model, Model::load(c.model_path));
  return c;
}

int cmd_info() {
#ifdef TR_NN_HAVE_CUDA_BACKEND
  auto d = cuda::device_description();
  if (!d.ok()) return fail(d.error());
  std::printf("RESULT kind=info cuda=built device=\"%s\"\n", d->c_str());
#else
  std::printf("RESULT kind=info cuda=not-built\n");
#endif
  return 0;
}

int cmd_plan(const Args& a) {
  auto c = load_common(a);
  if (!c.ok()) return fail(c.error());
  const int64_t batch = std::atoll(get(a, "batch", "1").c_str());
  if (batch < 1) return fail(BadInput("--batch must be >= 1"));
  auto g = prepare(*c->model, input_shapes(*c->model, batch));
  if (!g.ok()) return fail(g.error());
  auto storage = cuda::parse_storage(precision_name(c->precision));
  cuda::PlanOptions opts;
  opts.storage = *storage;
  auto plan = cuda::build_cuda_plan(*g, opts);
  if (!plan.ok()) return fail(plan.error());
  std::printf("%s", plan->describe().c_str());
  return 0;
}

int cmd_check(const Args& a) {
  auto c = load_common(a);
  if (!c.ok()) return fail(c.error());
  auto batches = parse_batches(get(a, "batches", "1"));
  if (!batches.ok()) return fail(batches.error());
  const std::string prefix = get(a, "goldens");
  if (prefix.empty()) return fail(BadInput("--goldens PREFIX is required"));
  const float tol = std::strtof(get(a, "tol", "2e-3").c_str(), nullptr);
  bool all_ok = true;
  for (int64_t b : *batches) {
    const std::string stem = prefix + ".b" + std::to_string(b);
    std::vector<Tensor> inputs;
    for (const TensorInfo& info : c->model->inputs()) {
      auto t = read_npy(stem + "." + info.name + ".npy");
      if (!t.ok()) return fail(BadInput(t.error().message));
      inputs.push_back(*t);
    }
    auto want = read_npy(stem + ".output.npy");
    if (!want.ok()) return fail(BadInput(want.error().message));
    auto runner = make_runner(*c->model, b, c->device, c->precision);
    if (!runner.ok()) return fail(runner.error());
    // Twice: the second run is the CUDA graph replay, which is what production runs.
    auto got = (*runner)->run(inputs);
    if (got.ok()) got = (*runner)->run(inputs);
    if (!got.ok()) return fail(got.error());
    if ((*got)[0].shape() != want->shape()) {
      return fail(RuntimeError("output shape " + shape_str((*got)[0].shape()) + ", golden " +
                               shape_str(want->shape())));
    }
    float max_abs = 0.f;
    double sum_abs = 0.0;
    const float* g = (*got)[0].data<float>();
    const float* w = want->data<float>();
    for (int64_t i = 0; i < want->numel(); ++i) {
      const float d = std::fabs(g[i] - w[i]);
      if (!(d <= max_abs)) max_abs = d;  // NaN sticks
      sum_abs += d;
    }
    const bool ok = max_abs <= tol;
    all_ok = all_ok && ok;
    std::printf(
        "RESULT kind=check model=%s device=%s precision=%s batch=%lld max_abs=%.3e "
        "mean_abs=%.3e tol=%.1e ok=%d\n",
        c->model_path.c_str(), c->device.c_str(), precision_name(c->precision),
        static_cast<long long>(b), max_abs, sum_abs / std::max<int64_t>(want->numel(), 1), tol,
        ok ? 1 : 0);
    std::fflush(stdout);
  }
  return all_ok ? 0 : 1;
}

int cmd_bench(const Args& a) {
  auto c = load_common(a);
  if (!c.ok()) return fail(c.error());
  auto batches = parse_batches(get(a, "batches", "1,4,8,32"));
  if (!batches.ok()) return fail(batches.error());
  const int iters = std::max(1, std::atoi(get(a, "iters", "20").c_str()));
  const int repeats = std::max(1, std::atoi(get(a, "repeats", "5").c_str()));
  std::mt19937 rng(1234);
  std::uniform_real_distribution<float> dist(0.f, 1.f);
  for (int64_t b : *batches) {
    std::vector<Tensor> inputs;
    for (const Shape& s : input_shapes(*c->model, b)) {
      Tensor t = Tensor::f32(s);
      for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
      inputs.push_back(t);
    }
    auto runner = make_runner(*c->model, b, c->device, c->precision);
    if (!runner.ok()) return fail(runner.error());
    for (int w = 0; w < 2; ++w) {  // warm-up, then the CUDA graph capture
      auto out = (*runner)->run(inputs);
      if (!out.ok()) return fail(out.error());
    }
    std::vector<double> walls;
    for (int r = 0; r < iters; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      auto out = (*runner)->run(inputs);
      if (!out.ok()) return fail(out.error());
      walls.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(walls.begin(), walls.end());
    const double wall = walls[walls.size() / 2];
    auto compute = (*runner)->compute_ms(iters, repeats);
    std::printf(
        "RESULT kind=bench model=%s device=%s precision=%s batch=%lld run_ms=%.4f "
        "run_ms_per_frame=%.4f compute_ms=%.4f compute_ms_per_frame=%.4f\n",
        c->model_path.c_str(), c->device.c_str(), precision_name(c->precision),
        static_cast<long long>(b), wall, wall / b, compute.ok() ? *compute : -1.0,
        compute.ok() ? *compute / b : -1.0);
    std::fflush(stdout);
  }
  return 0;
}

int main_impl(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  if (cmd == "info") return cmd_info();
  auto args = parse_args(argc, argv, 2);
  if (!args.ok()) return fail(args.error());
  if (cmd == "plan") return cmd_plan(*args);
  if (cmd == "check") return cmd_check(*args);
  if (cmd == "bench") return cmd_bench(*args);
  return fail(BadInput("unknown command '" + cmd + "'\n" + kUsage));
}

}  // namespace
}  // namespace tr::nn

int main(int argc, char** argv) { return tr::nn::main_impl(argc, argv); }
