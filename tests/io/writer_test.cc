// MP4 and image-sequence writers: round trips checked with ffprobe/ffmpeg and OpenCV, and
// the temporary-output rules (nothing left behind on abort).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "io/frame_writer.h"
#include "io/jpeg_file.h"
#include "io/video_reader.h"
#include "io_test_util.h"

namespace tr::io {
namespace {

using test::TempDir;
namespace fs = std::filesystem;

constexpr int kW = 160, kH = 120;

// A moving gradient with a moving box: compressible but not trivial.
cv::Mat synthetic_frame(int i, int w = kW, int h = kH) {
  cv::Mat m(h, w, CV_8UC3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      m.at<cv::Vec3b>(y, x) = cv::Vec3b((x + 2 * i) & 255, (y * 2) & 255, (x + y + i) & 255);
  cv::rectangle(m, cv::Rect((i * 3) % (w - 20), 30, 20, 20), cv::Scalar(20, 200, 240), cv::FILLED);
  return m;
}

Mp4Options mp4_options(int w, int h) {
  Mp4Options o;
  o.width = w;
  o.height = h;
  return o;
}

size_t count_entries(const std::string& dir) {
  size_t n = 0;
  for (auto& e : fs::directory_iterator(dir)) {
    (void)e;
    ++n;
  }
  return n;
}

std::string probe(const std::string& args, const std::string& file) {
  std::string out;
  test::run_command("ffprobe -v error " + args + " -of csv=p=0 '" + file + "'", &out);
  while (!out.empty() && (out.back() == '\n' || out.back() == ',')) out.pop_back();
  return out;
}

void make_sine(const std::string& path, double seconds, int rate, int channels) {
  std::string cmd = "ffmpeg -nostdin -v error -y -f lavfi -i sine=frequency=440:sample_rate=" +
                    std::to_string(rate) + ":duration=" + std::to_string(seconds) + " -ac " +
                    std::to_string(channels) + " '" + path + "'";
  ASSERT_EQ(test::run_command(cmd), 0);
}

struct AudioCase {
  const char* name;
  double audio_seconds;  // vs 50 frames = 2.0 s of video
  int rate, channels;
  const char* ext;
  bool cut = false;  // Mp4Options::cut_audio_at_video_end
};

class Mp4RoundTrip : public ::testing::TestWithParam<AudioCase> {};

TEST_P(Mp4RoundTrip, FramesCodecsAndAudioLength) {
  const AudioCase& c = GetParam();
  TempDir tmp;
  std::string audio = tmp.file(std::string("tone.") + c.ext);
  make_sine(audio, c.audio_seconds, c.rate, c.channels);
  std::string out = tmp.file("out.mp4");
  Mp4Options o;
  o.width = kW;
  o.height = kH;
  o.audio_path = audio;
  o.cut_audio_at_video_end = c.cut;
  auto w = create_mp4_writer(out, o);
  ASSERT_TRUE(w.ok()) << w.error().message;
  const int n = 50;
  std::vector<cv::Mat> written;
  for (int i = 0; i < n; ++i) {
    written.push_back(synthetic_frame(i));
    ASSERT_TRUE((*w)->write_frame(written.back()).ok());
    EXPECT_FALSE(fs::exists(out)) << "the final name must appear only at finish()";
  }
  Status s = (*w)->finish();
  ASSERT_TRUE(s.ok()) << s.message();
  ASSERT_TRUE(fs::exists(out));
  EXPECT_EQ(count_entries(tmp.path()), 2u) << "only the audio input and out.mp4";

  EXPECT_EQ(probe("-select_streams v:0 -count_frames -show_entries stream=codec_name,"
                  "pix_fmt,nb_read_frames",
                  out),
            "h264,yuv420p," + std::to_string(n));
  EXPECT_EQ(probe("-select_streams a:0 -show_entries stream=codec_name", out), "aac");
  double vdur = std::stod(probe("-select_streams v:0 -show_entries stream=duration", out));
  double adur = std::stod(probe("-select_streams a:0 -show_entries stream=duration", out));
  EXPECT_NEAR(vdur, n / 25.0, 1e-6);
  // The whole input (never padded with silence), or up to the video's end when cutting;
  // within one AAC frame.
  const double want_audio = c.cut ? std::min(c.audio_seconds, vdur) : c.audio_seconds;
  EXPECT_NEAR(adur, want_audio, 1024.0 / c.rate) << "audio " << adur << " s vs video " << vdur;
  std::string errors;
  EXPECT_EQ(test::run_command("ffmpeg -nostdin -v error -i '" + out + "' -f null - 2>&1", &errors),
            0);
  EXPECT_EQ(errors, "");

  // Pixels survive the BGR -> YUV -> H.264 -> BGR trip closely (crf 20).
  auto decoded = decode_all_frames(out);
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  ASSERT_EQ(decoded->size(), size_t(n));
  for (int i : {0, n / 2, n - 1}) {
    double psnr = cv::PSNR((*decoded)[i], written[i]);
    EXPECT_GT(psnr, 30.0) << "frame " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Audio, Mp4RoundTrip,
                         ::testing::Values(AudioCase{"longer_wav_cut", 3.0, 16000, 1, "wav", true},
                                           AudioCase{"shorter_kept", 1.3, 44100, 2, "wav"},
                                           AudioCase{"odd_rate_mp3", 2.06, 22050, 2, "mp3"}),
                         [](const auto& info) { return std::string(info.param.name); });

// Audio that outlasts the video by more than kMaxAudioOverhangFrames means the render
// made too few frames: finish() fails (kRuntime, naming the file) instead of cutting the
// speech, and leaves nothing. Before issue 20 the writer cut the audio silently.
TEST(Mp4Writer, RefusesToCutTheSpeech) {
  TempDir tmp;
  const std::string audio = tmp.file("speech.wav");
  make_sine(audio, 3.0, 16000, 1);
  const std::string out = tmp.file("short.mp4");
  Mp4Options o = mp4_options(kW, kH);
  o.audio_path = audio;
  auto w = create_mp4_writer(out, o);
  ASSERT_TRUE(w.ok()) << w.error().message;
  for (int i = 0; i < 50; ++i) ASSERT_TRUE((*w)->write_frame(synthetic_frame(i)).ok());
  Status s = (*w)->finish();
  ASSERT_FALSE(s.ok()) << "3 s of audio muxed under 2 s of video";
  EXPECT_EQ(s.error().kind, ErrorKind::kRuntime);
  EXPECT_NE(s.message().find("short.mp4"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("outlasts"), std::string::npos) << s.message();
  EXPECT_EQ(count_entries(tmp.path()), 1u) << "only the audio input";

  // Within the allowance (the contract's n + 2 frames end before the speech): accepted,
  // and the audio is all there.
  const std::string near = tmp.file("near.mp4");
  make_sine(audio, 2.0 + 1.5 / 25.0, 16000, 1);
  auto w2 = create_mp4_writer(near, o);
  ASSERT_TRUE(w2.ok()) << w2.error().message;
  for (int i = 0; i < 50; ++i) ASSERT_TRUE((*w2)->write_frame(synthetic_frame(i)).ok());
  s = (*w2)->finish();
  ASSERT_TRUE(s.ok()) << s.message();
  const double adur = std::stod(probe("-select_streams a:0 -show_entries stream=duration", near));
  EXPECT_NEAR(adur, 2.0 + 1.5 / 25.0, 1024.0 / 16000);
}

// H.264 4:2:0 needs even sizes: an odd frame is padded by one column / row that repeats its
// edge, and nothing of the frame is lost.
TEST(Mp4Writer, OddSizeIsPaddedWithTheEdgePixels) {
  TempDir tmp;
  const std::string out = tmp.file("odd.mp4");
  const int w = 161, h = 121;
  EXPECT_EQ(mp4_encoded_size(w, h), cv::Size(162, 122));
  EXPECT_EQ(mp4_encoded_size(160, 120), cv::Size(160, 120));
  auto writer = create_mp4_writer(out, mp4_options(w, h));
  ASSERT_TRUE(writer.ok()) << writer.error().message;
  std::vector<cv::Mat> written;
  for (int i = 0; i < 5; ++i) {
    // A frame whose last column and row differ strongly from their neighbours' far side,
    // held as a view into a larger black buffer (as decoded frames are): the padding must
    // repeat the frame's edge, not show the buffer beyond it.
    cv::Mat buffer(h + 8, w + 8, CV_8UC3, cv::Scalar::all(0));
    cv::Mat f = buffer(cv::Rect(0, 0, w, h));
    synthetic_frame(i, w, h).copyTo(f);
    f.col(w - 1).setTo(cv::Scalar(250, 20, 20));
    f.row(h - 1).setTo(cv::Scalar(20, 250, 20));
    written.push_back(f.clone());
    ASSERT_TRUE((*writer)->write_frame(f).ok());
  }
  // A frame of the padded size is not what was promised.
  EXPECT_FALSE((*writer)->write_frame(synthetic_frame(0, 162, 122)).ok());
  ASSERT_TRUE((*writer)->finish().ok());
  EXPECT_EQ(probe("-select_streams v:0 -show_entries stream=width,height", out), "162,122");
  auto decoded = decode_all_frames(out);
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  ASSERT_EQ(decoded->size(), written.size());
  for (size_t i = 0; i < written.size(); ++i) {
    const cv::Mat& d = (*decoded)[i];
    EXPECT_GT(cv::PSNR(d(cv::Rect(0, 0, w, h)), written[i]), 30.0) << "frame " << i;
    // The extra column repeats the last one, the extra row the last row.
    EXPECT_LT(cv::norm(d.col(w), d.col(w - 1), cv::NORM_L1) / (h * 3.0), 6.0) << "frame " << i;
    const double row_diff =
        cv::norm(d.row(h).colRange(0, w), d.row(h - 1).colRange(0, w), cv::NORM_L1);
    EXPECT_LT(row_diff / (w * 3.0), 6.0) << "frame " << i;
  }
}

TEST(Mp4Writer, NoAudioAndNonIntegerFps) {
  TempDir tmp;
  std::string out = tmp.file("video only.mp4");
  Mp4Options o = mp4_options(64, 48);
  o.fps_num = 30000;
  o.fps_den = 1001;
  auto w = create_mp4_writer(out, o);
  ASSERT_TRUE(w.ok()) << w.error().message;
  for (int i = 0; i < 10; ++i) ASSERT_TRUE((*w)->write_frame(synthetic_frame(i, 64, 48)).ok());
  ASSERT_TRUE((*w)->finish().ok());
  EXPECT_EQ(probe("-count_frames -show_entries stream=codec_type,nb_read_frames", out), "video,10");
  EXPECT_EQ(probe("-select_streams v:0 -show_entries stream=r_frame_rate", out), "30000/1001");
}

TEST(Mp4Writer, AbortAndDestructorLeaveNothing) {
  TempDir tmp;
  Mp4Options o = mp4_options(kW, kH);
  {
    auto w = create_mp4_writer(tmp.file("a.mp4"), o);
    ASSERT_TRUE(w.ok());
    for (int i = 0; i < 5; ++i) ASSERT_TRUE((*w)->write_frame(synthetic_frame(i)).ok());
    EXPECT_EQ(count_entries(tmp.path()), 1u) << "a temporary file while writing";
    (*w)->abort();
    EXPECT_EQ(count_entries(tmp.path()), 0u);
    EXPECT_FALSE((*w)->write_frame(synthetic_frame(0)).ok());
  }
  {
    auto w = create_mp4_writer(tmp.file("b.mp4"), o);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->write_frame(synthetic_frame(0)).ok());
  }  // destroyed unfinished
  EXPECT_EQ(count_entries(tmp.path()), 0u);
}

TEST(Mp4Writer, RejectsBadInput) {
  TempDir tmp;
  EXPECT_FALSE(create_mp4_writer(tmp.file("x.mp4"), mp4_options(0, 120)).ok());
  Mp4Options o = mp4_options(kW, kH);
  o.crf = 60;
  EXPECT_FALSE(create_mp4_writer(tmp.file("x.mp4"), o).ok());
  o = mp4_options(kW, kH);
  o.preset = "warp9";
  auto bad_preset = create_mp4_writer(tmp.file("x.mp4"), o);
  ASSERT_FALSE(bad_preset.ok());
  EXPECT_NE(bad_preset.error().message.find("warp9"), std::string::npos);
  o = mp4_options(kW, kH);
  o.audio_path = tmp.file("no.wav");
  auto no_audio = create_mp4_writer(tmp.file("x.mp4"), o);
  ASSERT_FALSE(no_audio.ok());
  EXPECT_EQ(no_audio.error().kind, ErrorKind::kBadInput);
  EXPECT_NE(no_audio.error().message.find("no.wav"), std::string::npos);
  EXPECT_EQ(count_entries(tmp.path()), 0u);

  auto w = create_mp4_writer(tmp.file("x.mp4"), mp4_options(kW, kH));
  ASSERT_TRUE(w.ok());
  Status s = (*w)->write_frame(synthetic_frame(0, 64, 48));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("64x48"), std::string::npos) << s.message();
}

TEST(ImageSequenceWriter, PngIsLosslessAndAppearsAtFinish) {
  TempDir tmp;
  std::string dir = tmp.file("frames");
  auto w = create_frame_writer(dir + "/", {}, "png");
  ASSERT_TRUE(w.ok()) << w.error().message;
  // More frames than the writer queues, from one caller buffer overwritten after each
  // write_frame: the writer's copies (recycled between frames) must keep every frame.
  constexpr int kFrames = 30;
  std::vector<cv::Mat> written;
  cv::Mat caller_buffer;
  for (int i = 0; i < kFrames; ++i) {
    written.push_back(synthetic_frame(i));
    written.back().copyTo(caller_buffer);
    ASSERT_TRUE((*w)->write_frame(caller_buffer).ok());
  }
  EXPECT_FALSE(fs::exists(dir));
  ASSERT_TRUE((*w)->finish().ok());
  ASSERT_TRUE(fs::is_directory(dir));
  EXPECT_EQ(count_entries(dir), static_cast<size_t>(kFrames));
  EXPECT_EQ(count_entries(tmp.path()), 1u) << "no temporary directory left";
  for (int i = 0; i < kFrames; ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "/frame_%06d.png", i);
    cv::Mat back = cv::imread(dir + name, cv::IMREAD_COLOR);
    ASSERT_FALSE(back.empty()) << name;
    EXPECT_EQ(cv::norm(back, written[i], cv::NORM_INF), 0.0) << name;
  }
}

TEST(ImageSequenceWriter, JpegAndAbort) {
  TempDir tmp;
  std::string dir = tmp.file("jpgs");
  {
    ImageSequenceOptions jpg;
    jpg.format = ImageFormat::kJpg;
    auto w = create_image_sequence_writer(dir, jpg);
    ASSERT_TRUE(w.ok()) << w.error().message;
    ASSERT_TRUE((*w)->write_frame(synthetic_frame(0)).ok());
    ASSERT_TRUE((*w)->finish().ok());
    cv::Mat back = cv::imread(dir + "/frame_000000.jpg");
    ASSERT_FALSE(back.empty());
    EXPECT_GT(cv::PSNR(back, synthetic_frame(0)), 30.0);
  }
  {
    auto again = create_image_sequence_writer(dir);
    ASSERT_FALSE(again.ok()) << "must not overwrite a non-empty directory";
    EXPECT_NE(again.error().message.find("not empty"), std::string::npos);
  }
  {
    auto w = create_image_sequence_writer(tmp.file("aborted"));
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->write_frame(synthetic_frame(0)).ok());
    (*w)->abort();
  }
  {
    auto w = create_image_sequence_writer(tmp.file("dropped"));
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->write_frame(synthetic_frame(0)).ok());
  }
  EXPECT_EQ(count_entries(tmp.path()), 1u) << "only the finished jpgs directory";
}

