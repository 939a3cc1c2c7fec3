// Internal to src/io: baseline JPEG files from 8-bit BGR frames through libjpeg-turbo.
#pragma once

#include <cstdint>
#include <opencv2/core/mat.hpp>
#include <string>
#include <vector>

#include "common/status.h"

namespace tr::io {

// Writes `bgr` (CV_8UC3) to `path` as a baseline JPEG at `quality` (1..100) with libjpeg's
// defaults otherwise (4:2:0, integer DCT, standard Huffman tables): byte for byte the file
// cv::imwrite writes with IMWRITE_JPEG_QUALITY. Errors (cannot open, write failure, a full
// disk) come back with the path; a failed file is removed.
Status write_jpeg_bgr(const std::string& path, const cv::Mat& bgr, int quality);

// A decoded JPEG kept compactly (jpeg_read.cc): for YCbCr 4:2:0 (what cv::imwrite writes)
// and 4:4:4 the component planes as libjpeg's IDCT produced them, before upsampling and
// colour conversion (4:2:0: 1.5 bytes per pixel, half of BGR); anything else (greyscale,
// 4:2:2, CMYK, tiny images) as BGR.
struct JpegFrame {
  enum class Kind { kYuv420, kYuv444, kBgr };
  Kind kind = Kind::kBgr;
  int width = 0, height = 0;
  int chroma_width = 0, chroma_height = 0;  // Cb/Cr plane size (4:2:0: half, rounded up)
  std::vector<uint8_t> data;                // Y, Cb, Cr planes (tightly packed) or BGR rows
};

// Decodes `bytes` (a JPEG file's contents); errors are kBadInput naming `source_name`.
Result<JpegFrame> decode_jpeg_compact(const std::string& bytes, const std::string& source_name);

// The frame as BGR, byte for byte what libjpeg-turbo's own decode to BGR gives (integer
// ISLOW IDCT, "fancy" triangle upsampling, its fixed-point YCbCr -> RGB tables), which is
// what cv::imread returns. `out` is reused when it has the size and spare rows already
// (allocate_bgr_frame). Thread-safe.
void jpeg_frame_to_bgr(const JpegFrame& f, cv::Mat& out);

// The frame size from the JPEG header (no decode); errors name `source_name`.
Result<cv::Size> probe_jpeg_size(const std::string& bytes, const std::string& source_name);

// libjpeg-turbo's own decode to BGR (JCS_EXT_BGR, defaults otherwise): the reference the
// compact path must equal, and the path for `package`'s one-off reads.
Result<cv::Mat> decode_jpeg_bgr(const std::string& bytes, const std::string& source_name);

}  // namespace tr::io
