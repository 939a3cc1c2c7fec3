// SyncTalk_2D / Ultralight landmark files (`landmarks/{i}.lms`) and the face rectangle the
// reference derives from them (model-contract.md section 1, "Rect from landmarks").
//
// A .lms file holds 110 points, one "x y" per line; coordinates are written as integers or
// as floats. Parsing never throws or crashes on any input (fuzz/fuzz_lms.cc).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "io/package.h"

namespace tr::io {

inline constexpr int kLandmarkPoints = 110;

struct LandmarkPoint {
  float x = 0, y = 0;
};

// Parses .lms text. Lines are "x y" (one or more spaces or tabs between; leading and
// trailing blanks and a CR before the newline are tolerated); an empty last line is fine,
// an empty line in between is not. Each value must parse completely as a finite number
// (float32, as the reference's np.float32 does). Exactly kLandmarkPoints points.
// Errors are kBadInput naming `source_name` and the line.
Result<std::vector<LandmarkPoint>> parse_landmarks(std::string_view text,
                                                   const std::string& source_name);

// The contract's rule: x1 = lms[1].x, y1 = lms[52].y, x2 = lms[31].x, y2 = y1 + (x2 - x1).
// Coordinates become integers as the reference's `np.array(lms, dtype=np.int32)` makes them
// from float32 values: truncated toward zero (SyncTalk_2D inference_328.py and Ultralight
// inference.py both parse each line to np.float32 and then cast the array to int32).
// Not checked against any frame here; see validate_crop_rects. Values beyond int range are
// an error naming `source_name`.
Result<CropRect> rect_from_landmarks(const std::vector<LandmarkPoint>& lms,
                                     const std::string& source_name);

}  // namespace tr::io
