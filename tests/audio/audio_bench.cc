// Audio front-end benchmark (acceptance 7): decode, mel and encoder times for an audio
// file (default: talk_hb.wav looped to 60 s), with the real-time factor. Prints figures;
// asserts nothing.
//   audio_bench ENCODER.onnx [AUDIO] [--seconds S] [--batch B] [--threads N] [--repeat R]
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "audio/audio.h"
#include "nn/nn.h"
#include "test_util.h"

using namespace tr;

static double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
static double cpu_s() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + 1e-6 * (u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: audio_bench ENCODER.onnx [AUDIO] [--seconds S] [--batch B] "
                 "[--threads N] [--repeat R]\n");
    return 2;
  }
  std::string encoder_path = argv[1], audio_path;
  double seconds = 60;
  int64_t batch = 64;
  int threads = 0, repeat = 3;
  for (int i = 2; i < argc; ++i) {
    auto next = [&] { return i + 1 < argc ? argv[++i] : (char*)"0"; };
    if (!std::strcmp(argv[i], "--seconds"))
      seconds = std::atof(next());
    else if (!std::strcmp(argv[i], "--batch"))
      batch = std::atoll(next());
    else if (!std::strcmp(argv[i], "--threads"))
      threads = std::atoi(next());
    else if (!std::strcmp(argv[i], "--repeat"))
      repeat = std::atoi(next());
    else
      audio_path = argv[i];
  }
  if (audio_path.empty()) audio_path = audio::test::shared_file("audio/talk_hb.wav");
  double t = now_s();
  auto loaded = audio::load_audio(audio_path);
  if (!loaded.ok()) {
    std::fprintf(stderr, "%s\n", loaded.error().message.c_str());
    return 2;
  }
  const double decode_s = now_s() - t;
  std::vector<float> samples;
  const size_t want = static_cast<size_t>(seconds * audio::kSampleRate);
  while (samples.size() < want) {
    samples.insert(samples.end(), loaded->begin(),
                   loaded->begin() + std::min(loaded->size(), want - samples.size()));
  }
  nn::SessionOptions so;
  so.threads = threads;
  auto enc = audio::AudioEncoder::load(encoder_path, so);
  if (!enc.ok()) {
    std::fprintf(stderr, "%s\n", enc.error().message.c_str());
    return 2;
  }
  audio::FeatureOptions opts;
  opts.batch = batch;
  // Warm-up: the runtime compiles a plan per input shape.
  (void)audio::compute_features(std::vector<float>(samples.begin(), samples.begin() + 64000),
                                (*enc)->fn(), opts);
  std::printf("audio %.1f s (%s, decode+resample %.3f s); batch %lld, threads %d\n", seconds,
              audio_path.c_str(), decode_s, static_cast<long long>(batch), threads);
  for (int r = 0; r < repeat; ++r) {
    double c0 = cpu_s(), t0 = now_s();
    const Tensor mel = audio::compute_mel(samples);
    double t1 = now_s(), c1 = cpu_s();
    auto F = audio::encode_mel(mel, (*enc)->fn(), opts);
    double t2 = now_s(), c2 = cpu_s();
    if (!F.ok()) {
      std::fprintf(stderr, "%s\n", F.error().message.c_str());
      return 3;
    }
    std::printf(
        "run %d: mel [80, %lld] %.4f s (cpu %.4f) | encoder %lld windows %.3f s (cpu %.3f) "
        "| mel+encoder %.3f s, real-time factor %.4f\n",
        r, static_cast<long long>(mel.dim(1)), t1 - t0, c1 - c0, static_cast<long long>(F->dim(0)),
        t2 - t1, c2 - c1, t2 - t0, (t2 - t0) / seconds);
  }
  return 0;
}
