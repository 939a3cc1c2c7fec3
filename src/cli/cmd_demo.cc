// talkrender demo: synthetic avatar package + espeak-ng speech + the project's own small
// trained model (models/demo, made by tools/train_demo.py; see models/demo/README.md) -> a
// rendered MP4 and its report. Needs no data. --random-weights renders with seeded
// random-weight models (tools/export_models.py) instead; --avatar-only DIR writes only the
// synthetic avatar package (the frames tools/train_demo.py trains on).
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "common/files.h"
#include "common/interrupt.h"
#include "render/demo_package.h"
#include "render/render_job.h"

extern char** environ;

namespace tr::cli {
namespace {

namespace fs = std::filesystem;

constexpr const char* kDefaultText =
    "Welcome to talkrender. This mouth was drawn by a small network, trained on my own voice, "
    "that learned to move my lips from speech alone.";

// Runs a program (no shell), waiting for it; on an interrupt the child is terminated.
Status run_program(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid;
  int rc = posix_spawnp(&pid, argv[0], nullptr, nullptr, argv.data(), environ);
  if (rc != 0) return RuntimeError(args[0] + ": cannot start: " + std::strerror(rc));
  int status = 0;
  for (;;) {
    pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) return RuntimeError(args[0] + ": waitpid failed");
    if (interrupted()) {
      ::kill(pid, SIGTERM);
      ::waitpid(pid, &status, 0);
      return Interrupted();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return RuntimeError(args[0] + " " + (args.size() > 1 ? args[1] : "") + " failed (status " +
                        std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) + ")");
  }
  return Status::Ok();
}

// The file `rel` of the source tree (e.g. tools/export_models.py): looked for under
// $TALKRENDER_SOURCE, then the folders above the executable (build/talkrender -> ..), then
// the working directory. Empty when none has it.
std::string find_in_source_tree(const fs::path& rel) {
  std::vector<fs::path> roots;
  if (const char* s = std::getenv("TALKRENDER_SOURCE")) roots.emplace_back(s);
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    roots.push_back(exe.parent_path().parent_path());
    roots.push_back(exe.parent_path().parent_path().parent_path());
  }
  roots.push_back(fs::current_path(ec));
  for (const auto& r : roots) {
    fs::path p = r / rel;
    if (fs::exists(p, ec)) return p.string();
  }
  return "";
}

// The trained demo models: models/demo/generator.onnx of the source tree and the
// audio_encoder.onnx beside it.
Status find_demo_models(std::string* generator, std::string* encoder) {
  constexpr const char* kHint =
      " not found in the source tree (run /usr/bin/python3 tools/train_demo.py, or use "
      "--random-weights)";
  *generator = find_in_source_tree("models/demo/generator.onnx");
  if (generator->empty()) return RuntimeError(std::string("models/demo/generator.onnx") + kHint);
  *encoder = (fs::path(*generator).parent_path() / "audio_encoder.onnx").string();
  std::error_code ec;
  if (!fs::exists(*encoder, ec)) return RuntimeError(*encoder + kHint);
  return Status::Ok();
}

// Writes the avatar package and the speech into `work`; with `random_seed` also seeded
// random-weight models into the package's models/ (without: the render is given the
// trained models' paths).
Status make_demo_inputs(const std::string& work, const render::DemoPackageOptions& pkg,
                        const std::string& text, std::optional<int> random_seed,
                        std::string* package_dir, std::string* speech) {
  *package_dir = (fs::path(work) / "package").string();
  *speech = (fs::path(work) / "speech.wav").string();
  auto t0 = std::chrono::steady_clock::now();
  auto since = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  std::fprintf(stderr, "demo: drawing a %d-frame %dx%d avatar package ...\n", pkg.frames, pkg.width,
               pkg.height);
  TR_RETURN_IF_ERROR(render::write_demo_package(*package_dir, pkg));
  std::fprintf(stderr, "demo: speech with espeak-ng ...  (%.1f s)\n", since());
  TR_RETURN_IF_ERROR(run_program({"espeak-ng", "-s", "150", "-w", *speech, text}));
  if (!random_seed) {
    std::fprintf(stderr, "demo: inputs ready (%.1f s)\n", since());
    return Status::Ok();
  }
  const std::string tool = find_in_source_tree("tools/export_models.py");
  if (tool.empty()) {
    return RuntimeError(
        "tools/export_models.py not found (run from the source tree or set "
        "TALKRENDER_SOURCE)");
  }
  const std::string models = (fs::path(*package_dir) / "models").string();
  std::fprintf(stderr, "demo: seeded random-weight models with %s ...  (%.1f s)\n", tool.c_str(),
               since());
  TR_RETURN_IF_ERROR(
      run_program({"/usr/bin/python3", tool, "--out", models, "--models", "gen320-ave,encoder",
                   "--no-goldens", "--seed", std::to_string(*random_seed)}));
  std::error_code ec;
  fs::rename(fs::path(models) / "gen320-ave.onnx", fs::path(models) / "generator.onnx", ec);
  if (!ec) {
    fs::rename(fs::path(models) / "encoder.onnx", fs::path(models) / "audio_encoder.onnx", ec);
  }
  if (ec) return RuntimeError(models + ": the exported models are missing: " + ec.message());
  std::fprintf(stderr, "demo: inputs ready (%.1f s)\n", since());
  return Status::Ok();
}

}  // namespace

