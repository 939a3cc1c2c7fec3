// talkrender mel --audio FILE --out mel.npy|mel.bin: the normalised mel spectrogram [80, T].
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>

#include "audio/audio.h"
#include "cli/cli_util.h"
#include "cli/commands.h"

namespace tr::cli {

int cmd_mel(int argc, char** argv) {
  CLI::App app{
      "Audio file -> normalised mel spectrogram [80, T] float32 (.npy, or .bin + .json), "
      "model contract section 4 steps 1-7.",
      "talkrender mel"};
  std::string audio_path, out_path;
  bool verbose = false;
  app.add_option("--audio", audio_path, "audio file (anything FFmpeg decodes)")->required();
  app.add_option("--out", out_path,
                 "output [80, T] float32, written as its extension says: mel.npy, or mel.bin "
                 "(raw) with its shape in mel.json; other extensions are refused")
      ->required();
  add_verbose_flag(app, &verbose);
  if (int rc = parse_args(app, argc, argv); rc >= 0) return rc;
  apply_verbose(verbose);
  if (Status s = check_matrix_output(out_path); !s.ok()) return report_error(app, s.error());
  const auto start = std::chrono::steady_clock::now();
  audio::AudioInfo info;
  auto samples = audio::load_audio(audio_path, &info);
  if (!samples.ok()) {
    std::fprintf(stderr, "talkrender mel: %s\n", samples.error().message.c_str());
    return samples.error().exit_code();
  }
  const Tensor mel = audio::compute_mel(*samples);
  Status st = write_matrix(out_path, mel);
  if (!st.ok()) {
    std::fprintf(stderr, "talkrender mel: %s\n", st.message().c_str());
    return st.error().exit_code();
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const auto n = audio::frame_count(mel.dim(1));
  std::printf("%s: %.3f s of %d Hz %d-channel %s -> mel [80, %lld]%s in %.3f s -> %s\n",
              audio_path.c_str(), samples->size() / double(audio::kSampleRate), info.source_rate,
              info.channels, info.codec.c_str(), static_cast<long long>(mel.dim(1)),
              n.ok() ? (", n = " + std::to_string(*n) + " video frames").c_str() : "", secs,
              out_path.c_str());
  return 0;
}

}  // namespace tr::cli
