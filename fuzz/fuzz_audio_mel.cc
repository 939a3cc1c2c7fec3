// Fuzz target: the audio front end, decode (FFmpeg, any container/codec it probes) + mix +
// resample + NaN/Inf checks, then the mel spectrogram. load_audio takes a path, so each
// input is written to a private temp file first.
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "audio/audio.h"

namespace {

// Bounds the work per input: a few bytes of a compressed format can expand to hours of
// samples; past this the mel adds no coverage, only time.
constexpr size_t kMaxMelSamples = 16000 * 20;

const std::string& scratch_path() {
  static const std::string path = [] {
    std::string d = "/tmp/tr_fuzz_audio_" + std::to_string(::getpid());
    mkdir(d.c_str(), 0700);
    return d + "/input";
  }();
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = scratch_path();
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return 0;
  if (size) std::fwrite(data, 1, size, f);
  std::fclose(f);
  tr::audio::AudioInfo info;
  auto samples = tr::audio::load_audio(path, &info);
  if (samples.ok() && samples->size() <= kMaxMelSamples) {
    const tr::Tensor mel = tr::audio::compute_mel(*samples);
    auto frames = tr::audio::frame_count(mel.dim(1));
    (void)frames;
  }
  return 0;
}
