// The model family table (render/model_family.h): lookup by the generator's inputs, the
// per-family windows (16 blocks for SyncTalk_2D, 8 for Ultralight, zero blocks outside the
// file), Ultralight's frame order (first frame 1), and the user's overrides.
#include "render/model_family.h"

#include <gtest/gtest.h>

#include <opencv2/imgproc.hpp>
#include <string>
#include <vector>

#include "render/render.h"

namespace tr::render {
namespace {

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

TEST(ModelFamily, SyncTalk2DFamiliesBySizeAndAudioShape) {
  struct Case {
    int size;
    Shape audio;
    const char *name, *audio_kind;
    int fps, interp;
  };
  const Case cases[] = {
      {320, {32, 16, 16}, "synctalk2d-ave-320", "ave", 25, cv::INTER_CUBIC},
      {320, {32, 32, 32}, "synctalk2d-hubert-320", "hubert", 25, cv::INTER_CUBIC},
      {320, {256, 16, 32}, "synctalk2d-wenet-320", "wenet", 20, cv::INTER_CUBIC},
      {160, {32, 16, 16}, "synctalk2d-ave-160", "ave", 25, cv::INTER_LINEAR},
      {160, {32, 32, 32}, "synctalk2d-hubert-160", "hubert", 25, cv::INTER_LINEAR},
      {160, {256, 16, 32}, "synctalk2d-wenet-160", "wenet", 20, cv::INTER_LINEAR},
  };
  for (const Case& c : cases) {
    auto f = family_for_inputs(c.size, c.audio);
    ASSERT_TRUE(f.ok()) << c.name << ": " << f.error().message;
    EXPECT_STREQ(f->name, c.name);
    EXPECT_STREQ(f->project, "SyncTalk_2D");
    EXPECT_STREQ(f->audio, c.audio_kind);
    EXPECT_EQ(f->size, c.size);
    EXPECT_EQ(f->window_blocks, 16) << c.name;
    EXPECT_EQ(f->block_numel() * 16, shape_numel(c.audio)) << c.name;
    EXPECT_EQ(f->fps, c.fps) << c.name;
    EXPECT_EQ(f->first_frame, 0) << c.name;
    EXPECT_EQ(f->crop_interpolation, c.interp) << c.name;
    EXPECT_EQ(f->paste_interpolation, c.interp) << c.name;
    EXPECT_EQ(f->pad_rows, std::string(c.audio_kind) == "ave") << c.name;
    EXPECT_EQ(f->mask, c.size == 320 ? cv::Rect(5, 5, 310, 305) : cv::Rect(5, 5, 150, 145));
  }
  // The prep settings of a SyncTalk_2D model are the table's.
  const PrepSettings p320 = PrepSettings::for_size(320);
  EXPECT_EQ(p320.crop_interpolation, cv::INTER_CUBIC);
  EXPECT_EQ(p320.crop_size(), 328);
  const PrepSettings p160 = family_for_inputs(160, {32, 32, 32})->prep();
  EXPECT_EQ(p160.crop_size(), 168);
  EXPECT_EQ(p160.mask, cv::Rect(5, 5, 150, 145));
}

TEST(ModelFamily, UltralightHubertAndWenet) {
  auto hu = family_for_inputs(160, {16, 32, 32});
  ASSERT_TRUE(hu.ok()) << hu.error().message;
  EXPECT_STREQ(hu->name, "ultralight-hubert-160");
  EXPECT_STREQ(hu->project, "Ultralight");
  EXPECT_EQ(hu->window_blocks, 8);
  // One hubert block is [2, 1024] per 25 fps frame: 8 of them are the [16, 32, 32] input.
  EXPECT_EQ(hu->block_numel(), 2 * 1024);
  EXPECT_EQ(hu->fps, 25);
  EXPECT_EQ(hu->first_frame, 1);
  EXPECT_FALSE(hu->pad_rows);
  EXPECT_EQ(hu->crop_interpolation, cv::INTER_AREA);
  EXPECT_EQ(hu->paste_interpolation, cv::INTER_LINEAR);
  const PrepSettings p = hu->prep();
  EXPECT_EQ(p.size, 160);
  EXPECT_EQ(p.crop_size(), 168);
  EXPECT_EQ(p.mask, cv::Rect(5, 5, 150, 145));
  EXPECT_EQ(p.crop_interpolation, cv::INTER_AREA);
  EXPECT_EQ(p.paste_interpolation, cv::INTER_LINEAR);

  auto we = family_for_inputs(160, {128, 16, 32});
  ASSERT_TRUE(we.ok()) << we.error().message;
  EXPECT_STREQ(we->name, "ultralight-wenet-160");
  EXPECT_EQ(we->window_blocks, 8);
  EXPECT_EQ(we->block_numel(), 16 * 512);  // aud_wenet.npy rows are [16, 512]
  EXPECT_EQ(we->fps, 20);
  EXPECT_EQ(we->first_frame, 1);

  // The audio mode view agrees with the table.
  EXPECT_STREQ(audio_mode_for_shape({16, 32, 32})->name, "hubert");
  EXPECT_EQ(audio_mode_for_shape({128, 16, 32})->fps, 20);
}

TEST(ModelFamily, UnknownInputsNameBothShapes) {
  auto bad = family_for_inputs(160, {32, 16, 15});
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(contains(bad.error().message, "[32, 16, 15]")) << bad.error().message;
  EXPECT_TRUE(contains(bad.error().message, "ultralight-hubert-160")) << bad.error().message;
  // Ultralight's audio path exists only on the 160 trunk.
  auto ul320 = family_for_inputs(320, {16, 32, 32});
  ASSERT_FALSE(ul320.ok());
  EXPECT_TRUE(contains(ul320.error().message, "320x320")) << ul320.error().message;
  // A SyncTalk_2D audio shape at another size keeps the generic rules it always had.
  auto other = family_for_inputs(64, {32, 16, 16});
  ASSERT_TRUE(other.ok()) << other.error().message;
  EXPECT_EQ(other->size, 64);
  EXPECT_EQ(other->crop_interpolation, cv::INTER_CUBIC);
  EXPECT_EQ(other->mask, cv::Rect(5, 5, 54, 61));
}

TEST(ModelFamily, OverridesReplaceOnlyWhatIsGiven) {
  const ModelFamily hu = *family_for_inputs(160, {16, 32, 32});
  const ModelFamily same = apply_overrides(hu, {});
  EXPECT_EQ(same.crop_interpolation, cv::INTER_AREA);
  EXPECT_EQ(same.first_frame, 1);
  FamilyOverrides o;
  o.crop_interpolation = cv::INTER_LINEAR;
  o.first_frame = 0;
  const ModelFamily changed = apply_overrides(hu, o);
  EXPECT_EQ(changed.crop_interpolation, cv::INTER_LINEAR);
  EXPECT_EQ(changed.paste_interpolation, cv::INTER_LINEAR);
  EXPECT_EQ(changed.first_frame, 0);
  EXPECT_EQ(changed.window_blocks, 8);
  EXPECT_EQ(changed.prep().crop_interpolation, cv::INTER_LINEAR);

  EXPECT_EQ(*parse_interpolation("area", "--crop-interp"), cv::INTER_AREA);
  EXPECT_EQ(*parse_interpolation("linear", "--crop-interp"), cv::INTER_LINEAR);
  EXPECT_EQ(*parse_interpolation("cubic", "--crop-interp"), cv::INTER_CUBIC);
  auto bad = parse_interpolation("nearest", "--crop-interp");
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(contains(bad.error().message, "--crop-interp")) << bad.error().message;
  EXPECT_STREQ(interpolation_name(cv::INTER_AREA), "area");
}

TEST(ModelFamily, FeatureBlocksMustFitTheWindow) {
  const ModelFamily hu = *family_for_inputs(160, {16, 32, 32});
  EXPECT_TRUE(check_feature_blocks("aud_hu.npy", {12, 2, 1024}, hu).ok());
  // SyncTalk_2D's hubert model takes the same blocks, 16 of them.
  EXPECT_TRUE(
      check_feature_blocks("aud_hu.npy", {12, 2, 1024}, *family_for_inputs(320, {32, 32, 32}))
          .ok());
  Status st = check_feature_blocks("dir/aud_wenet.npy", {12, 16, 512}, hu);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().kind, ErrorKind::kBadInput);
  for (const char* part :
       {"dir/aud_wenet.npy", "[12, 16, 512]", "[16, 32, 32]", "8 blocks", "2048"}) {
    EXPECT_TRUE(contains(st.message(), part)) << part << " not in: " << st.message();
  }
}

// Ultralight's window: blocks i-4 .. i+3, zero blocks outside the file, 8 x [2, 1024]
// reinterpreted as [16, 32, 32]. Checked at both ends of a 12-row file and in the middle.
TEST(ModelFamily, UltralightWindowIsEightBlocksZeroPaddedAtTheEnds) {
  const ModelFamily hu = *family_for_inputs(160, {16, 32, 32});
  const int64_t rows = 12, block = hu.block_numel();
  Tensor p = Tensor::f32({rows, block});
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < block; ++c) p.data<float>()[r * block + c] = r + 1 + c * 1e-4f;
  auto w = FeatureWindows::create(p, shape_numel(hu.audio_shape), "aud_hu.npy", hu.window_blocks);
  ASSERT_TRUE(w.ok()) << w.error().message;
  EXPECT_EQ((*w)->frames(), rows);  // one output frame per feature row, no padding rows
  EXPECT_EQ((*w)->window_numel(), 16 * 32 * 32);
  std::vector<float> win((*w)->window_numel(), -1.0f);
  // Expected source row of each of the 8 blocks (-1: zeros), written out by hand.
  const std::vector<std::pair<int64_t, std::vector<int64_t>>> expect = {
      {0, {-1, -1, -1, -1, 0, 1, 2, 3}}, {1, {-1, -1, -1, 0, 1, 2, 3, 4}},
      {5, {1, 2, 3, 4, 5, 6, 7, 8}},     {8, {4, 5, 6, 7, 8, 9, 10, 11}},
      {9, {5, 6, 7, 8, 9, 10, 11, -1}},  {11, {7, 8, 9, 10, 11, -1, -1, -1}},
  };
  for (const auto& [i, src] : expect) {
    (*w)->window(i, win.data());
    for (int64_t b = 0; b < 8; ++b) {
      for (int64_t c : {int64_t{0}, int64_t{1023}, block - 1}) {
        const float want = src[b] < 0 ? 0.0f : src[b] + 1 + c * 1e-4f;
        ASSERT_EQ(win[b * block + c], want) << "frame " << i << " block " << b << " col " << c;
      }
    }
  }
  // A 16-block window over the same file is a different model's: refused by size.
  auto wrong = FeatureWindows::create(p, shape_numel(hu.audio_shape), "aud_hu.npy", 16);
  ASSERT_FALSE(wrong.ok());
  EXPECT_TRUE(contains(wrong.error().message, "aud_hu.npy")) << wrong.error().message;
  EXPECT_FALSE(FeatureWindows::create(p, 16 * block, "x", 3).ok());  // odd windows are refused
}

