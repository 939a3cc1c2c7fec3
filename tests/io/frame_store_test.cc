// FrameStore: the compact full cache and the bounded streaming cache must both give exactly
// the ffmpeg CLI's BGR pixels, for every frame of a ping-pong walk (which decodes backwards
// through GOPs), and say clearly when the cache is too small or the file is broken.
#include "io/frame_store.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "io_test_util.h"

namespace tr::io {
namespace {

// Ping-pong over n frames: 0..n-1, n-2..1, 0, ...
int pingpong(int64_t i, int n) {
  const int64_t period = 2LL * (n - 1);
  const int64_t m = i % period;
  return static_cast<int>(m < n ? m : period - m);
}

bool same(const cv::Mat& a, const cv::Mat& b) {
  return a.size() == b.size() && a.type() == b.type() && cv::norm(a, b, cv::NORM_INF) == 0;
}

TEST(FrameStoreTest, FullCacheMatchesFfmpegCli) {
  test::TempDir dir;
  const std::string path = dir.file("clip.mp4");
  ASSERT_TRUE(test::make_test_video(path, 30, 96, 64));
  auto expected = test::ffmpeg_cli_bgr_frames(path, 96, 64);
  ASSERT_EQ(expected.size(), 30u);
  auto store = FrameStore::open(path);
  ASSERT_TRUE(store.ok()) << store.error().message;
  ASSERT_EQ((*store)->count(), 30);
  EXPECT_FALSE((*store)->streaming());
  // 4:2:0 holds 1.5 bytes per pixel (plus the decoder's alignment), half of BGR's 3.
  EXPECT_LT((*store)->frame_bytes(), 96 * 64 * 3);
  cv::Mat bgr;
  for (int k = 0; k < 30; ++k) {
    auto f = (*store)->acquire(k, k);
    ASSERT_TRUE(f.ok()) << f.error().message;
    ASSERT_TRUE((*store)->to_bgr(*f, bgr).ok());
    EXPECT_TRUE(same(bgr, expected[k])) << "frame " << k;
  }
}

// Keyframes every 7 frames with B-frames, a cache of 16 frames, a walk of three ping-pong
// periods: every frame the walk asks for must be the right picture.
TEST(FrameStoreTest, StreamingPingPongMatchesFullDecode) {
  test::TempDir dir;
  const std::string path = dir.file("gop.mp4");
  const int n = 40;
  ASSERT_TRUE(test::make_test_video(path, n, 64, 48, "-g 7 -bf 2 -sc_threshold 0"));
  auto expected = test::ffmpeg_cli_bgr_frames(path, 64, 48);
  ASSERT_EQ(expected.size(), static_cast<size_t>(n));
  auto probe = FrameStore::open(path);
  ASSERT_TRUE(probe.ok());
  const int64_t frame_bytes = (*probe)->frame_bytes();

  FrameStoreOptions opts;
  opts.cache_bytes = 16 * frame_bytes + (64 << 10);  // 16 frames + the packets
  auto store = FrameStore::open(path, opts);
  ASSERT_TRUE(store.ok()) << store.error().message;
  ASSERT_TRUE((*store)->streaming());
  ASSERT_EQ((*store)->count(), n);
  const int64_t total = 3 * 2 * (n - 1) + 5;
  (*store)->set_order([n](int64_t i) { return pingpong(i, n); }, total);
  cv::Mat bgr;
  int wrong = 0;
  for (int64_t i = 0; i < total; ++i) {
    const int k = pingpong(i, n);
    auto f = (*store)->acquire(i, k);
    ASSERT_TRUE(f.ok()) << f.error().message;
    ASSERT_TRUE((*store)->to_bgr(*f, bgr).ok());
    if (!same(bgr, expected[k])) ++wrong;
    // The cache stays within its bound (frames the caller holds are not cached ones).
    EXPECT_LE((*store)->resident_bytes(), opts.cache_bytes);
  }
  EXPECT_EQ(wrong, 0);
  // Backward runs restart at keyframes, but not per frame: well under one GOP per frame.
  EXPECT_LT((*store)->frames_decoded(), 4 * total);
}

TEST(FrameStoreTest, CacheTooSmallIsABadInputNamingTheFile) {
  test::TempDir dir;
  const std::string path = dir.file("clip.mp4");
  ASSERT_TRUE(test::make_test_video(path, 10, 64, 48));
  FrameStoreOptions opts;
  opts.cache_bytes = 1024;
  auto store = FrameStore::open(path, opts);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.error().kind, ErrorKind::kBadInput);
  EXPECT_NE(store.error().message.find(path), std::string::npos) << store.error().message;
  EXPECT_NE(store.error().message.find("too small"), std::string::npos) << store.error().message;
}

TEST(FrameStoreTest, OutOfOrderRequestIsAnError) {
  test::TempDir dir;
  const std::string path = dir.file("clip.mp4");
  ASSERT_TRUE(test::make_test_video(path, 20, 64, 48));
  FrameStoreOptions opts;
  opts.cache_bytes = 64 << 20;
  auto store = FrameStore::open(path, opts);
  ASSERT_TRUE(store.ok()) << store.error().message;
  (*store)->set_order([](int64_t i) { return static_cast<int>(i % 20); }, 40);
  EXPECT_TRUE((*store)->acquire(0, 0).ok());
  auto bad = (*store)->acquire(1, 5);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("not in the order"), std::string::npos);
}

