// talkrender infer-bench --model M.onnx --batch 1,2,4,8 --threads N [--backend ref|cpu]
//                        [--runs R] [--json] [--device cpu|cuda] [--precision P]
// Times a model on random inputs shaped from the model: one warm-up run (which also
// compiles the plan for that batch), then the median of R >= 5 timed runs.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "common/interrupt.h"
#include "nn/nn.h"

namespace tr::cli {
namespace {

int fail(const Error& e) {
  std::fprintf(stderr, "talkrender infer-bench: %s\n", e.message.c_str());
  return e.exit_code();
}

Result<std::vector<nn::NamedTensor>> random_inputs(const nn::Model& m, int64_t batch,
                                                   std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(0.f, 1.f);
  std::vector<nn::NamedTensor> out;
  for (const auto& info : m.inputs()) {
    Shape s = info.shape;
    for (size_t d = 0; d < s.size(); ++d) {
      if (s[d] >= 0) continue;
      if (d != 0) {
        return BadInput(m.name() + ": input '" + info.name + "' " + shape_str(info.shape) +
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
  bool json = false;
  app.add_option("--model", model_path, "the .onnx model")->required();
  app.add_option("--batch", batches_arg, "comma-separated batch sizes, e.g. 1,2,4,8")
      ->capture_default_str();
  app.add_option("--threads", threads, "runtime threads (0 = one per core)")->capture_default_str();
  app.add_option("--backend", backend, "ref, cpu or cuda")->capture_default_str();
  std::string device, precision = "fp16";
  app.add_option("--device", device, "cpu or cuda (sets --backend)");
  app.add_option("--precision", precision, "cuda activations: fp16, bf16 or fp32")
      ->capture_default_str();
  app.add_option("--runs", runs, "timed runs per batch (>= 5); the median is reported")
      ->capture_default_str();
  app.add_flag("--json", json, "one JSON object per batch on stdout");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
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
  auto precision_kind = nn::parse_precision(precision);
  if (!precision_kind.ok()) return fail(precision_kind.error());
  auto backend_kind = nn::parse_backend(backend);
  if (!backend_kind.ok()) return fail(backend_kind.error());
  const auto load_start = std::chrono::steady_clock::now();
  auto model = nn::Model::load(model_path);
  if (!model.ok()) return fail(model.error());
  const double load_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - load_start)
          .count();
  nn::SessionOptions opts;
  opts.backend = *backend_kind;
  opts.threads = threads;
  opts.precision = *precision_kind;
  auto session = nn::Session::create(*model, opts);
  if (!session.ok()) return fail(session.error());

  if (!json) {
    std::printf("model %s (loaded in %.0f ms), backend %s, threads %d, median of %d runs\n",
                model_path.c_str(), load_ms, nn::backend_name(*backend_kind), threads, runs);
    std::printf("%6s %12s %14s %10s\n", "batch", "ms/run", "ms/frame", "frames/s");
    std::fflush(stdout);
  }
  std::mt19937 rng(1234);
  for (int64_t b : batches) {
    auto inputs = random_inputs(**model, b, rng);
    if (!inputs.ok()) return fail(inputs.error());
    auto warm = (*session)->run(*inputs);  // compiles this batch's plan
    if (!warm.ok()) return fail(warm.error());
    std::vector<double> times;
    for (int r = 0; r < runs; ++r) {
      if (interrupted()) return fail(Interrupted());
      const auto t0 = std::chrono::steady_clock::now();
      auto out = (*session)->run(*inputs);
      const auto t1 = std::chrono::steady_clock::now();
      if (!out.ok()) return fail(out.error());
      times.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
    std::sort(times.begin(), times.end());
    const double median = times.size() % 2
                              ? times[times.size() / 2]
                              : 0.5 * (times[times.size() / 2 - 1] + times[times.size() / 2]);
    const double per_frame = median / static_cast<double>(b);
    if (json) {
      std::printf(
          "{\"batch\": %lld, \"ms_per_frame\": %.4f, \"threads\": %d, \"backend\": \"%s\"}\n",
          static_cast<long long>(b), per_frame, threads, nn::backend_name(*backend_kind));
    } else {
      std::printf("%6lld %12.3f %14.3f %10.2f\n", static_cast<long long>(b), median, per_frame,
                  1000.0 / per_frame);
    }
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace tr::cli
