// Frame order, per-frame preparation and compositing: contract sections 3 and 5.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <opencv2/imgproc.hpp>

#include "render/render.h"

namespace tr::render {

Result<FrameOrder> parse_frame_order(const std::string& s) {
  if (s == "pingpong") return FrameOrder::kPingPong;
  if (s == "loop") return FrameOrder::kLoop;
  return BadInput(fmt::format("--order: unknown frame order '{}' (pingpong or loop)", s));
}

const char* frame_order_name(FrameOrder o) { return o == FrameOrder::kLoop ? "loop" : "pingpong"; }

int avatar_frame_for(int64_t output_index, int avatar_frames, FrameOrder order, int64_t start) {
  if (avatar_frames <= 1) return 0;
  int64_t pos = output_index + start;
  if (order == FrameOrder::kLoop) {
    int64_t m = pos % avatar_frames;
    return static_cast<int>(m < 0 ? m + avatar_frames : m);
  }
  // One ping-pong period visits 0..N-1 and back down to 1: 2 (N - 1) positions.
  const int64_t period = 2 * static_cast<int64_t>(avatar_frames - 1);
  int64_t m = pos % period;
  if (m < 0) m += period;
  return static_cast<int>(m < avatar_frames ? m : period - m);
}

Status check_rect(const cv::Rect& rect, const cv::Size& frame_size, int avatar_frame) {
  if (rect.width <= 0 || rect.height <= 0 || rect.x < 0 || rect.y < 0 ||
      rect.x + rect.width > frame_size.width || rect.y + rect.height > frame_size.height) {
    return BadInput(
        fmt::format("frame {}: crop rectangle [{}, {}, {}, {}] is empty or outside the {}x{} frame",
                    avatar_frame, rect.x, rect.y, rect.x + rect.width, rect.y + rect.height,
                    frame_size.width, frame_size.height));
  }
  return Status::Ok();
}

cv::Mat make_crop(const cv::Mat& full_bgr, const cv::Rect& rect, const PrepSettings& s) {
  cv::Mat crop;
  make_crop(full_bgr, rect, s, &crop);
  return crop;
}

void make_crop(const cv::Mat& full_bgr, const cv::Rect& rect, const PrepSettings& s,
               cv::Mat* crop) {
  const int c = s.crop_size();
  cv::resize(full_bgr(rect), *crop, cv::Size(c, c), 0, 0, s.crop_interpolation);
}

namespace {

// value / 255 computed in float32 exactly as numpy does (uint8 -> float32, then divide).
struct Div255Table {
  float v[256];
  Div255Table() {
    for (int i = 0; i < 256; ++i) v[i] = static_cast<float>(i) / 255.0f;
  }
};
const Div255Table kDiv255;

}  // namespace

void fill_generator_input(const cv::Mat& crop_bgr, const PrepSettings& s, float* dst) {
  const int S = s.size;
  const size_t plane = static_cast<size_t>(S) * S;
  // The mask is clipped to the ROI so that odd settings can never write out of bounds.
  const cv::Rect mask = s.mask & cv::Rect(0, 0, S, S);
  for (int y = 0; y < S; ++y) {
    const uint8_t* row = crop_bgr.ptr<uint8_t>(y + s.border) + 3 * s.border;
    const bool mask_row = y >= mask.y && y < mask.y + mask.height;
    for (int x = 0; x < S; ++x) {
      const size_t o = static_cast<size_t>(y) * S + x;
      const bool masked = mask_row && x >= mask.x && x < mask.x + mask.width;
      for (int c = 0; c < 3; ++c) {
        const float v = kDiv255.v[row[3 * x + c]];
        dst[c * plane + o] = v;
        dst[(3 + c) * plane + o] = masked ? 0.0f : v;
      }
    }
  }
}

void write_prediction(const float* pred, int size, cv::Mat dst) {
  const size_t plane = static_cast<size_t>(size) * size;
  for (int y = 0; y < size; ++y) {
    uint8_t* row = dst.ptr<uint8_t>(y);
    for (int x = 0; x < size; ++x) {
      const size_t o = static_cast<size_t>(y) * size + x;
      for (int c = 0; c < 3; ++c) {
        // float32 multiply then truncation toward zero, as numpy's astype(uint8) does for
        // values in range; NaN and out-of-range values are clamped instead of wrapping.
        const float v = pred[c * plane + o] * 255.0f;
        row[3 * x + c] = v >= 255.0f ? 255 : (v > 0.0f ? static_cast<uint8_t>(v) : 0);
      }
    }
  }
}

cv::Mat prediction_to_image(const float* pred, int size) {
  cv::Mat img(size, size, CV_8UC3);
  write_prediction(pred, size, img);
  return img;
}

void paste_prediction(const cv::Rect& rect, const cv::Mat& crop_bgr, const float* pred,
                      const PrepSettings& s, cv::Mat* canvas, cv::Mat* frame) {
  crop_bgr.copyTo(*canvas);
  write_prediction(pred, s.size, (*canvas)(cv::Rect(s.border, s.border, s.size, s.size)));
  // Resizing straight into the frame's ROI: cv::resize keeps a destination that already
  // has the right size and type, so this equals resize-then-copy without the copy.
  cv::Mat roi = (*frame)(rect);
  cv::resize(*canvas, roi, rect.size(), 0, 0, s.paste_interpolation);
}

void composite_frame(const cv::Mat& full_bgr, const cv::Rect& rect, const cv::Mat& crop_bgr,
                     const float* pred, const PrepSettings& s, cv::Mat* out) {
  full_bgr.copyTo(*out);
  cv::Mat canvas;
  paste_prediction(rect, crop_bgr, pred, s, &canvas, out);
}

Status validate_avatar(const AvatarFrames& a, const PrepSettings& s, const std::string& name) {
  const int n = a.count();
  if (n == 0) return BadInput(name + ": the avatar has no frames");
  if (a.rects.size() != static_cast<size_t>(n)) {
    return BadInput(fmt::format("{}: {} frames but {} crop rectangles", name, n, a.rects.size()));
  }
  if (!a.crops.empty() && a.crops.size() != static_cast<size_t>(n)) {
    return BadInput(fmt::format("{}: {} frames but {} face crops", name, n, a.crops.size()));
  }
  for (int k = 0; k < n; ++k) {
    cv::Size size;
    if (a.source) {
      size = a.source->size();
    } else {
      const cv::Mat& f = a.full[k];
      if (f.empty() || f.type() != CV_8UC3) {
        return BadInput(fmt::format("{}: frame {} is empty or not 8-bit BGR", name, k));
      }
      size = f.size();
    }
    Status st = check_rect(a.rects[k], size, k);
    if (!st.ok()) return st.with_context(name);
    if (!a.crops.empty()) {
      const cv::Mat& c = a.crops[k];
      if (c.type() != CV_8UC3 || c.rows != s.crop_size() || c.cols != s.crop_size()) {
        return BadInput(fmt::format("{}: face crop {} is {}x{}, the model needs {}x{}", name, k,
                                    c.cols, c.rows, s.crop_size(), s.crop_size()));
      }
    }
  }
  return Status::Ok();
}

}  // namespace tr::render