std::vector<unsigned char> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<unsigned char>(std::istreambuf_iterator<char>(f), {});
}

// The JPEG writer promises cv::imwrite's bytes (it only skips OpenCV's BGR -> RGB copy):
// sizes that are and are not multiples of the 16x16 MCU, at two qualities.
TEST(JpegFile, SameBytesAsOpenCv) {
  TempDir tmp;
  const cv::Size sizes[] = {{kW, kH}, {161, 121}, {1280, 720}};
  for (const cv::Size& size : sizes) {
    for (int quality : {95, 60}) {
      const cv::Mat frame = synthetic_frame(size.width % 7, size.width, size.height);
      const std::string path = tmp.file("f.jpg");
      ASSERT_TRUE(write_jpeg_bgr(path, frame, quality).ok());
      std::vector<unsigned char> expected;
      ASSERT_TRUE(cv::imencode(".jpg", frame, expected, {cv::IMWRITE_JPEG_QUALITY, quality}));
      EXPECT_EQ(read_bytes(path), expected) << size << " quality " << quality;
    }
  }
  // A view into a larger image (row stride > width * 3) encodes the view.
  const cv::Mat big = synthetic_frame(3, 200, 150);
  const cv::Mat view = big(cv::Rect(13, 7, 100, 80));
  ASSERT_TRUE(write_jpeg_bgr(tmp.file("view.jpg"), view, 90).ok());
  std::vector<unsigned char> expected;
  ASSERT_TRUE(cv::imencode(".jpg", view, expected, {cv::IMWRITE_JPEG_QUALITY, 90}));
  EXPECT_EQ(read_bytes(tmp.file("view.jpg")), expected);
}

TEST(JpegFile, ErrorsNameTheFileAndLeaveNothing) {
  TempDir tmp;
  const cv::Mat frame = synthetic_frame(0, 320, 240);
  const std::string missing_dir = tmp.file("no/such/dir/f.jpg");
  Status s = write_jpeg_bgr(missing_dir, frame, 95);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(missing_dir), std::string::npos) << s.message();

  s = write_jpeg_bgr(tmp.file("q.jpg"), frame, 0);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("quality"), std::string::npos) << s.message();
  s = write_jpeg_bgr(tmp.file("gray.jpg"), cv::Mat(8, 8, CV_8UC1, cv::Scalar(1)), 95);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("BGR"), std::string::npos) << s.message();
  EXPECT_EQ(count_entries(tmp.path()), 0u) << "no file is left by a failed write";

  // A device that is always full: libjpeg's write error comes back as a Status (its default
  // handler would exit the process), and the device is not removed.
  if (fs::exists("/dev/full")) {
    s = write_jpeg_bgr("/dev/full", frame, 95);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.message().find("/dev/full"), std::string::npos) << s.message();
    EXPECT_TRUE(fs::exists("/dev/full"));
  }
}

}  // namespace
}  // namespace tr::io
