// talkrender infer --model M.onnx --input NAME=FILE.npy [--input ...] --out OUT.npy
//                  [--backend ref|cpu|cuda] [--device cpu|cuda]
//                  [--precision fp32|bf16|fp16|auto]
//                  [--threads N]
// Runs a model once on .npy inputs and writes its first output (atomically).
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
                 "(default), bf16 or fp32; auto: bf16 where the cpu has it natively");
  app.add_option("--threads", threads, "runtime threads (0 = one per core)")->capture_default_str();
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

  auto model = nn::Model::load(model_path);
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
  auto outputs = (*session)->run(inputs);
  if (!outputs.ok()) return fail(outputs.error());
  if (outputs->empty()) return fail(RuntimeError(model_path + ": the model produced no output"));
  Status st = write_npy(out_path, (*outputs)[0]);
  if (!st.ok()) return fail(st.error());
  return 0;
}

}  // namespace tr::cli
