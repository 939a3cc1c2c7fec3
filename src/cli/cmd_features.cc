// talkrender features --audio FILE --audio-encoder E.onnx --out P.npy|P.bin: the padded
// audio-encoder feature matrix P [n + 2, 512] (model contract section 4 steps 1-11).
// talkrender features --features aud_hu.npy [--generator G.onnx] --out P.bin: a feature
// file as SyncTalk_2D / Ultralight write it (aud_hu.npy [n, 2, 1024], aud_wenet.npy
// [n, 16, 512]), checked (and against G's family) and written as [n, block].
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>

#include "audio/audio.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "nn/nn.h"
#include "render/speech_features.h"

namespace tr::cli {
namespace {

int fail(const Error& e) {
  std::fprintf(stderr, "talkrender features: %s\n", e.message.c_str());
  return e.exit_code();
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// --features: check an existing feature file (against the generator's family when given)
// and write it as [rows, block].
int convert_features(const std::string& in_path, const std::string& generator_path,
                     const std::string& out_path) {
  Result<Tensor> t = Error{ErrorKind::kBadInput, ""};
  std::string against;
  if (!generator_path.empty()) {
    auto model = nn::Model::load(generator_path);
    if (!model.ok()) return fail(model.error());
    auto family = render::family_of_model(**model);
    if (!family.ok()) return fail(family.error());
    t = render::read_features_for_family(in_path, *family);
    against = std::string(", fits ") + family->name + " (" + std::to_string(family->window_blocks) +
              "-block windows)";
  } else {
    t = audio::read_feature_file(in_path);
  }
  if (!t.ok()) return fail(t.error());
  Status st = write_matrix(out_path, *t, /*rows_are_frames=*/true);
  if (!st.ok()) return fail(st.error());
  std::printf("%s: %lld rows of %lld floats%s -> %s\n", in_path.c_str(),
              static_cast<long long>(t->dim(0)), static_cast<long long>(t->dim(1)), against.c_str(),
              out_path.c_str());
  return 0;
}

}  // namespace

int cmd_features(int argc, char** argv) {
  CLI::App app{
      "Audio file -> padded audio-encoder features P [n + 2, 512] float32, as .npy or as "
      ".bin + .json (the layout render --features and the sample package's aud_ave use).\n"
      "Or --features FILE: a feature file as SyncTalk_2D / Ultralight write it (aud_hu.npy "
      "[n, 2, 1024], aud_wenet.npy [n, 16, 512]) checked, with --generator against that "
      "model's window, and written as [n, block].",
      "talkrender features"};
  std::string audio_path, encoder_path, out_path, backend = "cpu", features_in, generator;
  int64_t batch = 64;
  int threads = 0;
  bool no_pad = false, verbose = false;
  auto* audio_opt = app.add_option("--audio", audio_path, "audio file (anything FFmpeg decodes)");
  auto* encoder_opt = app.add_option("--audio-encoder", encoder_path,
                                     "audio encoder .onnx ([B,1,80,16] -> [B,512])");
  auto* features_opt = app.add_option(
      "--features", features_in,
      "instead of --audio: a precomputed feature file (.npy as np.save writes it, any row "
      "shape, e.g. aud_hu.npy [n, 2, 1024]; or .bin + .json) to check and convert");
  features_opt->excludes(audio_opt)->excludes(encoder_opt);
  app.add_option("--generator", generator,
                 "with --features: the generator the features are for; its audio window "
                 "(16 blocks SyncTalk_2D, 8 Ultralight) must take the file's blocks")
      ->needs(features_opt);
  app.add_option("--out", out_path,
                 "output [n + 2, 512] float32, written as its extension says: P.npy, or P.bin "
                 "(raw) with its shape in P.json; other extensions are refused")
      ->required();
  app.add_option("--batch", batch, "encoder windows per run (bounds memory)")
      ->capture_default_str();
  app.add_option("--device,--backend", backend,
                 "model runtime: cpu, cuda or ref (--backend is the old name)")
      ->capture_default_str();
  app.add_option("--threads", threads, "runtime threads, >= 0 (0 = one per core)")
      ->capture_default_str();
  app.add_flag("--no-pad", no_pad, "write F [n, 512] without repeating the first and last rows");
  add_verbose_flag(app, &verbose);
  if (int rc = parse_args(app, argc, argv); rc >= 0) return rc;
  apply_verbose(verbose);
  if (!features_in.empty()) {
    if (Status s = check_matrix_output(out_path); !s.ok()) return fail(s.error());
    return convert_features(features_in, generator, out_path);
  }
  if (audio_path.empty() || encoder_path.empty()) {
    return fail(BadInput("give --audio FILE and --audio-encoder E.onnx (or --features FILE)"));
  }
  if (batch < 1) return fail(BadInput("--batch must be >= 1, got " + std::to_string(batch)));
  if (threads < 0) return fail(BadInput("--threads must be >= 0, got " + std::to_string(threads)));
  auto backend_kind = nn::parse_backend(backend);
  if (!backend_kind.ok()) return fail(backend_kind.error());
  if (Status s = check_matrix_output(out_path); !s.ok()) return fail(s.error());

  const auto t0 = std::chrono::steady_clock::now();
  audio::AudioInfo info;
  auto samples = audio::load_audio(audio_path, &info);
  if (!samples.ok()) return fail(samples.error());
  const double decode_s = seconds_since(t0);

  nn::SessionOptions session_opts;
  session_opts.backend = *backend_kind;
  session_opts.threads = threads;
  auto encoder = audio::AudioEncoder::load(encoder_path, session_opts);
  if (!encoder.ok()) return fail(encoder.error());

  const auto t1 = std::chrono::steady_clock::now();
  const Tensor mel = audio::compute_mel(*samples);
  const double mel_s = seconds_since(t1);
  audio::FeatureOptions opts;
  opts.batch = batch;
  opts.repeat_ends = !no_pad;
  const auto t2 = std::chrono::steady_clock::now();
  auto features = audio::encode_mel(mel, (*encoder)->fn(), opts);
  if (!features.ok())
    return fail(features.error().message.rfind(audio_path, 0) == 0
                    ? features.error()
                    : Error{features.error().kind, audio_path + ": " + features.error().message});
  const double encode_s = seconds_since(t2);
  const Tensor padded = audio::pad_features(*features, opts.repeat_ends);
  Status st = write_matrix(out_path, padded, /*rows_are_frames=*/true);
  if (!st.ok()) return fail(st.error());

  const double audio_s = samples->size() / double(audio::kSampleRate);
  std::printf("%s: %.3f s of audio, mel [80, %lld], n = %lld, P [%lld, 512] -> %s\n",
              audio_path.c_str(), audio_s, static_cast<long long>(mel.dim(1)),
              static_cast<long long>(features->dim(0)), static_cast<long long>(padded.dim(0)),
              out_path.c_str());
  std::printf(
      "time: decode+resample %.3f s, mel %.3f s, encoder %.3f s (%s, batch %lld); "
      "mel+encoder %.3f s = real-time factor %.4f\n",
      decode_s, mel_s, encode_s, backend.c_str(), static_cast<long long>(batch), mel_s + encode_s,
      (mel_s + encode_s) / audio_s);
  return 0;
}

}  // namespace tr::cli