// Ultralight's inference.py steps its index before using it: starting at 0 with stride 0,
// it walks 1, 2, ..., N-1, N-2, ..., 0, 1, ... This is that loop, transcribed; the table's
// first frame with the ping-pong order must give the same frames.
std::vector<int> ultralight_walk(int n_images, int steps) {
  std::vector<int> out;
  const int len_img = n_images - 1;  // len(os.listdir(img_dir)) - 1
  int img_idx = 0, step = 0;
  for (int i = 0; i < steps; ++i) {
    if (img_idx > len_img - 1) step = -1;
    if (img_idx < 1) step = 1;
    img_idx += step;
    out.push_back(img_idx);
  }
  return out;
}

TEST(ModelFamily, UltralightFrameOrderStartsAtOne) {
  const ModelFamily hu = *family_for_inputs(160, {16, 32, 32});
  for (int n : {2, 3, 5, 523}) {
    const auto walk = ultralight_walk(n, 3 * n + 7);
    for (int i = 0; i < static_cast<int>(walk.size()); ++i) {
      ASSERT_EQ(avatar_frame_for(i, n, FrameOrder::kPingPong, hu.first_frame), walk[i])
          << "n=" << n << " i=" << i;
    }
  }
  EXPECT_EQ(ultralight_walk(4, 8), (std::vector<int>{1, 2, 3, 2, 1, 0, 1, 2}));
}

}  // namespace
}  // namespace tr::render
