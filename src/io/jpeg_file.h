// Internal to src/io: baseline JPEG files from 8-bit BGR frames through libjpeg-turbo.
#pragma once

#include <opencv2/core/mat.hpp>
#include <string>

#include "common/status.h"

namespace tr::io {

// Writes `bgr` (CV_8UC3) to `path` as a baseline JPEG at `quality` (1..100) with libjpeg's
// defaults otherwise (4:2:0, integer DCT, standard Huffman tables): byte for byte the file
// cv::imwrite writes with IMWRITE_JPEG_QUALITY. Errors (cannot open, write failure, a full
// disk) come back with the path; a failed file is removed.
Status write_jpeg_bgr(const std::string& path, const cv::Mat& bgr, int quality);

}  // namespace tr::io
