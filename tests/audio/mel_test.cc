// Decoding and mel: the numpy reference (acceptance 1), resampled and re-encoded copies
// (acceptance 2), edge inputs (acceptance 6) and the `mel` / `features` CLI errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>

#include "audio/audio.h"
#include "common/npy.h"
#include "test_util.h"

namespace tr::audio {
namespace {

using test::shared_file;

#define REQUIRE_SHARED(var, rel)            \
  const std::string var = shared_file(rel); \
  if (var.empty()) GTEST_SKIP() << "shared data " rel " not found (set TALKRENDER_SHARED)"

Tensor mel_of(const std::string& path, AudioInfo* info = nullptr) {
  auto s = load_audio(path, info);
  EXPECT_TRUE(s.ok()) << s.error().message;
  return s.ok() ? compute_mel(*s) : Tensor::f32({kMelBins, 0});
}

TEST(Mel, TalkMatchesNumpyReference) {
  REQUIRE_SHARED(wav, "audio/talk_hb.wav");
  if (!test::have_reference_python()) GTEST_SKIP() << "/usr/bin/python3 with numpy not found";
  AudioInfo info;
  const Tensor mel = mel_of(wav, &info);
  EXPECT_EQ(info.source_rate, 16000);
  EXPECT_EQ(info.channels, 1);
  const std::string ref_path = test::temp_dir() + "/ref_mel.npy";
  std::string out;
  ASSERT_EQ(
      test::run_command("/usr/bin/python3 " + test::source_root() +
                            "/tools/audio_reference.py mel --audio " + wav + " --out " + ref_path,
                        &out),
      0)
      << out;
  auto ref = read_npy(ref_path);
  ASSERT_TRUE(ref.ok()) << ref.error().message;
  ASSERT_EQ(ref->shape(), mel.shape());
  const float diff = test::max_abs_diff(mel, *ref);
  auto n = frame_count(mel.dim(1));
  ASSERT_TRUE(n.ok());
  std::printf("talk_hb: T = %lld, n = %lld, rows(P) = %lld, max |C++ - numpy| = %.3g\n",
              static_cast<long long>(mel.dim(1)), static_cast<long long>(*n),
              static_cast<long long>(*n + 2), diff);
  EXPECT_LE(diff, 1e-4f);
  // Not a vacuous comparison: speech spans most of the normalised range.
  const float* v = mel.data<float>();
  const auto [lo, hi] = std::minmax_element(v, v + mel.numel());
  EXPECT_LT(*lo, -3.0f);
  EXPECT_GT(*hi, 0.5f);
}

// Upper edge (Hz) of Slaney mel band m for 80 bands in 55..7600 Hz (contract step 5).
double band_upper_hz(int m) {
  auto hz_to_mel = [](double f) {
    return f >= 1000 ? 15.0 + std::log(f / 1000) / (std::log(6.4) / 27) : f * 3 / 200;
  };
  auto mel_to_hz = [](double x) {
    return x >= 15 ? 1000 * std::exp(std::log(6.4) / 27 * (x - 15)) : x * 200 / 3;
  };
  const double lo = hz_to_mel(55), hi = hz_to_mel(7600);
  return mel_to_hz(lo + (hi - lo) * (m + 2) / 81);
}

// Mean |a - b| over bins [0, bins) after shifting b by the best of -3..3 frames.
double aligned_mean_abs(const Tensor& a, const Tensor& b, int bins, int* best_shift) {
  double best = 1e9;
  const int64_t Ta = a.dim(1), Tb = b.dim(1);
  for (int shift = -3; shift <= 3; ++shift) {
    double sum = 0;
    int64_t count = 0;
    for (int64_t t = 0; t < Ta; ++t) {
      const int64_t u = t + shift;
      if (u < 0 || u >= Tb) continue;
      for (int m = 0; m < bins; ++m) {
        sum += std::fabs(a.data<float>()[m * Ta + t] - b.data<float>()[m * Tb + u]);
        ++count;
      }
    }
    if (count && sum / count < best) {
      best = sum / count;
      *best_shift = shift;
    }
  }
  return best;
}

TEST(Mel, ResampledAndReencodedCopies) {
  REQUIRE_SHARED(wav, "audio/talk_hb.wav");
  if (!test::have_program("ffmpeg")) GTEST_SKIP() << "ffmpeg CLI not found";
  const Tensor base = mel_of(wav);
  const int64_t n_base = *frame_count(base.dim(1));
  const std::string dir = test::temp_dir();
  // The copies are made with FFmpeg's soxr resampler at high precision, so the test
  // measures this decoder and resampler, not the ffmpeg CLI's default resampler.
  const std::string resample = " -af aresample=resampler=soxr:precision=28 ";
  struct Copy {
    const char* name;
    std::string args;
  };
  const Copy copies[] = {
      {"48k_s24.wav", resample + "-ar 48000 -c:a pcm_s24le"},
      // pan keeps both channels at full level (-ac 2 would upmix at -3 dB).
      {"44k1_stereo.wav",
       " -af \"pan=stereo|c0=c0|c1=c0,aresample=resampler=soxr:precision=28\" -ar 44100 "
       "-c:a pcm_s16le"},
      {"44k1_192k.mp3", resample + "-ar 44100 -c:a libmp3lame -b:a 192k"},
      {"8k.wav", resample + "-ar 8000 -c:a pcm_s16le"},
  };
  for (const Copy& c : copies) {
    const std::string path = dir + "/" + c.name;
    std::string out;
    ASSERT_EQ(test::run_command("ffmpeg -y -v error -i " + wav + c.args + " " + path, &out), 0)
        << out;
    AudioInfo info;
    const Tensor mel = mel_of(path, &info);
    ASSERT_GE(mel.dim(1), 16) << c.name;
    const int64_t n = *frame_count(mel.dim(1));
    const std::string name = c.name;
    if (name == "48k_s24.wav" || name == "44k1_stereo.wav") {
      EXPECT_EQ(n, n_base) << name;
      ASSERT_EQ(mel.dim(1), base.dim(1)) << name;
      const float diff = test::max_abs_diff(mel, base);
      std::printf("%s (%d Hz, %d ch, %s): n = %lld, max |diff| = %.4f\n", c.name, info.source_rate,
                  info.channels, info.codec.c_str(), static_cast<long long>(n), diff);
      EXPECT_LE(diff, 0.1f) << name;
    } else if (name == "44k1_192k.mp3") {
      EXPECT_LE(std::llabs(n - n_base), 1) << name;
      int shift = 0;
      const double mad = aligned_mean_abs(base, mel, kMelBins, &shift);
      std::printf("%s: n = %lld (16 kHz: %lld), mean |diff| = %.4f at shift %d frames\n", c.name,
                  static_cast<long long>(n), static_cast<long long>(n_base), mad, shift);
      EXPECT_LE(mad, 0.05) << name;
    } else {
      EXPECT_EQ(n, n_base) << name;
      int bins = 0;
      while (bins < kMelBins && band_upper_hz(bins) <= 3500.0) ++bins;
      ASSERT_GT(bins, 40);
      int shift = 0;
      const double mad = aligned_mean_abs(base, mel, bins, &shift);
      std::printf("%s: n = %lld, mean |diff| over the %d bands below 3.5 kHz = %.4f (shift %d)\n",
                  c.name, static_cast<long long>(n), bins, mad, shift);
      EXPECT_EQ(shift, 0);
      EXPECT_LE(mad, 0.05) << name;
    }
  }
}

TEST(Mel, SilenceIsFiniteAtTheFloor) {
  REQUIRE_SHARED(wav, "audio/silence_20s.wav");
  const Tensor mel = mel_of(wav);
  ASSERT_EQ(mel.dim(1), 1 + 20 * 16000 / 200);
  for (int64_t i = 0; i < mel.numel(); ++i) {
    ASSERT_TRUE(std::isfinite(mel.data<float>()[i]));
    // Digital silence: max(1e-5, 0) -> -120 dB -> clipped to the floor, -4.
    ASSERT_EQ(mel.data<float>()[i], -4.0f) << i;
  }
}

TEST(Mel, MixesChannelsAsTheirMean) {
  std::vector<float> stereo, mean;
  for (int i = 0; i < 8000; ++i) {
    const float l = 0.5f * std::sin(i * 0.05f), r = 0.25f * std::sin(i * 0.31f);
    stereo.push_back(l);
    stereo.push_back(r);
    mean.push_back(static_cast<float>((double(l) + double(r)) / 2));
  }
  const std::string path = test::temp_dir() + "/stereo_float.wav";
  test::write_wav_float(path, stereo, 16000, 2);
  AudioInfo info;
  auto s = load_audio(path, &info);
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(info.channels, 2);
  ASSERT_EQ(s->size(), mean.size());
  EXPECT_EQ(*s, mean);
}

TEST(Mel, ShortClips) {
  std::vector<float> clip(3200);  // 0.2 s: T = 17
  for (size_t i = 0; i < clip.size(); ++i) clip[i] = 0.3f * std::sin(i * 0.1f);
  const Tensor mel = compute_mel(clip);
  ASSERT_EQ(mel.dim(1), 17);
  auto n = frame_count(17);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 2);  // floor(1 / 80 * 25) + 2
  const MelSpan last = mel_window(1, 17);
  EXPECT_EQ(last.begin, 1);  // floor(3.2) + 16 > 17: clamped to [T - 16, T)
  EXPECT_EQ(last.end, 17);
  // 0.1 s: T = 9 < 16, no window can be formed: a clear error.
  auto too_short = frame_count(compute_mel(clip.data(), 1600).dim(1));
  ASSERT_FALSE(too_short.ok());
  EXPECT_NE(too_short.error().message.find("too short"), std::string::npos);
  EXPECT_EQ(too_short.error().kind, ErrorKind::kBadInput);
  // Empty input: one all-floor frame, no crash.
  EXPECT_EQ(compute_mel(nullptr, 0).dim(1), 1);
}

void expect_bad_file(const std::string& path, const std::string& what) {
  auto r = load_audio(path);
  ASSERT_FALSE(r.ok()) << what;
  EXPECT_EQ(r.error().kind, ErrorKind::kBadInput) << what;
  EXPECT_NE(r.error().message.find(path), std::string::npos) << what << ": " << r.error().message;
  EXPECT_EQ(r.error().message.find('\n'), std::string::npos) << what;
}

TEST(Mel, BadFilesGiveErrorsNamingTheFile) {
  const std::string dir = test::temp_dir();
  expect_bad_file(dir + "/missing.wav", "missing");
  { std::ofstream(dir + "/empty.wav"); }
  expect_bad_file(dir + "/empty.wav", "empty");
  {
    std::ofstream f(dir + "/garbage.wav", std::ios::binary);
    uint32_t x = 12345;
    for (int i = 0; i < 20000; ++i) {
      x = x * 1664525u + 1013904223u;
      f.put(static_cast<char>(x >> 24));
    }
  }
  expect_bad_file(dir + "/garbage.wav", "garbage");
  test::write_wav_pcm16(dir + "/no_samples.wav", {}, 16000);
  expect_bad_file(dir + "/no_samples.wav", "header only");
  { std::ofstream(dir + "/text.mp3") << "this is not audio\n"; }
  expect_bad_file(dir + "/text.mp3", "text");
}

TEST(Mel, NanInFloatWavIsRejected) {
  std::vector<float> x(16000, 0.1f);
  x[1234] = std::nanf("");
  const std::string path = test::temp_dir() + "/nan.wav";
  test::write_wav_float(path, x, 16000, 1);
  auto r = load_audio(path);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find(path), std::string::npos);
  EXPECT_NE(r.error().message.find("NaN"), std::string::npos);
  x[1234] = INFINITY;
  test::write_wav_float(path, x, 44100, 1);  // through the resampler path too
  EXPECT_FALSE(load_audio(path).ok());
}

