// Dataset folders (io/dataset.h, io/landmarks.h) and the compact JPEG frames behind them:
// the .lms rules (point count, number syntax, the reference's float32 -> int32 cast), JPEG
// planes converted to exactly cv::imread's pixels, and a folder's errors naming the file.
#include "io/dataset.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <opencv2/imgcodecs.hpp>

#include "common/files.h"
#include "io/jpeg_file.h"
#include "io/landmarks.h"
#include "io_test_util.h"

namespace tr::io {
namespace {

using test::TempDir;
namespace fs = std::filesystem;

std::string lms(int x1, int y1, int x2, int points = 110, const char* fmt = "%d %d") {
  std::string s;
  char line[64];
  for (int i = 0; i < points; ++i) {
    int x = 5 + i, y = 7 + i;
    if (i == 1) x = x1;
    if (i == 52) y = y1;
    if (i == 31) x = x2;
    std::snprintf(line, sizeof(line), fmt, x, y);
    s += std::string(line) + "\n";
  }
  return s;
}

TEST(Landmarks, RectRuleAndCast) {
  auto p = parse_landmarks(lms(10, 20, 40), "a.lms");
  ASSERT_TRUE(p.ok()) << p.error().message;
  auto r = rect_from_landmarks(*p, "a.lms");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, (CropRect{10, 20, 40, 50}));
  // Floats truncate toward zero after rounding to float32: 39.99999999 is 40.0f.
  std::string text = lms(0, 0, 0);
  std::vector<std::string> lines;
  for (size_t a = 0, b; (b = text.find('\n', a)) != std::string::npos; a = b + 1)
    lines.push_back(text.substr(a, b - a));
  lines[1] = "10.9 3";
  lines[52] = "1 20.5";
  lines[31] = "39.99999999 2";
  std::string joined;
  for (auto& l : lines) joined += l + "\r\n";  // CRLF is fine too
  p = parse_landmarks(joined, "b.lms");
  ASSERT_TRUE(p.ok()) << p.error().message;
  r = rect_from_landmarks(*p, "b.lms");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, (CropRect{10, 20, 40, 50}));
}

TEST(Landmarks, Errors) {
  auto p = parse_landmarks(lms(1, 2, 3, 109), "short.lms");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.error().message.find("short.lms: 109 points"), std::string::npos);
  std::string bad = lms(1, 2, 3);
  bad.replace(bad.find("\n") + 1, 0, "12 abc\n");
  p = parse_landmarks(bad, "bad.lms");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.error().message.find("bad.lms: line 2"), std::string::npos) << p.error().message;
  for (const char* text : {"1 2 3\n", "nan 1\n", "1\n", "", "\n\n1 2\n", "0x10 1\n"}) {
    EXPECT_FALSE(parse_landmarks(text, "x.lms").ok()) << text;
  }
}

// Random-ish frames in odd and even sizes: the compact planes give cv::imread's bytes.
TEST(JpegCompact, EqualsImread) {
  TempDir dir;
  cv::RNG rng(5);
  for (cv::Size size : {cv::Size(1279, 719), cv::Size(64, 48), cv::Size(33, 17), cv::Size(9, 9)}) {
    for (int quality : {30, 95}) {
      cv::Mat img(size, CV_8UC3);
      rng.fill(img, cv::RNG::UNIFORM, 0, 256);
      const std::string path = dir.file("f.jpg");
      ASSERT_TRUE(cv::imwrite(path, img, {cv::IMWRITE_JPEG_QUALITY, quality}));
      auto bytes = read_file(path);
      ASSERT_TRUE(bytes.ok());
      auto f = decode_jpeg_compact(*bytes, path);
      ASSERT_TRUE(f.ok()) << f.error().message;
      EXPECT_EQ(f->kind, JpegFrame::Kind::kYuv420);
      cv::Mat got;
      jpeg_frame_to_bgr(*f, got);
      cv::Mat want = cv::imread(path, cv::IMREAD_COLOR);
      ASSERT_EQ(got.size(), want.size());
      EXPECT_EQ(cv::norm(got, want, cv::NORM_INF), 0) << size << " q" << quality;
    }
  }
}

TEST(Dataset, OpensAndNamesBadFiles) {
  TempDir dir;
  const std::string ds = dir.path();
  fs::create_directories(ds + "/full_body_img");
  fs::create_directories(ds + "/landmarks");
  cv::Mat img(48, 64, CV_8UC3, cv::Scalar(10, 100, 200));
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(cv::imwrite(ds + "/full_body_img/" + std::to_string(i) + ".jpg", img));
    std::ofstream(ds + "/landmarks/" + std::to_string(i) + ".lms") << lms(4 + i, 6, 30);
  }
  PackageOptions po;
  po.frame_store = true;
  auto pkg = open_dataset(ds, po);
  ASSERT_TRUE(pkg.ok()) << pkg.error().message;
  EXPECT_EQ(pkg->frame_count, 3);
  EXPECT_EQ(pkg->rects[2], (CropRect{6, 6, 30, 30}));
  ASSERT_TRUE(pkg->store);
  EXPECT_LT(pkg->store->frame_bytes(), 64 * 48 * 3);  // compact: 4:2:0 planes

  std::ofstream(ds + "/landmarks/3.lms") << lms(4, 6, 30);
  auto bad = open_dataset(ds, po);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("landmarks/3.lms"), std::string::npos);
  fs::remove(ds + "/landmarks/3.lms");
  fs::remove(ds + "/full_body_img/1.jpg");
  bad = open_dataset(ds, po);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("full_body_img/1.jpg: missing"), std::string::npos)
      << bad.error().message;
}

}  // namespace
}  // namespace tr::io
