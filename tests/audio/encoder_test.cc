// The audio encoder on the model runtime vs PyTorch (acceptance 3). The encoder and its
// goldens come from tools/export_models.py (seeded random weights), made once per run.
#include <gtest/gtest.h>

#include <cmath>

#include "audio/audio.h"
#include "common/npy.h"
#include "nn/nn.h"
#include "test_util.h"

namespace tr::audio {
namespace {

// Folder with encoder.onnx and its goldens, or "" (with the reason in *why).
std::string encoder_dir(std::string* why) {
  static std::string dir, reason;
  static bool done = false;
  if (!done) {
    done = true;
    if (!test::have_reference_python(/*with_torch=*/true)) {
      reason = "/usr/bin/python3 with numpy, torch and onnx not found";
    } else {
      const std::string d = test::temp_dir();
      std::string out;
      if (test::run_command("/usr/bin/python3 " + test::source_root() +
                                "/tools/export_models.py --models encoder --out " + d,
                            &out) == 0) {
        dir = d;
      } else {
        reason = "tools/export_models.py failed: " + out;
      }
    }
  }
  *why = reason;
  return dir;
}

// max |a - b| / max |b|
double relative_diff(const Tensor& a, const Tensor& b) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < b.numel(); ++i) {
    num = std::fmax(num, std::fabs(double(a.data<float>()[i]) - b.data<float>()[i]));
    den = std::fmax(den, std::fabs(double(b.data<float>()[i])));
  }
  return den > 0 ? num / den : num;
}

#define REQUIRE_ENCODER(dir)                  \
  std::string why_;                           \
  const std::string dir = encoder_dir(&why_); \
  if (dir.empty()) GTEST_SKIP() << why_

TEST(Encoder, MatchesPyTorchGoldens) {
  REQUIRE_ENCODER(dir);
  auto enc = AudioEncoder::load(dir + "/encoder.onnx");
  ASSERT_TRUE(enc.ok()) << enc.error().message;
  for (int b : {1, 3}) {
    auto mel = read_npy(dir + "/encoder.b" + std::to_string(b) + ".mel.npy");
    auto want = read_npy(dir + "/encoder.b" + std::to_string(b) + ".output.npy");
    ASSERT_TRUE(mel.ok() && want.ok());
    auto got = (*enc)->encode(*mel);
    ASSERT_TRUE(got.ok()) << got.error().message;
    ASSERT_EQ(got->shape(), want->shape());
    const double rel = relative_diff(*got, *want);
    std::printf("encoder golden b%d: max relative diff %.3g\n", b, rel);
    EXPECT_LE(rel, 1e-4);
  }
}

// First `seconds` of talk_hb.wav, at 16 kHz.
std::vector<float> talk_excerpt(double seconds) {
  const std::string wav = test::shared_file("audio/talk_hb.wav");
  if (wav.empty()) return {};
  auto s = load_audio(wav);
  if (!s.ok()) return {};
  s->resize(std::min(s->size(), size_t(seconds * kSampleRate)));
  return *s;
}

TEST(Encoder, FeaturesFromMelMatchReference) {
  REQUIRE_ENCODER(dir);
  const std::vector<float> samples = talk_excerpt(3.3);
  if (samples.empty()) GTEST_SKIP() << "shared data audio/talk_hb.wav not found";
  auto enc = AudioEncoder::load(dir + "/encoder.onnx");
  ASSERT_TRUE(enc.ok()) << enc.error().message;
  const Tensor mel = compute_mel(samples);
  const std::string tmp = test::temp_dir();
  ASSERT_TRUE(write_npy(tmp + "/mel.npy", mel).ok());
  std::string out;
  ASSERT_EQ(test::run_command("/usr/bin/python3 " + test::source_root() +
                                  "/tools/audio_reference.py features --encoder " + dir +
                                  "/encoder.onnx --mel " + tmp + "/mel.npy --out " + tmp + "/P.npy",
                              &out),
            0)
      << out;
  auto want = read_npy(tmp + "/P.npy");
  ASSERT_TRUE(want.ok());
  Tensor first;
  for (int64_t batch : {64, 7}) {
    FeatureOptions opts;
    opts.batch = batch;
    auto F = encode_mel(mel, (*enc)->fn(), opts);
    ASSERT_TRUE(F.ok()) << F.error().message;
    const Tensor P = pad_features(*F);
    ASSERT_EQ(P.shape(), want->shape());
    const double rel = relative_diff(P, *want);
    std::printf("features from mel (T %lld, P %lld rows, batch %lld): max relative diff %.3g\n",
                static_cast<long long>(mel.dim(1)), static_cast<long long>(P.dim(0)),
                static_cast<long long>(batch), rel);
    EXPECT_LE(rel, 1e-4);
    if (first.empty()) {
      first = P;
    } else {
      EXPECT_LE(relative_diff(P, first), 1e-5) << "batch size changed the features";
    }
  }
}

TEST(Encoder, FeaturesFromAudioMatchReference) {
  REQUIRE_ENCODER(dir);
  const std::vector<float> samples = talk_excerpt(2.5);
  if (samples.empty()) GTEST_SKIP() << "shared data audio/talk_hb.wav not found";
  const std::string tmp = test::temp_dir();
  test::write_wav_pcm16(tmp + "/clip.wav", samples, kSampleRate);  // int16 round-trips exactly
  auto enc = AudioEncoder::load(dir + "/encoder.onnx");
  ASSERT_TRUE(enc.ok()) << enc.error().message;
  auto clip = load_audio(tmp + "/clip.wav");
  ASSERT_TRUE(clip.ok());
  ASSERT_EQ(*clip, samples);
  auto P = compute_features(*clip, (*enc)->fn());
  ASSERT_TRUE(P.ok()) << P.error().message;
  std::string out;
  ASSERT_EQ(
      test::run_command("/usr/bin/python3 " + test::source_root() +
                            "/tools/audio_reference.py features --encoder " + dir +
                            "/encoder.onnx --audio " + tmp + "/clip.wav --out " + tmp + "/P.npy",
                        &out),
      0)
      << out;
  auto want = read_npy(tmp + "/P.npy");
  ASSERT_TRUE(want.ok());
  ASSERT_EQ(P->shape(), want->shape());
  const double rel = relative_diff(*P, *want);
  // The two mels differ by up to 1e-4 (float32 vs float64), which the encoder carries.
  std::printf("features end to end (float32 mel vs float64 mel): max relative diff %.3g\n", rel);
  EXPECT_LE(rel, 1e-3);
}

TEST(Encoder, LoadErrorsNameTheFile) {
  const std::string path = test::temp_dir() + "/not_a_model.onnx";
  auto enc = AudioEncoder::load(path);
  ASSERT_FALSE(enc.ok());
  EXPECT_NE(enc.error().message.find(path), std::string::npos) << enc.error().message;
}

}  // namespace
}  // namespace tr::audio