TEST(Cli, MelCommand) {
  const std::string exe = test::build_dir() + "/talkrender";
  if (test::build_dir().empty() || !test::have_program(exe)) {
    GTEST_SKIP() << "talkrender binary not built";
  }
  const std::string dir = test::temp_dir();
  std::vector<float> tone(16000);
  for (size_t i = 0; i < tone.size(); ++i) tone[i] = 0.2f * std::sin(i * 0.2f);
  test::write_wav_pcm16(dir + "/tone.wav", tone, 16000);
  std::string out;
  ASSERT_EQ(
      test::run_command(exe + " mel --audio " + dir + "/tone.wav --out " + dir + "/m.npy", &out), 0)
      << out;
  auto written = read_npy(dir + "/m.npy");
  ASSERT_TRUE(written.ok());
  const Tensor direct = mel_of(dir + "/tone.wav");
  ASSERT_EQ(written->shape(), direct.shape());
  EXPECT_EQ(test::max_abs_diff(*written, direct), 0.0f);

  EXPECT_EQ(
      test::run_command(exe + " mel --audio " + dir + "/nope.wav --out " + dir + "/x.npy", &out),
      2);
  EXPECT_NE(out.find(dir + "/nope.wav"), std::string::npos) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  { std::ofstream(dir + "/text.mp3") << "this is not audio\n"; }  // FFmpeg warns about it
  EXPECT_EQ(
      test::run_command(exe + " mel --audio " + dir + "/text.mp3 --out " + dir + "/x.npy", &out),
      2);
  EXPECT_NE(out.find(dir + "/text.mp3"), std::string::npos) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  EXPECT_EQ(test::run_command(exe + " mel --audio " + dir + "/tone.wav", &out), 2);  // no --out
  EXPECT_EQ(test::run_command(exe + " features --audio " + dir + "/tone.wav --audio-encoder " +
                                  dir + "/none.onnx --out " + dir + "/p.npy",
                              &out),
            2);
  EXPECT_NE(out.find(dir + "/none.onnx"), std::string::npos) << out;
}

}  // namespace
}  // namespace tr::audio
