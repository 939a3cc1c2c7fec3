// Avatar package loading: a valid package loads; every kind of breakage is reported with
// the file and the frame or field at fault.
#include "io/package.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "io_test_util.h"

namespace tr::io {
namespace {

using test::TempDir;
namespace fs = std::filesystem;

constexpr int kW = 96, kH = 64, kFrames = 6;

std::string rects_json(int n, int dx = 0) {
  std::string s = "{";
  for (int i = 0; i < n; ++i) {
    if (i) s += ",";
    s += "\"" + std::to_string(i) + "\": {\"rect\": [" + std::to_string(10 + dx + i) + ", 8, " +
         std::to_string(50 + dx + i) + ", 48], \"original_path\": \"x.jpg\"}";
  }
  return s + "}";
}

// A small valid package: full video, rects, crops video, package_info, aud_ave.
void make_package(const std::string& dir, int frames = kFrames) {
  fs::create_directories(dir + "/cache");
  ASSERT_TRUE(test::make_test_video(dir + "/full_body_video.mp4", frames, kW, kH));
  ASSERT_TRUE(test::make_test_video(dir + "/crops_328_video.mp4", frames, 32, 32));
  test::write_text(dir + "/cache/crop_rectangles.json", rects_json(frames));
  test::write_text(dir + "/package_info.json",
                   "{\"videos\": {\"full_body_img\": {\"frame_count\": " + std::to_string(frames) +
                       ", \"fps\": 25}}}");
  test::write_text(dir + "/aud_ave.bin", std::string(3 * 512 * 4, '\0'));
  test::write_text(dir + "/aud_ave.json", "{\"shape\": [3, 512]}");
}

PackageOptions probe_only(CropsFrom crops = CropsFrom::kFullFrame) {
  PackageOptions o;
  o.decode_frames = false;
  o.crops_from = crops;
  return o;
}

// Expects open_package to fail with kBadInput and a message containing every needle.
void expect_error(const std::string& dir, std::vector<std::string> needles,
                  PackageOptions opts = {}) {
  auto r = open_package(dir, opts);
  ASSERT_FALSE(r.ok()) << "expected failure for " << dir;
  EXPECT_EQ(r.error().kind, ErrorKind::kBadInput) << r.error().message;
  for (const auto& n : needles)
    EXPECT_NE(r.error().message.find(n), std::string::npos)
        << "message '" << r.error().message << "' lacks '" << n << "'";
}

TEST(ParseCropRects, ParsesAnyKeyOrderAndIgnoresOtherFields) {
  auto r = parse_crop_rects(
      R"({"1": {"rect": [5, 6, 7, 8], "x": 1}, "0": {"rect": [1, 2, 3, 4.0]}})", "r.json");
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0], (CropRect{1, 2, 3, 4}));
  EXPECT_EQ((*r)[1], (CropRect{5, 6, 7, 8}));
  EXPECT_EQ((*r)[1].width(), 2);
}

struct BadRectCase {
  const char* name;
  const char* json;
  const char* needle;
};

class ParseCropRectsBad : public ::testing::TestWithParam<BadRectCase> {};

TEST_P(ParseCropRectsBad, FailsNamingTheProblem) {
  auto r = parse_crop_rects(GetParam().json, "crop_rectangles.json");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kBadInput);
  EXPECT_NE(r.error().message.find("crop_rectangles.json"), std::string::npos);
  EXPECT_NE(r.error().message.find(GetParam().needle), std::string::npos) << r.error().message;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ParseCropRectsBad,
    ::testing::Values(
        BadRectCase{"truncated", R"({"0": {"rect": [1, 2, 3)", "invalid JSON"},
        BadRectCase{"empty_text", "", "invalid JSON"},
        BadRectCase{"not_object", "[1, 2, 3, 4]", "expected a JSON object"},
        BadRectCase{"no_rects", "{}", "no rectangles"},
        BadRectCase{"missing_key", R"({"0": {"rect": [1,2,3,4]}, "2": {"rect": [1,2,3,4]}})",
                    "frame 1 is missing"},
        BadRectCase{"bad_key", R"({"a": {"rect": [1,2,3,4]}})", "key \"a\""},
        BadRectCase{"no_rect_field", R"({"0": {"box": [1,2,3,4]}})", "frame 0: no \"rect\""},
        BadRectCase{"short_rect", R"({"0": {"rect": [1,2,3]}})", "[x1, y1, x2, y2]"},
        BadRectCase{"string_value", R"({"0": {"rect": [1,"2",3,4]}})", "not an integer"},
        BadRectCase{"fraction", R"({"0": {"rect": [1,2.5,3,4]}})", "not an integer"},
        BadRectCase{"negative", R"({"0": {"rect": [-1,2,3,4]}})", "negative"},
        BadRectCase{"empty_rect", R"({"0": {"rect": [5,2,5,4]}})", "is empty"},
        BadRectCase{"inverted", R"({"0": {"rect": [1,9,3,4]}})", "is empty"},
        BadRectCase{"huge", R"({"0": {"rect": [1,2,3,99999999999]}})", "not an integer"}),
    [](const auto& info) { return std::string(info.param.name); });