int cmd_demo(int argc, char** argv) {
  render::RenderJobOptions o;
  render::DemoPackageOptions pkg;
  std::string text = kDefaultText, workdir, report_json, avatar_only;
  int seed = 1234;
  bool json = false, verbose = false, random_weights = false;
  o.out_path = "demo.mp4";
  CLI::App app{
      "Make a synthetic avatar package (a drawn head, gently moving) and speech with "
      "espeak-ng, then render them with the project's own small trained model (models/demo: "
      "generator 160-ave + audio encoder, trained on this avatar and espeak-ng speech by "
      "tools/train_demo.py; see models/demo/README.md) to an MP4 and print the report. Needs "
      "no data.\n"
      "--random-weights renders with seeded random-weight models instead (generator 320-ave "
      "+ audio encoder, via /usr/bin/python3 tools/export_models.py): they draw a flat mouth "
      "box, showing the engine (timing, compositing, audio sync) but no lip sync.",
      "talkrender demo"};
  app.add_option("--out,-o", o.out_path,
                 "output (default demo.mp4); DIR/ or NAME_%06d.png for an image sequence, as "
                 "in render");
  app.add_flag("--overwrite", o.overwrite,
               "replace an existing output (for a sequence: only files named like its frames)");
  app.add_option("--avatar-frames", pkg.frames, "frames of the synthetic avatar (default 150)")
      ->check(CLI::Range(2, 5000));
  app.add_option("--text", text, "what the avatar says");
  app.add_option("--frames", o.frames, "render only the first N frames");
  app.add_option("--workdir", workdir,
                 "keep the package and speech (with --random-weights: and the models) in this "
                 "folder (default: a temporary folder, removed at the end)");
  app.add_flag("--random-weights", random_weights,
               "render with seeded random-weight models (tools/export_models.py) instead of "
               "the trained models/demo");
  app.add_option("--seed", seed,
                 "model seed for --random-weights (default 1234); without it irrelevant");
  app.add_option("--avatar-only", avatar_only,
                 "only write the synthetic avatar package (--avatar-frames) to DIR (must not "
                 "exist or be empty) and exit: no speech, models or render")
      ->type_name("DIR");
  app.add_option("--batch", o.batch, "frames per inference batch");
  app.add_option("--workers", o.workers, "compositing threads (default 2)");
  app.add_option("--threads", o.threads, "runtime threads (default 0 = one per core)");
  app.add_option("--report-json", report_json, "write the report as JSON to FILE");
  app.add_flag("--json", json, "print the report as JSON on stdout");
  add_verbose_flag(app, &verbose);
  if (int rc = parse_args(app, argc, argv); rc >= 0) return rc;
  apply_verbose(verbose);
  if (!avatar_only.empty()) {
    if (Status s = render::write_demo_package(avatar_only, pkg); !s.ok()) {
      return report_error(app, s.error());
    }
    std::fprintf(stderr, "demo: %d-frame %dx%d avatar package written to %s\n", pkg.frames,
                 pkg.width, pkg.height, avatar_only.c_str());
    return 0;
  }
  // The outputs are checked before the inputs are made (seconds of work); the render
  // checks the rest again.
  auto target = render::resolve_output(o.out_path, o.image_format);
  if (!target.ok()) return report_error(app, target.error());
  if (Status s = render::check_output_target(*target, o.overwrite, {}); !s.ok()) {
    return report_error(app, s.error());
  }
  if (!report_json.empty()) {
    if (Status s = check_can_create_in(parent_dir_of(report_json), report_json); !s.ok()) {
      return report_error(app, s.error());
    }
  }
  if (!random_weights) {
    if (Status s = find_demo_models(&o.generator_path, &o.audio_encoder_path); !s.ok()) {
      return report_error(app, s.error());
    }
  }

  const bool keep = !workdir.empty();
  if (!keep) {
    char tmpl[] = "/tmp/talkrender-demo-XXXXXX";
    if (!::mkdtemp(tmpl)) {
      std::perror("talkrender demo: mkdtemp");
      return 3;
    }
    workdir = tmpl;
  }
  auto cleanup = [&] {
    std::error_code ec;
    if (!keep) fs::remove_all(workdir, ec);
  };
  auto fail = [&](const Error& e) {
    std::fprintf(stderr, "talkrender demo: %s\n", e.message.c_str());
    cleanup();
    if (e.kind == ErrorKind::kInterrupted) {
      std::fflush(stderr);
      std::_Exit(130);  // see cmd_render: a runtime thread may still be busy
    }
    return e.exit_code();
  };

  std::string package_dir, speech;
  Status s =
      make_demo_inputs(workdir, pkg, text, random_weights ? std::optional<int>(seed) : std::nullopt,
                       &package_dir, &speech);
  if (!s.ok()) return fail(s.error());
  if (!random_weights) {
    std::fprintf(stderr, "demo: trained models %s, %s\n", o.generator_path.c_str(),
                 o.audio_encoder_path.c_str());
  }
  o.package_dir = package_dir;
  o.audio_path = speech;
  o.progress = ::isatty(STDERR_FILENO);
  auto r = render::run_render_job(o);
  if (!r.ok()) return fail(r.error());
  cleanup();
  std::fputs(r->to_text().c_str(), stderr);
  if (json) std::printf("%s\n", r->to_json().dump().c_str());
  if (!report_json.empty()) {
    Status w = write_file_atomic(report_json, r->to_json().dump(2) + "\n");
    if (!w.ok()) {
      std::fprintf(stderr, "talkrender demo: %s\n", w.message().c_str());
      return 3;
    }
  }
  if (keep) {
    std::fprintf(stderr, "demo: %s kept in %s\n",
                 random_weights ? "package, speech and models" : "package and speech",
                 workdir.c_str());
  }
  return 0;
}

}  // namespace tr::cli
