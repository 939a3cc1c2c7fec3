// The synthetic demo avatar: a drawn head that sways and blinks, and its package files.
#include "render/demo_package.h"

#include <fmt/format.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <opencv2/imgproc.hpp>
#include <vector>

#include "common/files.h"
#include "common/interrupt.h"
#include "io/frame_writer.h"

namespace tr::render {
namespace {

namespace fs = std::filesystem;
constexpr double kTwoPi = 6.283185307179586;

}  // namespace

cv::Mat draw_demo_frame(int k, const DemoPackageOptions& o, cv::Rect* face_rect) {
  const int W = o.width, H = o.height;
  const double sx = W / 1280.0, sy = H / 720.0;  // drawn for 1280x720, scaled to the size
  cv::Mat img(H, W, CV_8UC3);
  // Background: a vertical gradient with slowly drifting soft bands, so that the parts
  // outside the face change from frame to frame too.
  std::vector<double> band(W);  // depends on x only: one sine per column, not per pixel
  for (int x = 0; x < W; ++x) band[x] = 12 * std::sin(kTwoPi * (x / (300.0 * sx) + k / 200.0));
  for (int y = 0; y < H; ++y) {
    cv::Vec3b* row = img.ptr<cv::Vec3b>(y);
    const double t = static_cast<double>(y) / H;
    for (int x = 0; x < W; ++x) {
      row[x] = cv::Vec3b(cv::saturate_cast<uint8_t>(150 - 60 * t + band[x]),
                         cv::saturate_cast<uint8_t>(120 - 40 * t + band[x] / 2),
                         cv::saturate_cast<uint8_t>(90 - 30 * t));
    }
  }
  // The head sways sideways and nods a little: periods of 3 s and 2 s.
  const double cx = W / 2.0 + 30 * sx * std::sin(kTwoPi * k / 75.0);
  const double cy = 300 * sy + 12 * sy * std::sin(kTwoPi * k / 50.0);
  auto P = [&](double dx, double dy) {
    return cv::Point(static_cast<int>(std::lround(cx + dx * sx)),
                     static_cast<int>(std::lround(cy + dy * sy)));
  };
  auto S = [&](double a, double b) {
    return cv::Size(static_cast<int>(a * sx), static_cast<int>(b * sy));
  };
  const auto aa = cv::LINE_AA;
  // Shoulders and neck.
  cv::ellipse(img, P(0, 420), S(330, 170), 0, 180, 360, cv::Scalar(70, 50, 40), cv::FILLED, aa);
  cv::rectangle(img, P(-55, 120), P(55, 280), cv::Scalar(110, 150, 205), cv::FILLED, aa);
  // Face, ears, hair.
  cv::ellipse(img, P(-150, 10), S(25, 45), 0, 0, 360, cv::Scalar(105, 145, 200), cv::FILLED, aa);
  cv::ellipse(img, P(150, 10), S(25, 45), 0, 0, 360, cv::Scalar(105, 145, 200), cv::FILLED, aa);
  cv::ellipse(img, P(0, 0), S(150, 190), 0, 0, 360, cv::Scalar(120, 160, 220), cv::FILLED, aa);
  cv::ellipse(img, P(0, -110), S(155, 100), 0, 180, 360, cv::Scalar(40, 45, 60), cv::FILLED, aa);
  // Eyes, blinking for 3 frames every 3.2 s.
  const bool blink = k % 80 < 3;
  for (int side : {-1, 1}) {
    if (blink) {
      cv::line(img, P(side * 55 - 22, -30), P(side * 55 + 22, -30), cv::Scalar(40, 40, 60), 3, aa);
    } else {
      cv::ellipse(img, P(side * 55, -30), S(24, 14), 0, 0, 360, cv::Scalar(245, 245, 245),
                  cv::FILLED, aa);
      cv::circle(img, P(side * 55 + 3 * std::sin(k / 20.0), -30), static_cast<int>(8 * sx),
                 cv::Scalar(60, 40, 30), cv::FILLED, aa);
    }
    cv::line(img, P(side * 55 - 25, -58), P(side * 55 + 25, -62), cv::Scalar(40, 45, 60), 4, aa);
  }
  // Nose and a closed mouth (the model draws the mouth in the rendered video).
  cv::line(img, P(0, -15), P(-8, 35), cv::Scalar(90, 120, 180), 3, aa);
  cv::line(img, P(-8, 35), P(6, 38), cv::Scalar(90, 120, 180), 3, aa);
  cv::ellipse(img, P(0, 90), S(45, 10), 0, 0, 360, cv::Scalar(70, 70, 170), cv::FILLED, aa);

  // The face rectangle: a square over the lower face, following the head like a tracker.
  const int side = static_cast<int>(std::lround(210 * sx));
  cv::Rect r(static_cast<int>(std::lround(cx)) - side / 2,
             static_cast<int>(std::lround(cy - 60 * sy)), side, side);
  r &= cv::Rect(0, 0, W, H);
  if (face_rect) *face_rect = r;
  return img;
}

Status write_demo_package(const std::string& dir, const DemoPackageOptions& o) {
  if (o.frames < 2 || o.width < 64 || o.height < 64 || o.width % 2 || o.height % 2) {
    return BadInput(fmt::format("demo package: bad settings ({} frames of {}x{})", o.frames,
                                o.width, o.height));
  }
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_empty(dir, ec)) {
    return BadInput(dir + ": exists and is not empty");
  }
  fs::create_directories(fs::path(dir) / "cache", ec);
  if (ec) return RuntimeError(dir + ": cannot create the package folder: " + ec.message());

  io::Mp4Options mp4;
  mp4.width = o.width;
  mp4.height = o.height;
  mp4.fps_num = o.fps;
  mp4.crf = o.crf;
  const std::string video = (fs::path(dir) / "full_body_video.mp4").string();
  TR_ASSIGN_OR_RETURN(std::unique_ptr<io::FrameWriter> writer, io::create_mp4_writer(video, mp4));
  nlohmann::json rects = nlohmann::json::object();
  for (int k = 0; k < o.frames; ++k) {
    if (interrupted()) {
      writer->abort();
      return Interrupted();
    }
    cv::Rect r;
    cv::Mat frame = draw_demo_frame(k, o, &r);
    Status s = writer->write_frame(frame);
    if (!s.ok()) {
      writer->abort();
      return s;
    }
    rects[std::to_string(k)] = {{"rect", {r.x, r.y, r.x + r.width, r.y + r.height}}};
  }
  TR_RETURN_IF_ERROR(writer->finish());
  TR_RETURN_IF_ERROR(
      write_file_atomic((fs::path(dir) / "cache/crop_rectangles.json").string(), rects.dump(1)));
  nlohmann::json info = {
      {"package_type", "mp4_video_package"},
      {"package_version", "2.0"},
      {"dataset_name", "talkrender-demo"},
      {"note", "synthetic avatar drawn by talkrender demo"},
      {"videos",
       {{"full_body_img",
         {{"video_file", "full_body_video.mp4"}, {"frame_count", o.frames}, {"fps", o.fps}}}}}};
  return write_file_atomic((fs::path(dir) / "package_info.json").string(), info.dump(2));
}

}  // namespace tr::render
