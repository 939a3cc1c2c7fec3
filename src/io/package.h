// Avatar packages (model-contract.md section 1): open a package folder, validate it, and
// decode its full-body video into RAM.
//
// open_package() checks everything it can before returning, so later stages can index
// frames[k] and rects[k] without re-checking: rect count == frame count, keys 0..N-1 all
// present, every rect non-empty and inside the frame, all videos the same frame count.
// Errors are kBadInput and name the file plus the frame or field that is wrong.
#pragma once

#include <memory>
#include <opencv2/core.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "io/frame_store.h"
#include "io/video_reader.h"

namespace tr::io {

// A face rectangle in full-frame pixels; x2/y2 are exclusive.
struct CropRect {
  int x1 = 0, y1 = 0, x2 = 0, y2 = 0;
  int width() const { return x2 - x1; }
  int height() const { return y2 - y1; }
  cv::Rect to_cv() const { return cv::Rect(x1, y1, x2 - x1, y2 - y1); }
  bool operator==(const CropRect&) const = default;
};

// Parses crop_rectangles.json text: {"<i>": {"rect": [x1, y1, x2, y2], ...}, ...}.
// Keys must be exactly 0..N-1 (any order in the text); other fields are ignored.
// Checks syntax, key set, rect arity/integer type and x2 > x1, y2 > y1 (non-empty), but not
// bounds (see validate_crop_rects). `source_name` is used in error messages.
// Never throws or crashes on any input (fuzz target).
Result<std::vector<CropRect>> parse_crop_rects(std::string_view json_text,
                                               const std::string& source_name);

// Checks that every rect lies inside a width x height frame and the count equals
// frame_count. Messages name source_name and the frame index.
Status validate_crop_rects(const std::vector<CropRect>& rects, int frame_count, int width,
                           int height, const std::string& source_name);

// Where the 328x328 face crops come from (model-contract.md section 1: either is fine).
enum class CropsFrom {
  kFullFrame,  // derive from full frame + rect (default; no extra decode)
  kVideo,      // decode crops_328_video.mp4 into AvatarPackage::crop_frames
};

struct PackageOptions {
  bool decode_frames = true;  // false: probe + validate only (inspect), frames stays empty
  CropsFrom crops_from = CropsFrom::kFullFrame;
  DecodeOptions decode;  // threads etc.
  // Keep the full-body frames in a FrameStore (compact YUV, BGR on demand) instead of
  // AvatarPackage::frames; frame_cache_bytes > 0 makes it a bounded streaming cache.
  bool frame_store = false;
  int64_t frame_cache_bytes = 0;
  int stream_decode_nice = 0;  // FrameStoreOptions::stream_decode_nice
};

struct AvatarPackage {
  std::string dir;
  int frame_count = 0;
  int width = 0, height = 0;
  double fps = 25.0;  // from the full-body video's stream
  int fps_num = 25, fps_den = 1;

  std::vector<CropRect> rects;        // rects[k] belongs to frame k
  std::vector<cv::Mat> frames;        // CV_8UC3 BGR, frame_count of them (if decode_frames)
  std::shared_ptr<FrameStore> store;  // instead of `frames` with PackageOptions::frame_store
  std::vector<cv::Mat> crop_frames;   // CV_8UC3 BGR 328x328, only with CropsFrom::kVideo

  // Absolute-or-as-given paths; empty when the optional file is absent.
  std::string full_video_path;
  std::string rects_path;
  std::string crops_video_path;
  std::string package_info_path;
  std::string aud_ave_path;        // aud_ave.bin: float32 LE row-major [rows, 512]
  std::string aud_ave_json_path;   // its shape file, if present
  int aud_ave_rows = 0;            // rows of aud_ave.bin (checked against aud_ave.json)
  std::string generator_path;      // models/generator.onnx
  std::string audio_encoder_path;  // models/audio_encoder.onnx

  // Rect size range over all frames (for inspect and logging).
  int min_rect_w = 0, max_rect_w = 0, min_rect_h = 0, max_rect_h = 0;
};

// A package's model: DIR/models/STEM.onnx, else DIR/models/STEM.pth (what `package` writes
// for a checkpoint), else the .onnx path (for the "not found" message).
std::string package_model_path(const std::string& dir, const std::string& stem);

Result<AvatarPackage> open_package(const std::string& dir, const PackageOptions& opts = {});

// Sets min/max_rect_w/h from pkg.rects: the last step of both open_package and
// open_dataset (dataset.h), so the two avatar sources report the range alike.
void set_rect_size_range(AvatarPackage& pkg);

}  // namespace tr::io
