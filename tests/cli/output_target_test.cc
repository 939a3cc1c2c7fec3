// render/output_target: the output kind from the --out name, and the overwrite rules
// (only files named by the sequence's pattern are ever replaced or removed).
#include "render/output_target.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <opencv2/core.hpp>
#include <set>
#include <string>

namespace tr::render {
namespace {

namespace fs = std::filesystem;

class OutputTargetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("output_target_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& rel) const { return (dir_ / rel).string(); }
  static void write(const std::string& p, const std::string& bytes) { std::ofstream(p) << bytes; }
  static std::string read(const std::string& p) {
    std::ifstream f(p);
    return std::string(std::istreambuf_iterator<char>(f), {});
  }
  static std::set<std::string> names(const std::string& folder) {
    std::set<std::string> out;
    for (const auto& e : fs::directory_iterator(folder)) out.insert(e.path().filename().string());
    return out;
  }
  // Renders `n` small frames of value `v` through the sink for `t`.
  static Status render_into(const OutputTarget& t, int n, int v, bool finish = true) {
    auto sink = open_output_sink(t, io::Mp4Options{}, io::ImageSequenceOptions{});
    if (!sink.ok()) return sink.error();
    cv::Mat frame(8, 8, CV_8UC3, cv::Scalar(v, v, v));
    for (int i = 0; i < n; ++i) TR_RETURN_IF_ERROR((*sink)->write(i, frame));
    if (!finish) {
      (*sink)->abort();
      return Status::Ok();
    }
    return (*sink)->finish();
  }

  fs::path dir_;
};

TEST(FramePattern, NamesAndMatchesExactlyItsOwnNames) {
  FramePattern p{"img_", ".png", 3};
  EXPECT_EQ(p.name(7), "img_007.png");
  EXPECT_EQ(p.name(12345), "img_12345.png");
  EXPECT_EQ(p.text(), "img_%03d.png");
  int64_t i = -1;
  EXPECT_TRUE(p.matches("img_007.png", &i));
  EXPECT_EQ(i, 7);
  EXPECT_TRUE(p.matches("img_12345.png"));
  for (const char* other : {"img_7.png", "img_0007.png", "img_007.jpg", "img_.png", "img_00a.png",
                            "xmg_007.png", "img_007.png.bak", "notes.txt"}) {
    EXPECT_FALSE(p.matches(other)) << other;
  }
  FramePattern unpadded{"f", "%.png", 0};
  EXPECT_EQ(unpadded.name(3), "f3%.png");
  EXPECT_EQ(unpadded.text(), "f%d%%.png");
  EXPECT_TRUE(unpadded.matches("f10%.png"));
  EXPECT_FALSE(unpadded.matches("f010%.png"));
}

TEST_F(OutputTargetTest, KindComesFromTheName) {
  auto mp4 = resolve_output(path("a.MP4"), "");
  ASSERT_TRUE(mp4.ok()) << mp4.error().message;
  EXPECT_EQ(mp4->kind, OutputKind::kMp4);

  auto folder = resolve_output(path("frames") + "/", "jpg");
  ASSERT_TRUE(folder.ok()) << folder.error().message;
  EXPECT_EQ(folder->kind, OutputKind::kImageSequence);
  EXPECT_EQ(folder->path, path("frames"));
  EXPECT_EQ(folder->pattern.text(), "frame_%06d.jpg");
  EXPECT_EQ(folder->format, io::ImageFormat::kJpg);

  fs::create_directories(path("existing"));
  auto existing = resolve_output(path("existing"), "");
  ASSERT_TRUE(existing.ok());
  EXPECT_EQ(existing->pattern.text(), "frame_%06d.png");

  auto pattern = resolve_output(path("seq/img_%05d.jpeg"), "jpg");
  ASSERT_TRUE(pattern.ok()) << pattern.error().message;
  EXPECT_EQ(pattern->path, path("seq"));
  EXPECT_EQ(pattern->pattern.text(), "img_%05d.jpeg");
  EXPECT_EQ(pattern->format, io::ImageFormat::kJpg);

  auto bare = resolve_output("img_%d.png", "");
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(bare->path, ".");
}

TEST_F(OutputTargetTest, OddNamesAreRefusedSayingWhatToWrite) {
  struct Case {
    std::string out, format, problem;
  };
  for (const Case& c : std::vector<Case>{
           {"out.webm", "", "not supported"},
           {"out.mkv", "", "not supported"},
           {"out.mov", "", "not supported"},
           {"out.jpg", "", "single image"},
           {"frames2", "", "ambiguous"},
           {"out.txt", "", "not an output format"},
           {"out.mp4", "png", "--format png is for image sequences"},
           {"img_%05d.png", "jpg", "contradicts"},
           {"img_%05d", "", "ends in .png"},
           {"img_%s.png", "", "%d"},
           {"img_%d_%d.png", "", "one %d"},
           {"out/", "gif", "not an image format"},
       }) {
    auto r = resolve_output(path(c.out), c.format);
    ASSERT_FALSE(r.ok()) << c.out;
    EXPECT_EQ(r.error().kind, ErrorKind::kBadInput) << c.out;
    EXPECT_NE(r.error().message.find(c.problem), std::string::npos) << r.error().message;
  }
}

TEST_F(OutputTargetTest, FolderWithOtherFilesNeedsOverwriteAndKeepsThem) {
  const std::string out = path("mydir");
  fs::create_directories(out + "/sub");
  write(out + "/notes.txt", "notes");
  write(out + "/sub/inner.txt", "inner");
  for (int i = 0; i < 5; ++i) write(out + "/frame_00000" + std::to_string(i) + ".png", "old");
  auto t = resolve_output(out + "/", "");
  ASSERT_TRUE(t.ok());

  Status refused = check_output_target(*t, /*overwrite=*/false, {});
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find("--overwrite"), std::string::npos) << refused.message();