// What the fuzz target does, deterministically: mangled input must give a value or an
// error, never a crash or an exception.
TEST(ParseCropRects, SurvivesMutatedInput) {
  const std::string valid = rects_json(4);
  uint32_t state = 12345;
  auto next = [&] { return state = state * 1664525u + 1013904223u; };
  const std::string alphabet = "{}[]\":,0123456789-.e \\rect";
  int ok = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string s = valid;
    for (int m = 0, n = 1 + next() % 4; m < n; ++m) {
      size_t pos = next() % s.size();
      switch (next() % 3) {
        case 0:
          s[pos] = alphabet[next() % alphabet.size()];
          break;
        case 1:
          s.erase(pos, 1 + next() % 8);
          break;
        default:
          s.insert(pos, 1, alphabet[next() % alphabet.size()]);
          break;
      }
      if (s.empty()) s = "{";
    }
    auto r = parse_crop_rects(s, "fuzz.json");
    if (r.ok()) {
      ++ok;
      for (const auto& rect : *r) EXPECT_TRUE(rect.x2 > rect.x1 && rect.y2 > rect.y1);
    } else {
      EXPECT_FALSE(r.error().message.empty());
    }
  }
  EXPECT_GT(ok, 0) << "some mutations keep the JSON valid";
}

TEST(ValidateCropRects, ChecksBoundsAndCount) {
  std::vector<CropRect> rects = {{0, 0, 10, 10}, {90, 50, 96, 64}};
  EXPECT_TRUE(validate_crop_rects(rects, 2, 96, 64, "r").ok());
  auto s = validate_crop_rects(rects, 3, 96, 64, "r");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("2 rectangles but the video has 3"), std::string::npos);
  rects[1].x2 = 97;
  s = validate_crop_rects(rects, 2, 96, 64, "r");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("frame 1"), std::string::npos) << s.message();
}

TEST(OpenPackage, LoadsAValidPackage) {
  TempDir tmp;
  make_package(tmp.path());
  PackageOptions opts;
  opts.crops_from = CropsFrom::kVideo;
  auto r = open_package(tmp.path(), opts);
  ASSERT_TRUE(r.ok()) << r.error().message;
  const AvatarPackage& p = *r;
  EXPECT_EQ(p.frame_count, kFrames);
  EXPECT_EQ(p.width, kW);
  EXPECT_EQ(p.height, kH);
  EXPECT_DOUBLE_EQ(p.fps, 25.0);
  ASSERT_EQ(p.frames.size(), size_t(kFrames));
  EXPECT_EQ(p.frames[0].cols, kW);
  EXPECT_EQ(p.frames[0].type(), CV_8UC3);
  ASSERT_EQ(p.crop_frames.size(), size_t(kFrames));
  EXPECT_EQ(p.crop_frames[0].cols, 32);
  ASSERT_EQ(p.rects.size(), size_t(kFrames));
  EXPECT_EQ(p.rects[2], (CropRect{12, 8, 52, 48}));
  EXPECT_EQ(p.min_rect_w, 40);
  EXPECT_EQ(p.max_rect_h, 40);
  EXPECT_EQ(p.aud_ave_rows, 3);
  EXPECT_FALSE(p.crops_video_path.empty());
  EXPECT_TRUE(p.generator_path.empty());
  // Frames are the decoded video, not placeholders: the test pattern is not flat.
  double lo, hi;
  cv::minMaxLoc(p.frames[0].reshape(1), &lo, &hi);
  EXPECT_LT(lo, hi);
}

TEST(OpenPackage, ProbeOnlyLeavesFramesEmpty) {
  TempDir tmp;
  make_package(tmp.path());
  auto r = open_package(tmp.path(), probe_only());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->frame_count, kFrames);
  EXPECT_TRUE(r->frames.empty());
}

