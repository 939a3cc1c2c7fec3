// Frame order, per-frame preparation, compositing and audio windows (contract 3, 4, 5).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <opencv2/imgproc.hpp>
#include <vector>

#include "render/render.h"

namespace tr::render {
namespace {

// A walk that turns around at the ends, written independently of avatar_frame_for.
std::vector<int> walk_pingpong(int n, int64_t steps) {
  std::vector<int> out;
  int k = 0, dir = 1;
  for (int64_t i = 0; i < steps; ++i) {
    out.push_back(k);
    if (n == 1) continue;
    if (k + dir < 0 || k + dir >= n) dir = -dir;
    k += dir;
  }
  return out;
}

TEST(FrameOrder, PingPongMatchesAWalkThatTurnsAtTheEnds) {
  for (int n : {1, 2, 3, 7, 523}) {
    const auto walk = walk_pingpong(n, 3 * n + 5);
    for (int64_t start : {0, 1, 5, 600}) {
      for (int64_t i = 0; i + start < static_cast<int64_t>(walk.size()); ++i) {
        ASSERT_EQ(avatar_frame_for(i, n, FrameOrder::kPingPong, start), walk[i + start])
            << "n=" << n << " i=" << i << " start=" << start;
      }
    }
  }
}

TEST(FrameOrder, PingPongContractExample) {
  // Contract section 5: 0, 1, ..., N-1, N-2, ..., 1, 0, 1, ...
  std::vector<int> got;
  for (int i = 0; i < 9; ++i) got.push_back(avatar_frame_for(i, 4, FrameOrder::kPingPong));
  EXPECT_EQ(got, (std::vector<int>{0, 1, 2, 3, 2, 1, 0, 1, 2}));
  // Past the end of a 523-frame avatar the walk comes back: 522 then 521.
  EXPECT_EQ(avatar_frame_for(522, 523, FrameOrder::kPingPong), 522);
  EXPECT_EQ(avatar_frame_for(523, 523, FrameOrder::kPingPong), 521);
  EXPECT_EQ(avatar_frame_for(0, 523, FrameOrder::kPingPong, 1044), 0);
}

TEST(FrameOrder, LoopWrapsAndParses) {
  for (int n : {1, 4, 10}) {
    for (int64_t i = 0; i < 3 * n; ++i) {
      EXPECT_EQ(avatar_frame_for(i, n, FrameOrder::kLoop, 2), (i + 2) % n);
    }
  }
  EXPECT_EQ(*parse_frame_order("loop"), FrameOrder::kLoop);
  EXPECT_EQ(*parse_frame_order("pingpong"), FrameOrder::kPingPong);
  auto bad = parse_frame_order("zigzag");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().kind, ErrorKind::kBadInput);
  EXPECT_NE(bad.error().message.find("zigzag"), std::string::npos);
}

cv::Mat random_frame(int w, int h, int seed) {
  cv::Mat m(h, w, CV_8UC3);
  cv::RNG rng(seed);
  rng.fill(m, cv::RNG::UNIFORM, 0, 256);
  return m;
}

TEST(Prep, SettingsPerModelSize) {
  auto s320 = PrepSettings::for_size(320);
  EXPECT_EQ(s320.crop_size(), 328);
  EXPECT_EQ(s320.crop_interpolation, cv::INTER_CUBIC);
  EXPECT_EQ(s320.paste_interpolation, cv::INTER_CUBIC);
  EXPECT_EQ(s320.mask, cv::Rect(5, 5, 310, 305));
  auto s160 = PrepSettings::for_size(160);
  EXPECT_EQ(s160.crop_size(), 168);
  EXPECT_EQ(s160.crop_interpolation, cv::INTER_LINEAR);
  EXPECT_EQ(s160.paste_interpolation, cv::INTER_LINEAR);
  EXPECT_EQ(s160.mask, cv::Rect(5, 5, 150, 145));
}

// The input tensor: ROI / 255 in channels 0..2, the same with the mask black in 3..5.
void check_input(int size) {
  const PrepSettings s = PrepSettings::for_size(size);
  cv::Mat full = random_frame(400, 300, size);
  cv::Rect rect(100, 50, 180, 170);
  cv::Mat crop = make_crop(full, rect, s);
  ASSERT_EQ(crop.rows, s.crop_size());
  ASSERT_EQ(crop.cols, s.crop_size());
  cv::Mat expect_crop;
  cv::resize(full(rect), expect_crop, cv::Size(s.crop_size(), s.crop_size()), 0, 0,
             s.crop_interpolation);
  EXPECT_EQ(cv::norm(crop, expect_crop, cv::NORM_INF), 0);

  const int S = s.size;
  std::vector<float> input(6 * S * S, -1.0f);
  fill_generator_input(crop, s, input.data());
  int64_t masked = 0;
  for (int y = 0; y < S; ++y) {
    for (int x = 0; x < S; ++x) {
      const bool in_mask =
          x >= 5 && x < (size == 320 ? 315 : 155) && y >= 5 && y < (size == 320 ? 310 : 150);
      masked += in_mask;
      for (int c = 0; c < 3; ++c) {
        const float roi = static_cast<float>(crop.at<cv::Vec3b>(y + 4, x + 4)[c]) / 255.0f;
        ASSERT_EQ(input[(c * S + y) * S + x], roi) << x << "," << y;
        ASSERT_EQ(input[((3 + c) * S + y) * S + x], in_mask ? 0.0f : roi) << x << "," << y;
      }
    }
  }
  EXPECT_EQ(masked, size == 320 ? 310 * 305 : 150 * 145);
}

TEST(Prep, InputTensor320) { check_input(320); }
TEST(Prep, InputTensor160) { check_input(160); }

TEST(Prep, PredictionTruncatesLikeNumpy) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> pred = {0.5f, 1.0f,  0.999f, -0.2f, nan,  1.5f,
                             0.0f, 0.25f, 0.004f, 0.1f,  0.2f, 0.3f};
  // A 2x2 prediction: 3 planes of 4 values.
  cv::Mat img = prediction_to_image(pred.data(), 2);
  for (int c = 0; c < 3; ++c) {
    for (int p = 0; p < 4; ++p) {
      const float v = pred[c * 4 + p] * 255.0f;
      const int expect = std::isnan(v) || v <= 0 ? 0 : (v >= 255 ? 255 : static_cast<int>(v));
      EXPECT_EQ(img.at<cv::Vec3b>(p / 2, p % 2)[c], expect) << "value " << pred[c * 4 + p];
    }
  }
  EXPECT_EQ(img.at<cv::Vec3b>(0, 0)[0], 127);  // 127.5 truncates, not rounds
}