  ASSERT_TRUE(check_output_target(*t, /*overwrite=*/true, {}).ok());
  // An interrupted render changes nothing.
  ASSERT_TRUE(render_into(*t, 3, 50, /*finish=*/false).ok());
  EXPECT_EQ(names(out).size(), 7u);
  EXPECT_EQ(read(out + "/frame_000000.png"), "old");
  // A finished one replaces frames 0..2 and removes 3 and 4; nothing else moves.
  Status s = render_into(*t, 3, 50);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(names(out), (std::set<std::string>{"notes.txt", "sub", "frame_000000.png",
                                               "frame_000001.png", "frame_000002.png"}));
  EXPECT_NE(read(out + "/frame_000000.png"), "old");
  EXPECT_EQ(read(out + "/notes.txt"), "notes");
  EXPECT_EQ(read(out + "/sub/inner.txt"), "inner");
}

TEST_F(OutputTargetTest, EmptyFolderIsUsedAndPatternNamesTheFrames) {
  const std::string out = path("seq");
  fs::create_directories(out);
  auto t = resolve_output(out + "/shot-%02d.png", "");
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE(check_output_target(*t, /*overwrite=*/false, {}).ok());
  ASSERT_TRUE(render_into(*t, 3, 10).ok());
  EXPECT_EQ(names(out), (std::set<std::string>{"shot-00.png", "shot-01.png", "shot-02.png"}));
}

TEST_F(OutputTargetTest, InputNamedLikeAFrameIsNeverReplaced) {
  const std::string out = path("seq");
  fs::create_directories(out);
  write(out + "/frame_000001.png", "an input");
  auto t = resolve_output(out + "/", "");
  ASSERT_TRUE(t.ok());
  Status s =
      check_output_target(*t, /*overwrite=*/true, {{"--features", out + "/frame_000001.png"}});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("--features"), std::string::npos) << s.message();
}

TEST_F(OutputTargetTest, SomethingOddNamedLikeAFrameIsRefused) {
  const std::string out = path("seq");
  fs::create_directories(out + "/frame_000000.png");  // a folder with a frame's name
  auto t = resolve_output(out + "/", "");
  ASSERT_TRUE(t.ok());
  Status s = check_output_target(*t, /*overwrite=*/true, {});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("not a regular file"), std::string::npos) << s.message();
}

TEST_F(OutputTargetTest, ExistingFileNeedsOverwriteAndMissingFolderIsAnIoError) {
  write(path("v.mp4"), "precious");
  auto t = resolve_output(path("v.mp4"), "");
  ASSERT_TRUE(t.ok());
  Status s = check_output_target(*t, false, {});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("--overwrite"), std::string::npos);
  EXPECT_TRUE(check_output_target(*t, true, {}).ok());
  EXPECT_FALSE(check_output_target(*t, true, {{"--audio", path("v.mp4")}}).ok());

  auto missing = resolve_output(path("no/such/v.mp4"), "");
  ASSERT_TRUE(missing.ok());
  Status io = check_output_target(*missing, false, {});
  ASSERT_FALSE(io.ok());
  EXPECT_EQ(io.error().kind, ErrorKind::kRuntime);
  EXPECT_NE(io.message().find("No such file or directory"), std::string::npos) << io.message();
}

TEST(X264Presets, ListedAndChecked) {
  EXPECT_TRUE(is_x264_preset("ultrafast"));
  EXPECT_TRUE(is_x264_preset("placebo"));
  EXPECT_FALSE(is_x264_preset("ultrafst"));
  EXPECT_FALSE(is_x264_preset(""));
}

}  // namespace
}  // namespace tr::render
