// talkrender infer --model M.onnx --input NAME=FILE.npy [--input ...] --out OUT.npy
//                  [--backend ref|cpu|cuda] [--device cpu|cuda]
//                  [--precision fp32|bf16|fp16|auto]
//                  [--threads N] [--keep-fixed-batch]
// Runs a model once on .npy inputs and writes its first output (atomically). A model file
// with a fixed batch of 1 takes any batch: the runtime relaxes the batch when the graph is
// batch-agnostic, else (or with --keep-fixed-batch) the batch runs as one call per sample.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "common/npy.h"
#include "nn/nn.h"

namespace tr::cli {
namespace {

int fail(const Error& e) {
  std::fprintf(stderr, "talkrender infer: %s\n", e.message.c_str());
  return e.exit_code();
}

}  // namespace

int cmd_infer(int argc, char** argv) {
  CLI::App app{"Run an ONNX model on .npy inputs and write its first output as .npy.",
               "talkrender infer"};
  std::string model_path, out_path, backend = "cpu";
  std::vector<std::string> input_specs;
  int threads = 0;
  app.add_option("--model", model_path, "the .onnx model")->required();
  app.add_option("--input", input_specs, "NAME=FILE.npy, once per model input")->required();
  app.add_option("--out", out_path, "where to write the first output (.npy)")->required();
  app.add_option("--backend", backend, "ref, cpu or cuda")->capture_default_str();
  std::string device, precision;
  app.add_option("--device", device, "cpu or cuda (sets --backend)");
  app.add_option("--precision", precision,
                 "activations: cpu fp32 (default) or bf16 (CPUs with native bf16); cuda fp16 "
                 "(default), bf16 or fp32; auto: " +
                     std::string(kCpuAutoPrecision));
  app.add_option("--threads", threads, "runtime threads (0 = one per core)")->capture_default_str();
  bool keep_fixed_batch = false;
  app.add_flag("--keep-fixed-batch", keep_fixed_batch,
               "run a model with a fixed batch as its file declares it: a larger batch runs "
               "as repeated calls (default: a fixed batch of 1 is made dynamic where the graph "
               "allows it)");
  if (int rc = parse_args(app, argc, argv); rc >= 0) return rc;
  if (threads < 0) return fail(BadInput("--threads must be >= 0"));
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
  // Before loading: a precision this machine cannot run is a usage error (exit 2).
  if (auto p = nn::resolve_precision(*backend_kind, precision_kind); !p.ok())
    return fail(p.error());

  nn::LoadOptions load_opts;
  load_opts.relax_fixed_batch = !keep_fixed_batch;
  auto model = nn::Model::load(model_path, load_opts);
  if (!model.ok()) return fail(model.error());

  std::vector<nn::NamedTensor> inputs;
  for (const std::string& spec : input_specs) {
    const size_t eq = spec.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size()) {
      return fail(BadInput("--input '" + spec + "' must be NAME=FILE.npy"));
    }
    const std::string name = spec.substr(0, eq), file = spec.substr(eq + 1);
    bool known = false;
    for (const auto& info : (*model)->inputs()) known = known || info.name == name;
    if (!known) {
      std::string names;
      for (const auto& info : (*model)->inputs()) names += (names.empty() ? "" : ", ") + info.name;
      return fail(
          BadInput(model_path + ": the model has no input '" + name + "' (inputs: " + names + ")"));
    }
    auto t = read_npy(file);
    if (!t.ok()) return fail(BadInput(t.error().message));
    inputs.emplace_back(name, std::move(*t));
  }

  nn::SessionOptions opts;
  opts.backend = *backend_kind;
  opts.threads = threads;
  opts.precision = precision_kind;
  auto session = nn::Session::create(*model, opts);
  if (!session.ok()) return fail(session.error());
  const nn::FixedBatch& fb = (*model)->fixed_batch();
  const int64_t batch =
      inputs.empty() || inputs[0].second.rank() == 0 ? 0 : inputs[0].second.dim(0);
  if (fb.required() > 0 && batch % fb.required() != 0) {
    return fail(BadInput(model_path + ": the model takes a fixed batch of " +
                         std::to_string(fb.required()) +
                         (fb.why_not.empty() ? "" : " (" + fb.why_not + ")") + "; batch " +
                         std::to_string(batch) + " is not a multiple of it"));
  }
  if (fb.required() > 0 && batch != fb.required()) {
    std::fprintf(
        stderr,
        "talkrender infer: note: %s has a fixed batch of %lld%s: batch %lld runs as %lld calls\n",
        model_path.c_str(), static_cast<long long>(fb.required()),
        fb.why_not.empty() ? "" : (" (" + fb.why_not + ")").c_str(), static_cast<long long>(batch),
        static_cast<long long>(batch / fb.required()));
  }
  auto outputs = nn::run_in_calls(**session, inputs, fb.required());
  if (!outputs.ok()) return fail(outputs.error());
  if (outputs->empty()) return fail(RuntimeError(model_path + ": the model produced no output"));
  Status st = write_npy(out_path, (*outputs)[0]);
  if (!st.ok()) return fail(st.error());
  return 0;
}

}  // namespace tr::cli
