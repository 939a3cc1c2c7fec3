// Fuzz target: the crop-rectangle JSON reader (io/package.h) and its bounds validation.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "io/package.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto rects = tr::io::parse_crop_rects(text, "fuzz/crop_rectangles.json");
  if (rects.ok()) {
    // Validate against a frame size and count derived from the input, so both the
    // accepting and the rejecting paths are reached.
    const int frames = static_cast<int>(rects->size()) - (size % 2);
    (void)tr::io::validate_crop_rects(*rects, frames, 1280, 720, "fuzz/crop_rectangles.json");
  }
  return 0;
}
