// Frame count and window rules (acceptance 4) and precomputed feature files.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "audio/audio.h"
#include "common/files.h"
#include "common/npy.h"
#include "test_util.h"

namespace tr::audio {
namespace {

TEST(Windows, FrameCountAndMelWindowsMatchReference) {
  if (!test::have_reference_python()) GTEST_SKIP() << "/usr/bin/python3 with numpy not found";
  // 384 and 672 are values where the reference's double arithmetic differs from the
  // exact rational floor; 3591 is talk_hb.wav.
  for (int64_t T : {16, 17, 31, 96, 384, 672, 3591}) {
    std::string out;
    ASSERT_EQ(
        test::run_command("/usr/bin/python3 " + test::source_root() +
                              "/tools/audio_reference.py frames --mel-frames " + std::to_string(T),
                          &out),
        0)
        << out;
    std::istringstream in(out);
    std::string tok;
    long long ref_T, ref_n;
    in >> tok;
    ASSERT_EQ(std::sscanf(tok.c_str(), "T=%lld", &ref_T), 1) << out;
    in >> tok;
    ASSERT_EQ(std::sscanf(tok.c_str(), "n=%lld", &ref_n), 1) << out;
    auto n = frame_count(T);
    ASSERT_TRUE(n.ok());
    EXPECT_EQ(*n, ref_n) << "T = " << T;
    for (int64_t i = 0; i < ref_n; ++i) {
      long long ri, rs, re;
      ASSERT_TRUE(in >> ri >> rs >> re);
      const MelSpan w = mel_window(i, T);
      ASSERT_EQ(w.begin, rs) << "T = " << T << " i = " << i;
      ASSERT_EQ(w.end, re) << "T = " << T << " i = " << i;
    }
  }
}

TEST(Windows, TooShortIsAnError) {
  for (int64_t T : {0, 1, 9, 15}) {
    auto n = frame_count(T);
    ASSERT_FALSE(n.ok()) << T;
    EXPECT_EQ(n.error().kind, ErrorKind::kBadInput);
  }
}

// P with row r = (r + 1) * 1000 + column, so any misplaced row or column shows.
Tensor numbered_features(int64_t rows, int64_t cols) {
  Tensor t = Tensor::f32({rows, cols});
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) t.data<float>()[r * cols + c] = float((r + 1) * 1000 + c);
  }
  return t;
}

TEST(Windows, PaddingAndGeneratorWindowEdges) {
  const int64_t n = 1119;
  const Tensor F = numbered_features(n, kFeatureDim);
  const Tensor P = pad_features(F);
  ASSERT_EQ(P.dim(0), n + 2);
  // P = [F0, F0 .. F(n-1), F(n-1)]
  EXPECT_EQ(std::memcmp(P.data<float>(), F.data<float>(), 4 * kFeatureDim), 0);
  EXPECT_EQ(std::memcmp(P.data<float>() + kFeatureDim, F.data<float>(), 4 * kFeatureDim * n), 0);
  EXPECT_EQ(std::memcmp(P.data<float>() + (n + 1) * kFeatureDim,
                        F.data<float>() + (n - 1) * kFeatureDim, 4 * kFeatureDim),
            0);
  std::vector<float> w(kContextRows * kFeatureDim);
  for (int64_t i : {int64_t{0}, int64_t{1}, int64_t{7}, int64_t{8}, n - 1, n, n + 1}) {
    generator_window_into(P, i, w.data());
    int zero_rows = 0;
    for (int k = 0; k < kContextRows; ++k) {
      const int64_t r = i - 8 + k;
      const float* row = w.data() + k * kFeatureDim;
      if (r < 0 || r >= P.dim(0)) {
        ++zero_rows;
        for (int c = 0; c < kFeatureDim; ++c) ASSERT_EQ(row[c], 0.0f) << "i " << i << " k " << k;
      } else {
        ASSERT_EQ(std::memcmp(row, P.data<float>() + r * kFeatureDim, 4 * kFeatureDim), 0)
            << "i " << i << " k " << k;
      }
    }
    // The contract's edges: frame 0 has 8 zero rows before it, frame 8 none.
    if (i == 0) EXPECT_EQ(zero_rows, 8);
    if (i == 1) EXPECT_EQ(zero_rows, 7);
    if (i == 7) EXPECT_EQ(zero_rows, 1);
    if (i == 8) EXPECT_EQ(zero_rows, 0);
    // Window i covers rows i-8 .. i+7 of n+2 rows (0 .. n+1): n-1 has rows n+2 .. n+6
    // outside (5), n has n+2 .. n+7 (6), n+1 has n+2 .. n+8 (7).
    if (i == n - 1) EXPECT_EQ(zero_rows, 5);
    if (i == n) EXPECT_EQ(zero_rows, 6);
    if (i == n + 1) EXPECT_EQ(zero_rows, 7);
  }
  // Window 0's row 8 is P0 = F0, row 9 is P1 = F0 too.
  generator_window_into(P, 0, w.data());
  EXPECT_EQ(w[8 * kFeatureDim], 1000.0f);
  EXPECT_EQ(w[9 * kFeatureDim], 1000.0f);  // P1 = F0 as well
  EXPECT_EQ(w[10 * kFeatureDim], 2000.0f);
}

