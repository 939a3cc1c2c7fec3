// Fuzz target: the .lms landmark reader of dataset folders (io/landmarks.h) and the
// contract's rect rule on what it accepts.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "io/landmarks.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto points = tr::io::parse_landmarks(text, "fuzz/0.lms");
  if (points.ok()) {
    auto rect = tr::io::rect_from_landmarks(*points, "fuzz/0.lms");
    if (rect.ok()) {
      (void)tr::io::validate_crop_rects({*rect}, 1, 1280, 720, "fuzz/0.lms");
    }
  }
  return 0;
}