TEST(OpenPackage, MissingDirectoryOrRequiredFiles) {
  TempDir tmp;
  expect_error(tmp.file("nope"), {"nope", "not found"});
  make_package(tmp.path());
  fs::remove(tmp.file("cache/crop_rectangles.json"));
  expect_error(tmp.path(), {"crop_rectangles.json", "missing"});
  fs::remove(tmp.file("full_body_video.mp4"));
  expect_error(tmp.path(), {"full_body_video.mp4", "missing"});
}

TEST(OpenPackage, InvalidRectJson) {
  TempDir tmp;
  make_package(tmp.path());
  test::write_text(tmp.file("cache/crop_rectangles.json"), rects_json(kFrames).substr(0, 40));
  expect_error(tmp.path(), {"crop_rectangles.json", "invalid JSON"});
}

TEST(OpenPackage, OutOfBoundsRect) {
  TempDir tmp;
  make_package(tmp.path());
  // dx = 50 pushes the later rects past the 96-pixel width: frame 0 has x2 = 100.
  test::write_text(tmp.file("cache/crop_rectangles.json"), rects_json(kFrames, 50));
  expect_error(tmp.path(), {"crop_rectangles.json", "frame 0", "inside the 96x64 frame"});
}

TEST(OpenPackage, RectCountMismatch) {
  TempDir tmp;
  make_package(tmp.path());
  test::write_text(tmp.file("cache/crop_rectangles.json"), rects_json(kFrames - 1));
  expect_error(tmp.path(), {"crop_rectangles.json", "5 rectangles", "6 frames"});
}

TEST(OpenPackage, CorruptVideo) {
  TempDir tmp;
  make_package(tmp.path());
  test::write_text(tmp.file("full_body_video.mp4"), std::string(4096, 'x'));
  expect_error(tmp.path(), {"full_body_video.mp4"});
}

TEST(OpenPackage, VideosOfDifferentLengths) {
  TempDir tmp;
  make_package(tmp.path());
  ASSERT_TRUE(test::make_test_video(tmp.file("crops_328_video.mp4"), kFrames + 2, 32, 32));
  expect_error(tmp.path(), {"crops_328_video.mp4", "8 frames", "same frame count"});
}

TEST(OpenPackage, CropsFromVideoNeedsTheVideo) {
  TempDir tmp;
  make_package(tmp.path());
  fs::remove(tmp.file("crops_328_video.mp4"));
  EXPECT_TRUE(open_package(tmp.path(), probe_only()).ok());
  expect_error(tmp.path(), {"crops_328_video.mp4", "missing"}, probe_only(CropsFrom::kVideo));
}

TEST(OpenPackage, PackageInfoProblems) {
  TempDir tmp;
  make_package(tmp.path());
  test::write_text(tmp.file("package_info.json"), "{\"videos\": ");
  expect_error(tmp.path(), {"package_info.json", "invalid JSON"}, probe_only());
  test::write_text(tmp.file("package_info.json"),
                   "{\"videos\": {\"full_body_img\": {\"frame_count\": 99}}}");
  expect_error(tmp.path(), {"package_info.json", "full_body_img.frame_count is 99"}, probe_only());
}

TEST(OpenPackage, AudAveProblems) {
  TempDir tmp;
  make_package(tmp.path());
  test::write_text(tmp.file("aud_ave.bin"), std::string(100, '\0'));
  expect_error(tmp.path(), {"aud_ave.bin", "float32 rows"}, probe_only());
  test::write_text(tmp.file("aud_ave.bin"), std::string(2 * 2048, '\0'));
  expect_error(tmp.path(), {"aud_ave.json", "shape [3, 512]"}, probe_only());
}

TEST(OpenPackage, SamplePackageProbe) {
  std::string data = test::shared_data_dir();
  if (data.empty()) GTEST_SKIP() << "shared sample data not found (set TALKRENDER_SHARED)";
  auto r = open_package(data + "/sanders", probe_only());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->frame_count, 523);
  EXPECT_EQ(r->width, 1280);
  EXPECT_EQ(r->height, 720);
  EXPECT_EQ(r->fps_num, 25);
  EXPECT_EQ(r->rects.size(), 523u);
  EXPECT_EQ(r->rects[0], (CropRect{532, 210, 714, 392}));
  EXPECT_EQ(r->min_rect_w, 173);
  EXPECT_EQ(r->max_rect_w, 189);
  EXPECT_EQ(r->aud_ave_rows, 522);
}

}  // namespace
}  // namespace tr::io