void check_composite(int size) {
  const PrepSettings s = PrepSettings::for_size(size);
  cv::Mat full = random_frame(640, 360, 7 + size);
  const cv::Mat original = full.clone();
  cv::Rect rect(300, 100, 177, 189);
  cv::Mat crop = make_crop(full, rect, s);
  const int S = s.size;
  std::vector<float> pred(3 * S * S);
  cv::RNG rng(3);
  for (auto& v : pred) v = rng.uniform(0.0f, 1.0f);
  cv::Mat out;
  composite_frame(full, rect, crop, pred.data(), s, &out);
  EXPECT_EQ(cv::norm(full, original, cv::NORM_INF), 0) << "the input frame was modified";
  ASSERT_EQ(out.size(), full.size());

  // Outside the rect: bit-identical to the input frame.
  cv::Mat outside_mask(full.size(), CV_8U, cv::Scalar(255));
  outside_mask(rect).setTo(0);
  EXPECT_EQ(cv::norm(out, full, cv::NORM_INF, outside_mask), 0);

  // Inside: resize(crop with the truncated prediction pasted at [4:S+4]).
  cv::Mat canvas = crop.clone();
  for (int y = 0; y < S; ++y)
    for (int x = 0; x < S; ++x)
      for (int c = 0; c < 3; ++c)
        canvas.at<cv::Vec3b>(y + 4, x + 4)[c] =
            static_cast<uint8_t>(pred[(c * S + y) * S + x] * 255.0f);
  cv::Mat patch;
  cv::resize(canvas, patch, rect.size(), 0, 0, s.paste_interpolation);
  EXPECT_EQ(cv::norm(out(rect), patch, cv::NORM_INF), 0);
  // The prediction actually changed the frame (the test can fail).
  EXPECT_GT(cv::norm(out(rect), full(rect), cv::NORM_INF), 10);
}

TEST(Composite, OutsideRectBitIdentical320) { check_composite(320); }
TEST(Composite, OutsideRectBitIdentical160) { check_composite(160); }

TEST(Avatar, ValidateNamesTheBadFrame) {
  const PrepSettings s = PrepSettings::for_size(320);
  AvatarFrames a;
  for (int k = 0; k < 3; ++k) {
    a.full.push_back(random_frame(64, 48, k));
    a.rects.emplace_back(10, 10, 20, 20);
  }
  EXPECT_TRUE(validate_avatar(a, s, "pkg").ok());
  a.rects[2] = cv::Rect(50, 40, 20, 20);  // runs off the 64x48 frame
  Status st = validate_avatar(a, s, "pkg");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("frame 2"), std::string::npos) << st.message();
  a.rects[2] = cv::Rect(10, 10, 20, 20);
  a.crops.assign(3, cv::Mat(100, 100, CV_8UC3));
  st = validate_avatar(a, s, "pkg");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("328"), std::string::npos) << st.message();
}

TEST(AudioWindows, SixteenRowsAroundTheFrameWithZerosOutside) {
  const int64_t rows = 20, block = 512;
  Tensor p = Tensor::f32({rows, block});
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < block; ++c) p.data<float>()[r * block + c] = r + 1 + c * 1e-3f;
  auto w = FeatureWindows::create(p, 32 * 16 * 16, "feat");
  ASSERT_TRUE(w.ok()) << w.error().message;
  EXPECT_EQ((*w)->frames(), rows);
  std::vector<float> win(16 * block);
  for (int64_t i : {0, 3, 8, 12, 19}) {
    (*w)->window(i, win.data());
    for (int64_t r = 0; r < 16; ++r) {
      const int64_t src = i - 8 + r;
      const float expect0 = (src < 0 || src >= rows) ? 0.0f : src + 1;
      ASSERT_EQ(win[r * block], expect0) << "i=" << i << " r=" << r;
      ASSERT_EQ(win[r * block + 7], src < 0 || src >= rows ? 0.0f : src + 1 + 7e-3f);
    }
  }
  auto bad = FeatureWindows::create(p, 32 * 32 * 32, "feat.bin");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("feat.bin"), std::string::npos);
}

TEST(AudioWindows, ModesByShape) {
  EXPECT_STREQ(audio_mode_for_shape({32, 16, 16})->name, "ave");
  EXPECT_STREQ(audio_mode_for_shape({32, 32, 32})->name, "hubert");
  EXPECT_STREQ(audio_mode_for_shape({256, 16, 32})->name, "wenet");
  EXPECT_FALSE(audio_mode_for_shape({32, 16, 15}).ok());
}

}  // namespace
}  // namespace tr::render
