// Streaming == whole file, bit for bit (acceptance 5), and the documented lookahead.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "audio/audio.h"
#include "test_util.h"

namespace tr::audio {
namespace {

// A stand-in encoder: each feature depends on a different cell of the window (and on the
// window's sum), so a misplaced window or frame changes the output.
Result<Tensor> fake_encoder(const Tensor& batch) {
  const int64_t b = batch.dim(0);
  Tensor out = Tensor::f32({b, kFeatureDim});
  for (int64_t i = 0; i < b; ++i) {
    const float* x = batch.data<float>() + i * kMelBins * kMelWindow;
    float sum = 0;
    for (int k = 0; k < kMelBins * kMelWindow; ++k) sum += x[k] * float(k % 7 + 1);
    for (int k = 0; k < kFeatureDim; ++k) {
      out.data<float>()[i * kFeatureDim + k] = x[(k * 37) % (kMelBins * kMelWindow)] + 1e-3f * sum;
    }
  }
  return out;
}

struct Whole {
  Tensor mel, P;
  std::vector<std::vector<float>> windows;
};

Whole whole_file(const std::vector<float>& samples, const FeatureOptions& opts) {
  Whole w;
  w.mel = compute_mel(samples);
  auto F = encode_mel(w.mel, fake_encoder, opts);
  EXPECT_TRUE(F.ok());
  w.P = pad_features(*F, opts.repeat_ends);
  for (int64_t i = 0; i < w.P.dim(0); ++i) {
    w.windows.emplace_back(kContextRows * kFeatureDim);
    generator_window_into(w.P, i, w.windows.back().data());
  }
  return w;
}

// Streams `samples` in chunks from `next_size` and checks everything against `whole`.
void check_stream(const std::vector<float>& samples, const Whole& whole, const FeatureOptions& opts,
                  const std::function<size_t()>& next_size, const std::string& what) {
  auto fe = StreamingFrontEnd::create(fake_encoder, opts);
  ASSERT_TRUE(fe.ok());
  StreamOutput out;
  std::vector<float> mel;
  std::vector<StreamOutput::Window> windows;
  size_t pos = 0;
  while (pos < samples.size()) {
    const size_t n = std::min(next_size(), samples.size() - pos);
    out.clear();
    ASSERT_TRUE((*fe)->push(samples.data() + pos, n, &out).ok());
    if (!out.mel.empty()) ASSERT_EQ(out.first_mel_frame, int64_t(mel.size() / kMelBins)) << what;
    mel.insert(mel.end(), out.mel.begin(), out.mel.end());
    for (auto& w : out.windows) windows.push_back(std::move(w));
    pos += n;
  }
  out.clear();
  ASSERT_TRUE((*fe)->finish(&out).ok());
  mel.insert(mel.end(), out.mel.begin(), out.mel.end());
  for (auto& w : out.windows) windows.push_back(std::move(w));

  const Tensor streamed = mel_from_frames(mel);
  ASSERT_EQ(streamed.shape(), whole.mel.shape()) << what;
  EXPECT_EQ(std::memcmp(streamed.raw(), whole.mel.raw(), whole.mel.nbytes()), 0) << what << ": mel";
  ASSERT_EQ(int64_t(windows.size()), whole.P.dim(0)) << what;
  for (size_t i = 0; i < windows.size(); ++i) {
    ASSERT_EQ(windows[i].frame, int64_t(i)) << what;
    ASSERT_EQ(windows[i].data, whole.windows[i]) << what << ": window " << i;
  }
}

std::vector<float> talk_samples() {
  const std::string wav = test::shared_file("audio/talk_hb.wav");
  if (wav.empty()) return {};
  auto s = load_audio(wav);
  return s.ok() ? *s : std::vector<float>{};
}

TEST(Stream, ChunkedEqualsWholeFileBitForBit) {
  const std::vector<float> samples = talk_samples();
  if (samples.empty()) GTEST_SKIP() << "shared data audio/talk_hb.wav not found";
  for (int64_t batch : {1, 16}) {
    FeatureOptions opts;
    opts.batch = batch;
    const Whole whole = whole_file(samples, opts);
    const std::string b = " (batch " + std::to_string(batch) + ")";
    for (size_t fixed : {size_t{1}, size_t{320}, size_t{16000}}) {
      if (fixed == 1 && batch != 1) continue;  // the slowest case once is enough
      check_stream(
          samples, whole, opts, [fixed] { return fixed; },
          "chunks of " + std::to_string(fixed) + b);
    }
    std::mt19937 rng(42 + batch);
    std::uniform_int_distribution<size_t> size(1, 9000);
    check_stream(
        samples, whole, opts, [&] { return size(rng); }, "random chunks" + b);
  }
  FeatureOptions unpadded;
  unpadded.repeat_ends = false;
  const Whole whole = whole_file(samples, unpadded);
  check_stream(
      samples, whole, unpadded, [] { return size_t{777}; }, "no padding");
}

TEST(Stream, EmitsWithinTheDocumentedLookahead) {
  const std::vector<float> samples = talk_samples();
  if (samples.empty()) GTEST_SKIP() << "shared data audio/talk_hb.wav not found";
  FeatureOptions opts;
  opts.batch = 1;
  auto fe = StreamingFrontEnd::create(fake_encoder, opts);
  ASSERT_TRUE(fe.ok());
  StreamOutput out;
  int64_t mel_frames = 0, windows = 0;
  for (size_t pos = 0; pos + 160 <= samples.size(); pos += 160) {
    out.clear();
    ASSERT_TRUE((*fe)->push(samples.data() + pos, 160, &out).ok());
    mel_frames += out.mel.size() / kMelBins;
    windows += out.windows.size();
    const int64_t have = pos + 160;
    // Mel frame j is out once samples reach 200 j + 400.
    EXPECT_EQ(mel_frames, have >= 400 ? (have - 400) / 200 + 1 : 0) << have;
    // Window i is out once samples reach 640 i + 7240 (header: <= 452.5 ms lookahead).
    const int64_t promised = have >= 7240 ? (have - 7240) / 640 + 1 : 0;
    ASSERT_GE(windows, promised) << "after " << have << " samples";
  }
}

TEST(Stream, RawRateInputEqualsWholeFile) {
  const std::string wav = test::shared_file("audio/talk_hb.wav");
  if (wav.empty()) GTEST_SKIP() << "shared data audio/talk_hb.wav not found";
  if (!test::have_program("ffmpeg")) GTEST_SKIP() << "ffmpeg CLI not found";
  const std::string copy = test::temp_dir() + "/44k1.wav";
  std::string log;
  ASSERT_EQ(test::run_command("ffmpeg -y -v error -t 12 -i " + wav +
                                  " -af aresample=resampler=soxr -ar 44100 -c:a pcm_s16le " + copy,
                              &log),
            0)
      << log;
  // Whole file: load_audio (decode + soxr) then compute_mel.
  auto whole = load_audio(copy);
  ASSERT_TRUE(whole.ok());
  const Tensor whole_mel = compute_mel(*whole);
  // Raw decoded 44.1 kHz mono, streamed in various chunk sizes.
  std::vector<float> raw;
  ASSERT_TRUE(decode_audio(copy, [&](const float* x, size_t n, int) {
                raw.insert(raw.end(), x, x + n);
                return Status::Ok();
              }).ok());
  std::mt19937 rng(7);
  std::uniform_int_distribution<size_t> random_size(1, 20000);
  for (size_t chunk : {size_t{1}, size_t{441}, size_t{44100}, size_t{0}}) {
    auto fe = StreamingFrontEnd::create(EncoderFn{}, FeatureOptions{}, 44100);
    ASSERT_TRUE(fe.ok());
    StreamOutput out;
    std::vector<float> mel;
    for (size_t pos = 0; pos < raw.size();) {
      const size_t n = std::min(chunk ? chunk : random_size(rng), raw.size() - pos);
      out.clear();
      ASSERT_TRUE((*fe)->push(raw.data() + pos, n, &out).ok());
      mel.insert(mel.end(), out.mel.begin(), out.mel.end());
      pos += n;
    }
    out.clear();
    ASSERT_TRUE((*fe)->finish(&out).ok());
    EXPECT_TRUE(out.windows.empty());  // no encoder: mel only
    mel.insert(mel.end(), out.mel.begin(), out.mel.end());
    const Tensor streamed = mel_from_frames(mel);
    ASSERT_EQ(streamed.shape(), whole_mel.shape()) << "chunk " << chunk;
    EXPECT_EQ(std::memcmp(streamed.raw(), whole_mel.raw(), whole_mel.nbytes()), 0)
        << "chunk " << chunk;
  }
}

TEST(Stream, ErrorsAreValues) {
  auto fe = StreamingFrontEnd::create(fake_encoder);
  ASSERT_TRUE(fe.ok());
  StreamOutput out;
  std::vector<float> x(1000, 0.1f);
  ASSERT_TRUE((*fe)->push(x.data(), x.size(), &out).ok());
  auto too_short = (*fe)->finish(&out);  // 1000 samples: T = 6 < 16
  ASSERT_FALSE(too_short.ok());
  EXPECT_NE(too_short.message().find("too short"), std::string::npos);
  auto fe2 = StreamingFrontEnd::create(fake_encoder);
  x[10] = NAN;
  EXPECT_FALSE((*fe2)->push(x.data(), x.size(), &out).ok());
  EXPECT_FALSE(StreamingFrontEnd::create(fake_encoder, {}, 0).ok());
}

}  // namespace
}  // namespace tr::audio
