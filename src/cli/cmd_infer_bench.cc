// talkrender infer-bench --model M.onnx --batch 1,2,4,8 --threads N [--backend ref|cpu]
//                        [--runs R] [--json] [--device cpu|cuda] [--precision P] [--profile]
// Times a model on random inputs shaped from the model: one warm-up run (which also
// compiles the plan for that batch), then the median of R >= 5 timed runs.
// A model exported with a fixed batch (e.g. 1) cannot take a batch of B in one call: batch B
// then runs as B / fixed calls per timed run, and the output says so; a B that is not a
// multiple of the fixed batch exits 2. ms/frame is always a run's time over the B frames it
// computed.
// Memory: each batch size gets its own session, which drops the model's weights once its plan
// is compiled (SessionOptions::release_weights) and the model is reloaded for the next batch
// size, so the process holds the weights once (packed), as a render does, not twice.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "common/interrupt.h"
#include "nn/nn.h"

namespace tr::cli {
namespace {

int fail(const Error& e) {
  std::fprintf(stderr, "talkrender infer-bench: %s\n", e.message.c_str());
  return e.exit_code();
}

// The batch every input of `m` is fixed at, or 0 when the batch is dynamic.
int64_t fixed_batch(const std::vector<nn::TensorInfo>& infos) {
  for (const auto& info : infos)
    if (!info.shape.empty() && info.shape[0] >= 1) return info.shape[0];
  return 0;
}

// Per-layer figures of the plan that ran last, then the same summed by op type.
void print_profile(std::FILE* out, const std::vector<nn::LayerProfile>& layers, int64_t batch) {
  double total = 0;
  for (const auto& l : layers) total += l.ms;
  std::fprintf(out, "profile, batch %lld: %.3f ms per run over %zu steps\n",
               static_cast<long long>(batch), total, layers.size());
  std::fprintf(out, "%9s %6s  %-14s %-36s %s\n", "ms", "%", "op", "layer", "implementation");
  for (const auto& l : layers)
    std::fprintf(out, "%9.3f %6.2f  %-14s %-36s %s\n", l.ms, total > 0 ? 100 * l.ms / total : 0.0,
                 l.op.c_str(), l.layer.c_str(), l.impl.c_str());
  struct Sum {
    double ms = 0;
    int steps = 0;
    std::map<std::string, int> impls;
  };
  std::map<std::string, Sum> by_op;
  for (const auto& l : layers) {
    Sum& s = by_op[l.op];
    s.ms += l.ms;
    ++s.steps;
    ++s.impls[l.impl];
  }
  std::vector<std::pair<std::string, Sum>> sorted(by_op.begin(), by_op.end());
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
  std::fprintf(out, "by op type:\n%9s %6s  %-14s %6s  %s\n", "ms", "%", "op", "steps",
               "implementations (steps)");
  for (const auto& [op, s] : sorted) {
    std::string impls;
    for (const auto& [impl, count] : s.impls)
      impls += (impls.empty() ? "" : ", ") + impl + " (" + std::to_string(count) + ")";
    std::fprintf(out, "%9.3f %6.2f  %-14s %6d  %s\n", s.ms, total > 0 ? 100 * s.ms / total : 0.0,
                 op.c_str(), s.steps, impls.c_str());
  }
  std::fflush(out);
}

Result<std::vector<nn::NamedTensor>> random_inputs(const std::string& name,
                                                   const std::vector<nn::TensorInfo>& infos,
                                                   int64_t batch, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(0.f, 1.f);
  std::vector<nn::NamedTensor> out;
  for (const auto& info : infos) {
    Shape s = info.shape;
    for (size_t d = 0; d < s.size(); ++d) {
      if (s[d] >= 0) continue;
      if (d != 0) {
        return BadInput(name + ": input '" + info.name + "' " + shape_str(info.shape) +
                        " has a dynamic dimension other than the batch; cannot shape it");
      }
      s[d] = batch;
    }
    Tensor t = Tensor::f32(s);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
    out.emplace_back(info.name, std::move(t));
  }
  return out;
}

}  // namespace

int cmd_infer_bench(int argc, char** argv) {
  CLI::App app{"Time a model's inference at several batch sizes.", "talkrender infer-bench"};
  std::string model_path, batches_arg = "1", backend = "cpu";
  int threads = 0, runs = 5;
  bool json = false, profile = false;
  app.add_option("--model", model_path, "the .onnx model")->required();
  app.add_option("--batch", batches_arg, "comma-separated batch sizes, e.g. 1,2,4,8")
      ->capture_default_str();
  app.add_option("--threads", threads, "runtime threads (0 = one per core)")->capture_default_str();
  app.add_option("--backend", backend, "ref, cpu or cuda")->capture_default_str();
  std::string device, precision;
  app.add_option("--device", device, "cpu or cuda (sets --backend)");
  app.add_option("--precision", precision,
                 "activations: cpu fp32 (default) or bf16 (CPUs with native bf16); cuda fp16 "
                 "(default), bf16 or fp32; auto: " +
                     std::string(kCpuAutoPrecision));
  app.add_option("--runs", runs, "timed runs per batch (>= 5); the median is reported")
      ->capture_default_str();
  app.add_flag("--json", json, "one JSON object per batch on stdout");
  app.add_flag("--profile", profile,
               "per layer: implementation and ms, then summed by op type (cpu backend; on "
               "stderr with --json)");
  if (int rc = parse_args(app, argc, argv); rc >= 0) return rc;
  if (threads < 0) return fail(BadInput("--threads must be >= 0"));
  if (runs < 5) return fail(BadInput("--runs must be >= 5"));
  std::vector<int64_t> batches;
  {
    size_t pos = 0;
    while (pos <= batches_arg.size()) {
      size_t comma = batches_arg.find(',', pos);
      std::string item =
          batches_arg.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
      char* end = nullptr;
      long long b = std::strtoll(item.c_str(), &end, 10);
      if (item.empty() || *end != '\0' || b < 1 || b > 4096) {
        return fail(
            BadInput("--batch '" + batches_arg + "' must be positive integers, e.g. 1,2,4"));
      }
      batches.push_back(b);
      if (comma == std::string::npos) break;
      pos = comma + 1;
    }
  }
  if (!device.empty()) {
    if (device != "cpu" && device != "cuda") {
      return fail(BadInput("--device '" + device + "' must be cpu or cuda"));
    }
    backend = device;
  }
  std::optional<nn::Precision> precision_kind;
  if (!precision.empty()) {
    auto parsed = nn::parse_precision(precision);
    if (!parsed.ok()) return fail(parsed.error());
    precision_kind = *parsed;
  }
  auto backend_kind = nn::parse_backend(backend);
  if (!backend_kind.ok()) return fail(backend_kind.error());
  if (auto p = nn::resolve_precision(*backend_kind, precision_kind); !p.ok())
    return fail(p.error());
  const auto load_start = std::chrono::steady_clock::now();
  auto model = nn::Model::load(model_path);
  if (!model.ok()) return fail(model.error());
  const double load_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - load_start)
          .count();
  nn::SessionOptions opts;
  opts.backend = *backend_kind;
  opts.threads = threads;
  opts.precision = precision_kind;
  opts.profile = profile;
  opts.release_weights = true;
  auto session = nn::Session::create(*model, opts);
  if (!session.ok()) return fail(session.error());
  const std::vector<nn::TensorInfo> model_inputs = (*model)->inputs();
  const char* precision_ran = nn::precision_name((*session)->precision());
  // The ISA and layout that ran (cpu); the other backends name themselves.
  std::string isa = "-", layout = "-";
  if (*backend_kind == nn::BackendKind::kCpu) {
    const nn::CpuInfo cpu = nn::cpu_info();
    const int block = (*session)->precision() == nn::Precision::kBFloat16 ? 16 : cpu.block;
    isa = cpu.isa;
    layout = "nChw" + std::to_string(block) + "c";
  }
  const int64_t model_batch = fixed_batch(model_inputs);
  for (int64_t b : batches) {
    if (model_batch > 0 && b % model_batch != 0)
      return fail(BadInput(model_path + ": the model takes a fixed batch of " +
                           std::to_string(model_batch) + " (its inputs are not dynamic in the " +
                           "batch); --batch " + std::to_string(b) + " is not a multiple of it"));
  }

