// Decoding: pixels must equal the ffmpeg CLI's bgr24 output; broken files give clear errors.
#include "io/video_reader.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "io_test_util.h"

namespace tr::io {
namespace {

using test::TempDir;

int count_differing_frames(const std::vector<cv::Mat>& a, const std::vector<cv::Mat>& b) {
  int bad = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    if (a[i].size() != b[i].size() || cv::norm(a[i], b[i], cv::NORM_INF) != 0) ++bad;
  }
  return bad;
}

std::vector<cv::Mat> read_sequentially(const std::string& path, int max_frames = 1 << 30) {
  std::vector<cv::Mat> frames;
  auto reader = VideoReader::open(path);
  EXPECT_TRUE(reader.ok()) << reader.error().message;
  if (!reader.ok()) return frames;
  for (int i = 0; i < max_frames; ++i) {
    cv::Mat m;
    auto got = (*reader)->next_frame(m);
    EXPECT_TRUE(got.ok()) << got.error().message;
    if (!got.ok() || !*got) break;
    frames.push_back(m);
  }
  return frames;
}

struct ClipCase {
  const char* name;
  int width, height;
  const char* extra;  // extra ffmpeg encode arguments
};

class GeneratedClipTest : public ::testing::TestWithParam<ClipCase> {};

TEST_P(GeneratedClipTest, DecodeAllAndReaderMatchFfmpegCli) {
  const ClipCase& c = GetParam();
  TempDir tmp;
  std::string path = tmp.file("clip.mp4");
  ASSERT_TRUE(test::make_test_video(path, 12, c.width, c.height, c.extra));
  auto expected = test::ffmpeg_cli_bgr_frames(path, c.width, c.height);
  ASSERT_EQ(expected.size(), 12u);

  auto all = decode_all_frames(path, {.threads = 2});
  ASSERT_TRUE(all.ok()) << all.error().message;
  ASSERT_EQ(all->size(), expected.size());
  EXPECT_EQ((*all)[0].type(), CV_8UC3);
  EXPECT_EQ(count_differing_frames(*all, expected), 0);

  auto seq = read_sequentially(path);
  ASSERT_EQ(seq.size(), expected.size());
  EXPECT_EQ(count_differing_frames(seq, expected), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Clips, GeneratedClipTest,
    ::testing::Values(ClipCase{"plain", 160, 120, ""}, ClipCase{"odd_width", 150, 98, ""},
                      ClipCase{"width_4_mod_8", 100, 60, ""},
                      ClipCase{"bt709_tagged", 160, 120, "-colorspace bt709 -color_range tv"},
                      ClipCase{"full_range", 96, 64, "-color_range pc"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(VideoReaderTest, ProbeReportsStreamFields) {
  TempDir tmp;
  std::string path = tmp.file("clip.mp4");
  ASSERT_TRUE(test::make_test_video(path, 7, 64, 48));
  auto info = probe_video(path);
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_EQ(info->width, 64);
  EXPECT_EQ(info->height, 48);
  EXPECT_EQ(info->frame_count, 7);
  EXPECT_EQ(info->fps_num, 25);
  EXPECT_EQ(info->fps_den, 1);
  EXPECT_EQ(info->codec, "h264");
}

TEST(VideoReaderTest, MissingFileIsBadInputNamingIt) {
  auto r = decode_all_frames("/nonexistent/dir/video.mp4");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kBadInput);
  EXPECT_NE(r.error().message.find("/nonexistent/dir/video.mp4"), std::string::npos);
  EXPECT_NE(r.error().message.find("not found"), std::string::npos);
}

TEST(VideoReaderTest, GarbageFileIsBadInput) {
  TempDir tmp;
  std::string path = tmp.file("garbage.mp4");
  std::string junk(5000, '\0');
  for (size_t i = 0; i < junk.size(); ++i) junk[i] = static_cast<char>((i * 7919) % 251);
  test::write_text(path, junk);
  auto r = decode_all_frames(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kBadInput);
  EXPECT_NE(r.error().message.find(path), std::string::npos);
  auto reader = VideoReader::open(path);
  EXPECT_FALSE(reader.ok());
}

TEST(VideoReaderTest, TruncatedFileIsAnError) {
  TempDir tmp;
  std::string path = tmp.file("clip.mp4");
  // faststart puts the index first, so a truncated file still opens but lacks frames.
  ASSERT_TRUE(test::make_test_video(path, 25, 160, 120, "-movflags +faststart"));
  auto size = std::filesystem::file_size(path);
  std::filesystem::resize_file(path, size / 2);
  auto r = decode_all_frames(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kBadInput);
  EXPECT_NE(r.error().message.find(path), std::string::npos);

  auto reader = VideoReader::open(path);
  ASSERT_TRUE(reader.ok()) << reader.error().message;
  cv::Mat m;
  Status last;
  for (int i = 0; i < 100; ++i) {
    auto got = (*reader)->next_frame(m);
    if (!got.ok()) {
      last = got.status();
      break;
    }
    if (!*got) break;
  }
  EXPECT_FALSE(last.ok()) << "a truncated stream must not end silently";
}

TEST(VideoReaderTest, SamplePackageFramesMatchFfmpegCli) {
  std::string data = test::shared_data_dir();
  if (data.empty()) GTEST_SKIP() << "shared sample data not found (set TALKRENDER_SHARED)";
  std::string full = data + "/sanders/full_body_video.mp4";
  auto expected = test::ffmpeg_cli_bgr_frames(full, 1280, 720, 4);
  ASSERT_EQ(expected.size(), 4u);
  auto seq = read_sequentially(full, 4);
  ASSERT_EQ(seq.size(), 4u);
  EXPECT_EQ(count_differing_frames(seq, expected), 0);

  // The whole crops video through the parallel decoder (small: 523 x 328 x 328).
  std::string crops = data + "/sanders/crops_328_video.mp4";
  auto crops_expected = test::ffmpeg_cli_bgr_frames(crops, 328, 328);
  auto crops_all = decode_all_frames(crops);
  ASSERT_TRUE(crops_all.ok()) << crops_all.error().message;
  ASSERT_EQ(crops_all->size(), 523u);
  ASSERT_EQ(crops_expected.size(), 523u);
  EXPECT_EQ(count_differing_frames(*crops_all, crops_expected), 0);
}

}  // namespace
}  // namespace tr::io