// Nice values of this process's threads, from /proc/self/task/*/stat (field 19).
std::vector<int> thread_nice_values() {
  std::vector<int> out;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream f(task.path() / "stat");
    std::string stat((std::istreambuf_iterator<char>(f)), {});
    const size_t paren = stat.rfind(')');
    if (paren == std::string::npos) continue;
    std::istringstream fields(stat.substr(paren + 2));  // from field 3 (state) on
    std::string field;
    for (int i = 3; i <= 19 && fields >> field; ++i) {
      if (i == 19) out.push_back(std::stoi(field));
    }
  }
  return out;
}

// Decoding ahead runs beside the render: the streaming cache's decoder thread and FFmpeg's
// frame threads (created when the decoder opens) run at the lowered priority, the caller's
// thread keeps its own.
TEST(FrameStoreTest, StreamingDecodesAtLowerPriority) {
  test::TempDir dir;
  const std::string path = dir.file("clip.mp4");
  ASSERT_TRUE(test::make_test_video(path, 20, 64, 48));
  const int base = ::getpriority(PRIO_PROCESS, 0);
  if (base > 16) GTEST_SKIP() << "this process already runs at nice " << base;
  const auto lowered = [&] {
    const std::vector<int> nice = thread_nice_values();
    return std::count(nice.begin(), nice.end(), base + 3);
  };
  const auto before = lowered();
  FrameStoreOptions opts;
  opts.threads = 2;
  opts.cache_bytes = 64 << 20;
  opts.stream_decode_nice = 3;
  auto store = FrameStore::open(path, opts);
  ASSERT_TRUE(store.ok()) << store.error().message;
  (*store)->set_order([](int64_t i) { return static_cast<int>(i % 20); }, 20);
  ASSERT_TRUE((*store)->acquire(0, 0).ok());
  // Our decoder thread and at least one of FFmpeg's two frame threads.
  EXPECT_GE(lowered() - before, 2);
  EXPECT_EQ(::getpriority(PRIO_PROCESS, 0), base) << "the caller's priority is unchanged";
}

TEST(FrameStoreTest, MissingFileNamesIt) {
  auto store = FrameStore::open("/nonexistent/x.mp4");
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.error().message.find("/nonexistent/x.mp4"), std::string::npos);
}

// The real package: a 256 MiB streaming cache over 523 720p frames (keyframes at 0, 251,
// 501) walked past both ping-pong turns equals the full cache frame for frame.
TEST(FrameStoreTest, SamplePackageStreamingEqualsFullCache) {
  const std::string data = test::shared_data_dir();
  if (data.empty()) GTEST_SKIP() << "shared sample data not found (set TALKRENDER_SHARED)";
  const std::string path = data + "/sanders/full_body_video.mp4";
  auto full = FrameStore::open(path);
  ASSERT_TRUE(full.ok()) << full.error().message;
  const int n = (*full)->count();
  ASSERT_EQ(n, 523);
  FrameStoreOptions opts;
  opts.cache_bytes = int64_t{256} << 20;
  auto streamed = FrameStore::open(path, opts);
  ASSERT_TRUE(streamed.ok()) << streamed.error().message;
  const int64_t total = 2 * 2 * (n - 1) + 10;
  (*streamed)->set_order([n](int64_t i) { return pingpong(i, n); }, total);
  cv::Mat a, b;
  int wrong = 0;
  for (int64_t i = 0; i < total; ++i) {
    const int k = pingpong(i, n);
    auto fs = (*streamed)->acquire(i, k);
    ASSERT_TRUE(fs.ok()) << fs.error().message;
    if (i % 7 != 0 && i != n - 1 && i != 2 * (n - 1)) continue;  // convert a sample + turns
    auto ff = (*full)->acquire(k, k);
    ASSERT_TRUE(ff.ok());
    ASSERT_TRUE((*streamed)->to_bgr(*fs, a).ok());
    ASSERT_TRUE((*full)->to_bgr(*ff, b).ok());
    if (!same(a, b)) ++wrong;
  }
  EXPECT_EQ(wrong, 0);
  std::printf("sample package: %lld frames decoded for %lld requests with a 256 MiB cache\n",
              static_cast<long long>((*streamed)->frames_decoded()), static_cast<long long>(total));
}

}  // namespace
}  // namespace tr::io