TEST(Windows, ReshapeToModelAudioInputs) {
  const Tensor ave = pad_features(numbered_features(20, 512));
  auto w = generator_window(ave, 5, {32, 16, 16});
  ASSERT_TRUE(w.ok()) << w.error().message;
  EXPECT_EQ(w->shape(), (Shape{32, 16, 16}));
  EXPECT_EQ(*block_size_for({32, 32, 32}), 2048);   // hubert: [2, 1024] per frame
  EXPECT_EQ(*block_size_for({256, 16, 32}), 8192);  // wenet
  const Tensor hubert = numbered_features(30, 2048);
  auto hw = generator_window(hubert, 3, {32, 32, 32});
  ASSERT_TRUE(hw.ok());
  EXPECT_EQ(hw->data<float>()[5 * 2048], 1000.0f);  // row 3 - 8 + 5 = 0
  auto bad = generator_window(hubert, 3, {32, 16, 16});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("2048"), std::string::npos);
  EXPECT_FALSE(block_size_for({3, 5}).ok());
  // No padding (Ultralight): P = F.
  const Tensor f = numbered_features(4, 8);
  EXPECT_EQ(pad_features(f, false).dim(0), 4);
}

TEST(FeatureFiles, SamplePackage) {
  const std::string bin = test::shared_file("sanders/aud_ave.bin");
  if (bin.empty()) GTEST_SKIP() << "shared data sanders/aud_ave.bin not found";
  auto t = read_feature_file(bin, 512);
  ASSERT_TRUE(t.ok()) << t.error().message;
  EXPECT_EQ(t->shape(), (Shape{522, 512}));
  auto wrong = read_feature_file(bin, 2048);
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.error().message.find(bin), std::string::npos);
}

void write_bytes(const std::string& path, const std::vector<float>& v, size_t drop_bytes = 0) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(v.data()), v.size() * 4 - drop_bytes);
}

void expect_error(const Result<Tensor>& r, const std::string& path, const std::string& what) {
  ASSERT_FALSE(r.ok()) << what;
  EXPECT_EQ(r.error().kind, ErrorKind::kBadInput) << what;
  EXPECT_NE(r.error().message.find(path), std::string::npos) << what << ": " << r.error().message;
}

TEST(FeatureFiles, Validation) {
  const std::string dir = test::temp_dir();
  std::vector<float> v(10 * 512, 0.5f);
  const std::string bin = dir + "/f.bin", json = dir + "/f.json";
  write_bytes(bin, v);
  { std::ofstream(json) << R"({"num_frames": 10, "feature_size": 512, "shape": [10, 512]})"; }
  auto ok = read_feature_file(bin, 512);
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->dim(0), 10);

  write_bytes(bin, v, 100);  // not whole rows
  expect_error(read_feature_file(bin), bin, "truncated");
  write_bytes(bin, std::vector<float>(9 * 512, 0.5f));  // whole rows, sidecar says 10
  expect_error(read_feature_file(bin), bin, "sidecar disagrees");
  { std::ofstream(json) << R"({"num_frames": 9, "shape": [10, 512]})"; }
  expect_error(read_feature_file(bin), json, "sidecar inconsistent");
  { std::ofstream(json) << "{not json"; }
  expect_error(read_feature_file(bin), json, "bad json");
  std::remove(json.c_str());
  expect_error(read_feature_file(bin), bin, "no sidecar");

  v[777] = std::nanf("");
  write_bytes(bin, v);
  { std::ofstream(json) << R"({"shape": [10, 512]})"; }
  auto nan = read_feature_file(bin);
  expect_error(nan, bin, "NaN");
  if (!nan.ok()) {
    EXPECT_NE(nan.error().message.find("row 1"), std::string::npos) << nan.error().message;
  }

  // .npy: [rows, 2, 1024] (hubert) flattens to blocks of 2048.
  Tensor h = Tensor::zeros(DType::kFloat32, {6, 2, 1024});
  ASSERT_TRUE(write_npy(dir + "/h.npy", h).ok());
  auto hr = read_feature_file(dir + "/h.npy", 2048);
  ASSERT_TRUE(hr.ok()) << hr.error().message;
  EXPECT_EQ(hr->shape(), (Shape{6, 2048}));
  expect_error(read_feature_file(dir + "/h.npy", 512), dir + "/h.npy", "npy block mismatch");
  expect_error(read_feature_file(dir + "/missing.npy"), dir + "/missing.npy", "missing");
}

// Issue 23: a sidecar whose shape overflows (the fuzzer's input: the element count overflows
// int64; before, it saturated and "* 4" was signed overflow, shown as rows of -4 bytes). The
// error names the sidecar and the declared shape, never a wrapped number.
TEST(FeatureFiles, OverflowingSidecarShapeIsAnError) {
  const std::string dir = test::temp_dir();
  const std::string bin = dir + "/o.bin", json = dir + "/o.json";
  write_bytes(bin, std::vector<float>(512, 0.f));
  const char* shapes[] = {
      "[1, 1121000, 1121000009607009607]",  // the fuzzer's: numel overflows
      "[1, 4611686018427387904]",           // numel fits, bytes (* 4) do not
      "[0, 4611686018427387904, 4]",        // no rows, but the row size overflows
  };
  for (const char* s : shapes) {
    { std::ofstream(json) << "{\"shape\": " << s << "}"; }
    auto r = read_feature_file(bin);
    expect_error(r, json, s);
    if (!r.ok()) {
      EXPECT_NE(r.error().message.find(s), std::string::npos) << r.error().message;
      EXPECT_EQ(r.error().message.find("-4"), std::string::npos) << r.error().message;
    }
  }
}

}  // namespace
}  // namespace tr::audio
