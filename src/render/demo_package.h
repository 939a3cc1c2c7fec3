// A synthetic avatar package for `talkrender demo` and tests that need no real data:
// procedurally drawn 1280x720 frames of a cartoon head that sways gently, with known face
// rectangles, written in the package layout of model-contract.md section 1
// (full_body_video.mp4, cache/crop_rectangles.json, package_info.json).
#pragma once

#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "common/status.h"

namespace tr::render {

struct DemoPackageOptions {
  int frames = 150;  // 6 s at 25 fps
  int width = 1280, height = 720;
  int fps = 25;
  int crf = 16;
  unsigned seed = 1;
};

// Frame k of the synthetic avatar and its face rectangle (x2/y2 exclusive), as drawn.
cv::Mat draw_demo_frame(int k, const DemoPackageOptions& o, cv::Rect* face_rect);

// Writes the package into `dir` (created; must not exist or be empty). Files are written
// to temporary names and renamed into place.
Status write_demo_package(const std::string& dir, const DemoPackageOptions& o);

}  // namespace tr::render
