// Internal to src/io: PNG files from 8-bit BGR frames through libpng.
#pragma once

#include <opencv2/core/mat.hpp>
#include <string>

#include "common/status.h"

namespace tr::io {

// Writes `bgr` (CV_8UC3) to `path` as an 8-bit RGB PNG at zlib level `compression` (0..9),
// with the choices cv::imwrite makes for IMWRITE_PNG_COMPRESSION (libpng's filter choice,
// zlib's default strategy): the same pixels. Errors (cannot open, write failure, a full disk) come
// back with the path; a failed file is removed.
Status write_png_bgr(const std::string& path, const cv::Mat& bgr, int compression);

}  // namespace tr::io
