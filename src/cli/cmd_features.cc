// talkrender features --audio FILE --audio-encoder E.onnx --out P.npy|P.bin: the padded
// audio-encoder feature matrix P [n + 2, 512] (model contract section 4 steps 1-11).
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>

#include "audio/audio.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "nn/nn.h"

namespace tr::cli {
namespace {

int fail(const Error& e) {
  std::fprintf(stderr, "talkrender features: %s\n", e.message.c_str());
  return e.exit_code();
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

int cmd_features(int argc, char** argv) {
  CLI::App app{
      "Audio file -> padded audio-encoder features P [n + 2, 512] float32, as .npy or as "
      ".bin + .json (the layout render --features and the sample package's aud_ave use).",
      "talkrender features"};
  std::string audio_path, encoder_path, out_path, backend = "cpu";
  int64_t batch = 64;
  int threads = 0;
  bool no_pad = false, verbose = false;
  app.add_option("--audio", audio_path, "audio file (anything FFmpeg decodes)")->required();
  app.add_option("--audio-encoder", encoder_path, "audio encoder .onnx ([B,1,80,16] -> [B,512])")
      ->required();
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
