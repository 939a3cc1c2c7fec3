// .lms parsing and the landmark rect rule (landmarks.h).
#include "io/landmarks.h"

#include <charconv>
#include <cmath>
#include <limits>

namespace tr::io {
namespace {

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

// One number that fills [b, e) exactly: "12", "-3.5", "1e2". Parsed to double and then
// rounded to float, as NumPy turns a string into np.float32 (through a Python float), so
// the values, and the integers truncated from them, are the reference's.
bool parse_float(const char* b, const char* e, float* out) {
  if (b == e) return false;
  if (*b == '+') ++b;  // Python's float() accepts a leading '+'; from_chars does not
  double d = 0;
  auto [ptr, ec] = std::from_chars(b, e, d);
  if (ec != std::errc() || ptr != e || !std::isfinite(d) || std::fabs(d) > 1e30) return false;
  *out = static_cast<float>(d);
  return true;
}

}  // namespace

Result<std::vector<LandmarkPoint>> parse_landmarks(std::string_view text,
                                                   const std::string& source_name) {
  std::vector<LandmarkPoint> pts;
  pts.reserve(kLandmarkPoints);
  size_t pos = 0;
  int line_no = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    const std::string where = source_name + ": line " + std::to_string(line_no);
    size_t a = 0;
    while (a < line.size() && is_blank(line[a])) ++a;
    size_t z = line.size();
    while (z > a && is_blank(line[z - 1])) --z;
    if (a == z) {
      // Only blanks after this line: a trailing empty line, as editors write.
      bool rest_blank = true;
      for (size_t i = pos; i < text.size() && rest_blank; ++i)
        rest_blank = is_blank(text[i]) || text[i] == '\n';
      if (rest_blank) break;
      return BadInput(where + ": empty line (expected \"x y\")");
    }
    // Two fields separated by blanks.
    size_t s = a;
    while (s < z && !is_blank(line[s])) ++s;
    size_t t = s;
    while (t < z && is_blank(line[t])) ++t;
    if (s == z) return BadInput(where + ": one value; expected \"x y\"");
    for (size_t i = t; i < z; ++i) {
      if (is_blank(line[i])) return BadInput(where + ": more than two values; expected \"x y\"");
    }
    LandmarkPoint p;
    if (!parse_float(line.data() + a, line.data() + s, &p.x) ||
        !parse_float(line.data() + t, line.data() + z, &p.y)) {
      const size_t shown = std::min<size_t>(z - a, 40);
      return BadInput(where + ": \"" + std::string(line.substr(a, shown)) +
                      "\" is not two finite numbers");
    }
    if (pts.size() >= static_cast<size_t>(kLandmarkPoints) * 4) {
      return BadInput(source_name + ": far more than " + std::to_string(kLandmarkPoints) +
                      " points (not a .lms file?)");
    }
    pts.push_back(p);
  }
  if (pts.size() != static_cast<size_t>(kLandmarkPoints)) {
    return BadInput(source_name + ": " + std::to_string(pts.size()) + " points; a .lms file has " +
                    std::to_string(kLandmarkPoints) + " (one \"x y\" per line)");
  }
  return pts;
}

Result<CropRect> rect_from_landmarks(const std::vector<LandmarkPoint>& lms,
                                     const std::string& source_name) {
  if (lms.size() < 53) return BadInput(source_name + ": too few points for the face rectangle");
  // float32 -> int32 truncates toward zero (the reference's NumPy cast); values outside
  // int range would be undefined behaviour in C++, so they are refused first.
  auto to_int = [](float v, int* out) {
    if (!(std::fabs(v) < 1e9f)) return false;
    *out = static_cast<int>(v);
    return true;
  };
  int x1 = 0, y1 = 0, x2 = 0;
  if (!to_int(lms[1].x, &x1) || !to_int(lms[52].y, &y1) || !to_int(lms[31].x, &x2))
    return BadInput(source_name + ": a landmark of the face rectangle is out of range");
  return CropRect{x1, y1, x2, y1 + (x2 - x1)};
}

}  // namespace tr::io