  if (!json) {
    std::printf(
        "model %s (loaded in %.0f ms), backend %s, precision %s, isa %s, layout %s, threads %d, "
        "median of %d runs\n",
        model_path.c_str(), load_ms, nn::backend_name(*backend_kind), precision_ran, isa.c_str(),
        layout.c_str(), threads, runs);
    if (model_batch > 0)
      std::printf("the model has a fixed batch of %lld: batch B runs as B/%lld calls per run\n",
                  static_cast<long long>(model_batch), static_cast<long long>(model_batch));
    std::printf("%6s %12s %14s %10s %6s\n", "batch", "ms/run", "ms/frame", "frames/s", "calls");
    std::fflush(stdout);
  }
  std::mt19937 rng(1234);
  bool first = true;
  for (int64_t b : batches) {
    if (!first) {
      // A session that released its weights compiles no other plan: a fresh one.
      session = Result<std::unique_ptr<nn::Session>>(BadInput("unset"));
      auto reloaded = nn::Model::load(model_path);
      if (!reloaded.ok()) return fail(reloaded.error());
      session = nn::Session::create(*reloaded, opts);
      if (!session.ok()) return fail(session.error());
    }
    first = false;
    // The session shares the weights until its plan is compiled; then only the packed copy
    // stays.
    model = Result<std::shared_ptr<const nn::Model>>(BadInput("released"));
    // One call computes `per_call` frames; a run makes `calls` calls to compute b frames.
    const int64_t per_call = model_batch > 0 ? model_batch : b;
    const int64_t calls = b / per_call;
    auto inputs = random_inputs(model_path, model_inputs, per_call, rng);
    if (!inputs.ok()) return fail(inputs.error());
    auto warm = (*session)->run(*inputs);  // compiles this batch's plan
    if (!warm.ok()) return fail(warm.error());
    std::vector<double> times;
    for (int r = 0; r < runs; ++r) {
      if (interrupted()) return fail(Interrupted());
      const auto t0 = std::chrono::steady_clock::now();
      for (int64_t c = 0; c < calls; ++c) {
        auto out = (*session)->run(*inputs);
        if (!out.ok()) return fail(out.error());
      }
      const auto t1 = std::chrono::steady_clock::now();
      times.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
    std::sort(times.begin(), times.end());
    const double median = times.size() % 2
                              ? times[times.size() / 2]
                              : 0.5 * (times[times.size() / 2 - 1] + times[times.size() / 2]);
    const double per_frame = median / static_cast<double>(b);
    if (json) {
      std::printf(
          "{\"batch\": %lld, \"ms_per_frame\": %.4f, \"threads\": %d, \"backend\": \"%s\", "
          "\"precision\": \"%s\", \"isa\": \"%s\", \"layout\": \"%s\", \"model_batch\": %lld, "
          "\"calls_per_run\": %lld}\n",
          static_cast<long long>(b), per_frame, threads, nn::backend_name(*backend_kind),
          precision_ran, isa.c_str(), layout.c_str(), static_cast<long long>(model_batch),
          static_cast<long long>(calls));
    } else {
      std::printf("%6lld %12.3f %14.3f %10.2f %6lld\n", static_cast<long long>(b), median,
                  per_frame, 1000.0 / per_frame, static_cast<long long>(calls));
    }
    std::fflush(stdout);
    if (profile) print_profile(json ? stderr : stdout, (*session)->profile(), b);
  }
  return 0;
}

}  // namespace tr::cli
