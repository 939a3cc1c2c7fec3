// sync::analyse on synthetic signals: the sign of the lag, the audio's start time, and the
// verdicts (no speech, a still mouth, an unrelated mouth).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "sync/sync_check.h"

namespace tr::sync {
namespace {

constexpr double kFps = 25.0;
constexpr int kRate = 16000;

// A syllable-like loudness per frame: bursts of 3-8 frames separated by pauses.
std::vector<double> bursts(int frames, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<double> env(frames, 0.0);
  for (int i = 0; i < frames;) {
    const int len = 3 + static_cast<int>(rng() % 6), gap = 1 + static_cast<int>(rng() % 8);
    const double amp = 0.3 + 0.7 * (rng() % 1000) / 1000.0;
    for (int j = 0; j < len && i + j < frames; ++j)
      env[i + j] = amp * std::sin(M_PI * (j + 0.5) / len);
    i += len + gap;
  }
  return env;
}

// Noise at 16 kHz whose loudness follows env; audio sample 0 is at time start_s.
std::vector<float> noise_audio(const std::vector<double>& env, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  const int per = kRate / static_cast<int>(kFps);
  std::vector<float> a(env.size() * per);
  for (size_t i = 0; i < a.size(); ++i) a[i] = 0.3f * static_cast<float>(env[i / per]) * g(rng);
  return a;
}

Signals make(const std::vector<double>& mouth, std::vector<float> audio, double audio_start_s) {
  Signals s;
  s.mouth = mouth;
  for (size_t i = 0; i < mouth.size(); ++i) s.frame_times.push_back(i / kFps);
  s.fps = kFps;
  s.audio = std::move(audio);
  s.audio_rate = kRate;
  s.audio_start_s = audio_start_s;
  return s;
}

TEST(SyncAnalysis, AudioStartingLaterIsAPositiveLag) {
  const auto env = bursts(250, 1);
  std::vector<double> mouth(env.size());
  for (size_t i = 0; i < env.size(); ++i) mouth[i] = 20.0 + 30.0 * env[i];
  for (int shift : {0, 5, -3, 8}) {
    // The same sound, its first sample presented shift frames later.
    const SyncResult r = analyse(make(mouth, noise_audio(env, 2), shift / kFps), 15);
    EXPECT_EQ(r.lag_frames, shift);
    EXPECT_DOUBLE_EQ(r.lag_ms, shift * 40.0);
    EXPECT_GT(r.correlation, 0.8) << shift;
    EXPECT_TRUE(r.confident()) << shift << ": " << r.reason;
    EXPECT_EQ(r.curve.size(), 31u);
  }
}

TEST(SyncAnalysis, SilenceIsNoSpeech) {
  const auto env = bursts(100, 3);
  const SyncResult r = analyse(make(env, std::vector<float>(100 * 640, 0.0f), 0.0), 15);
  EXPECT_EQ(r.verdict, Verdict::kNoSpeech);
  EXPECT_FALSE(r.confident());
}

TEST(SyncAnalysis, StillOrUnrelatedMouthIsNotConfident) {
  const auto env = bursts(250, 4);
  const SyncResult still =
      analyse(make(std::vector<double>(250, 40.0), noise_audio(env, 5), 0), 15);
  EXPECT_EQ(still.verdict, Verdict::kNotConfident);
  const SyncResult other = analyse(make(bursts(250, 99), noise_audio(env, 6), 0), 15);
  EXPECT_EQ(other.verdict, Verdict::kNotConfident) << other.correlation;
}

TEST(SyncAnalysis, PeakAtTheEdgeIsNotConfident) {
  const auto env = bursts(250, 7);
  std::vector<double> mouth(env.begin(), env.end());
  const SyncResult r = analyse(make(mouth, noise_audio(env, 8), 6 / kFps), 6);
  EXPECT_EQ(r.lag_frames, 6);
  EXPECT_FALSE(r.confident());
}

TEST(SyncAnalysis, MouthRegionIsTheMiddleOfTheFace) {
  EXPECT_EQ(mouth_region(cv::Rect(100, 40, 100, 200)), cv::Rect(120, 90, 60, 130));
}

}  // namespace
}  // namespace tr::sync
