// Avatar package loading and validation (model-contract.md section 1).
#include "io/package.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "common/files.h"

namespace tr::io {
namespace {

using nlohmann::json;

constexpr const char* kFullVideo = "full_body_video.mp4";
constexpr const char* kRectsFile = "cache/crop_rectangles.json";
constexpr const char* kCropsVideo = "crops_328_video.mp4";
// Redundant videos: only their frame counts are checked.
constexpr const char* kRedundantVideos[] = {"rois_320_video.mp4", "model_inputs_video.mp4"};
constexpr int kAudAveWidth = 512;

std::string join(const std::string& dir, const std::string& name) {
  if (dir.empty() || dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

// Parses JSON text without letting an exception escape; the error names the file and the
// byte offset nlohmann reports.
Result<json> parse_json(std::string_view text, const std::string& source_name) {
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    std::string what = e.what();
    // "[json.exception.parse_error.101] parse error at line 1, column 5: ..." -> after "] ".
    auto pos = what.find("] ");
    if (pos != std::string::npos) what = what.substr(pos + 2);
    return BadInput(source_name + ": invalid JSON: " + what);
  }
}

// A JSON number that is an integer within int range (2.0 is accepted, 2.5 is not).
bool json_to_int(const json& v, int* out) {
  if (v.is_number_integer()) {
    auto i = v.get<int64_t>();
    if (i < std::numeric_limits<int>::min() || i > std::numeric_limits<int>::max()) return false;
    *out = static_cast<int>(i);
    return true;
  }
  if (v.is_number_unsigned()) {
    auto u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int>::max())) return false;
    *out = static_cast<int>(u);
    return true;
  }
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (!std::isfinite(d) || d != std::floor(d) || std::fabs(d) > 2e9) return false;
    *out = static_cast<int>(d);
    return true;
  }
  return false;
}

// "17" -> 17; anything else (sign, spaces, leading zeros of a non-zero, junk) -> -1.
int64_t parse_frame_key(const std::string& key) {
  if (key.empty() || key.size() > 9 || (key.size() > 1 && key[0] == '0')) return -1;
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(key.data(), key.data() + key.size(), v);
  if (ec != std::errc() || ptr != key.data() + key.size()) return -1;
  return v;
}

Status check_video_count(const std::string& path, const std::string& name, int64_t expected,
                         const VideoInfo& info) {
  if (info.frame_count > 0 && info.frame_count != expected)
    return BadInput(path + ": has " + std::to_string(info.frame_count) + " frames but " +
                    kFullVideo + " has " + std::to_string(expected) +
                    " (all videos of a package must have the same frame count)");
  return Status::Ok();
}

// Counts the video packets of a file whose container does not state nb_frames.
Result<int64_t> count_frames_by_decoding(const std::string& path) {
  TR_ASSIGN_OR_RETURN(auto reader, VideoReader::open(path));
  cv::Mat frame;
  for (;;) {
    TR_ASSIGN_OR_RETURN(bool got, reader->next_frame(frame));
    if (!got) break;
  }
  return reader->frames_read();
}

Status check_package_info(const std::string& path, int64_t frame_count) {
  TR_ASSIGN_OR_RETURN(std::string text, read_file(path));
  TR_ASSIGN_OR_RETURN(json info, parse_json(text, path));
  if (!info.is_object()) return BadInput(path + ": expected a JSON object");
  // Frame counts it declares must agree with the videos.
  auto videos = info.find("videos");
  if (videos == info.end() || !videos->is_object()) return Status::Ok();
  for (const auto& [name, v] : videos->items()) {
    if (!v.is_object()) continue;
    auto fc = v.find("frame_count");
    int declared = 0;
    if (fc == v.end()) continue;
    if (!json_to_int(*fc, &declared))
      return BadInput(path + ": videos." + name + ".frame_count is not an integer");
    if (declared != frame_count)
      return BadInput(path + ": videos." + name + ".frame_count is " + std::to_string(declared) +
                      " but " + kFullVideo + " has " + std::to_string(frame_count) + " frames");
  }
  return Status::Ok();
}

Result<int> check_aud_ave(const std::string& bin_path, const std::string& json_path) {
  TR_ASSIGN_OR_RETURN(std::string bytes, read_file(bin_path));
  const size_t row_bytes = kAudAveWidth * sizeof(float);
  if (bytes.empty() || bytes.size() % row_bytes != 0)
    return BadInput(bin_path + ": size " + std::to_string(bytes.size()) +
                    " bytes is not a whole number of [512] float32 rows");
  // Rows are counted in int downstream: a larger count must be an error, not a wrapped int.
  if (bytes.size() / row_bytes > static_cast<size_t>(std::numeric_limits<int>::max()))
    return BadInput(bin_path + ": " + std::to_string(bytes.size()) + " bytes is too many rows");
  int rows = static_cast<int>(bytes.size() / row_bytes);
  if (json_path.empty()) return rows;
  TR_ASSIGN_OR_RETURN(std::string text, read_file(json_path));
  TR_ASSIGN_OR_RETURN(json meta, parse_json(text, json_path));
  auto shape = meta.is_object() ? meta.find("shape") : meta.end();
  if (shape == meta.end()) return rows;
  int r = 0, c = 0;
  if (!shape->is_array() || shape->size() != 2 || !json_to_int((*shape)[0], &r) ||
      !json_to_int((*shape)[1], &c))
    return BadInput(json_path + ": \"shape\" must be [rows, 512]");
  if (r != rows || c != kAudAveWidth)
    return BadInput(json_path + ": shape [" + std::to_string(r) + ", " + std::to_string(c) +
                    "] does not match " + bin_path + " (" + std::to_string(rows) +
                    " rows of 512 float32)");
  return rows;
}

}  // namespace

Result<std::vector<CropRect>> parse_crop_rects(std::string_view json_text,
                                               const std::string& source_name) {
  TR_ASSIGN_OR_RETURN(json doc, parse_json(json_text, source_name));
  if (!doc.is_object())
    return BadInput(source_name + ": expected a JSON object {\"0\": {\"rect\": [...]}, ...}");
  const size_t n = doc.size();
  if (n == 0) return BadInput(source_name + ": no rectangles");
  std::vector<CropRect> rects(n);
  std::vector<bool> seen(n, false);
  for (const auto& [key, entry] : doc.items()) {
    int64_t k = parse_frame_key(key);
    if (k < 0) return BadInput(source_name + ": key \"" + key + "\" is not a frame index");
    if (static_cast<size_t>(k) >= n) {
      // n keys but one is >= n: some index below n is missing.
      continue;
    }
    const std::string where = source_name + ": frame " + key;
    if (!entry.is_object()) return BadInput(where + ": expected an object with \"rect\"");
    auto rect = entry.find("rect");
    if (rect == entry.end()) return BadInput(where + ": no \"rect\" field");
    if (!rect->is_array() || rect->size() != 4)
      return BadInput(where + ": \"rect\" must be [x1, y1, x2, y2]");
    int v[4];
    for (int i = 0; i < 4; ++i) {
      if (!json_to_int((*rect)[i], &v[i]))
        return BadInput(where + ": rect value " + std::to_string(i) + " is not an integer");
    }
    CropRect r{v[0], v[1], v[2], v[3]};
    if (r.x1 < 0 || r.y1 < 0)
      return BadInput(where + ": rect [" + std::to_string(r.x1) + ", " + std::to_string(r.y1) +
                      ", " + std::to_string(r.x2) + ", " + std::to_string(r.y2) +
                      "] has a negative coordinate");
    if (r.x2 <= r.x1 || r.y2 <= r.y1)
      return BadInput(where + ": rect [" + std::to_string(r.x1) + ", " + std::to_string(r.y1) +
                      ", " + std::to_string(r.x2) + ", " + std::to_string(r.y2) +
                      "] is empty (needs x2 > x1 and y2 > y1)");
    rects[k] = r;
    seen[k] = true;
  }
  for (size_t k = 0; k < n; ++k) {
    if (!seen[k])
      return BadInput(source_name + ": frame " + std::to_string(k) +
                      " is missing (keys must be 0.." + std::to_string(n - 1) + ")");
  }
  return rects;
}

Status validate_crop_rects(const std::vector<CropRect>& rects, int frame_count, int width,
                           int height, const std::string& source_name) {
  if (static_cast<int64_t>(rects.size()) != frame_count)
    return BadInput(source_name + ": has " + std::to_string(rects.size()) +
                    " rectangles but the video has " + std::to_string(frame_count) + " frames");
  for (size_t k = 0; k < rects.size(); ++k) {
    const CropRect& r = rects[k];
    if (r.x1 < 0 || r.y1 < 0 || r.x2 > width || r.y2 > height || r.x2 <= r.x1 || r.y2 <= r.y1)
      return BadInput(source_name + ": frame " + std::to_string(k) + ": rect [" +
                      std::to_string(r.x1) + ", " + std::to_string(r.y1) + ", " +
                      std::to_string(r.x2) + ", " + std::to_string(r.y2) +
                      "] is not a non-empty rectangle inside the " + std::to_string(width) + "x" +
                      std::to_string(height) + " frame");
  }
  return Status::Ok();
}

std::string package_model_path(const std::string& dir, const std::string& stem) {
  const std::string onnx = join(dir, "models/" + stem + ".onnx");
  const std::string pth = join(dir, "models/" + stem + ".pth");
  return !path_exists(onnx) && path_exists(pth) ? pth : onnx;
}

Result<AvatarPackage> open_package(const std::string& dir, const PackageOptions& opts) {
  if (!is_directory(dir)) return BadInput(dir + ": package directory not found");
  AvatarPackage pkg;
  pkg.dir = dir;
  pkg.full_video_path = join(dir, kFullVideo);
  pkg.rects_path = join(dir, kRectsFile);
  if (!path_exists(pkg.full_video_path))
    return BadInput(pkg.full_video_path + ": missing (every package needs it)");
  if (!path_exists(pkg.rects_path))
    return BadInput(pkg.rects_path + ": missing (every package needs it)");

  // Cheap checks first so that a broken package fails before a long decode.
  TR_ASSIGN_OR_RETURN(std::string rect_text, read_file(pkg.rects_path));
  TR_ASSIGN_OR_RETURN(pkg.rects, parse_crop_rects(rect_text, pkg.rects_path));
  TR_ASSIGN_OR_RETURN(VideoInfo info, probe_video(pkg.full_video_path));
  pkg.width = info.width;
  pkg.height = info.height;
  pkg.fps = info.fps;
  pkg.fps_num = info.fps_num;
  pkg.fps_den = info.fps_den;
  int64_t frame_count = info.frame_count;
  // The container's nb_frames claim; the package counts frames in int, so a larger claim is
  // an error here rather than a truncated count that passes the checks below.
  if (frame_count > std::numeric_limits<int>::max())
    return BadInput(pkg.full_video_path + ": the container claims " + std::to_string(frame_count) +
                    " frames, more than the 2147483647 supported");
  if (frame_count > 0) {
    TR_RETURN_IF_ERROR(validate_crop_rects(pkg.rects, static_cast<int>(frame_count), pkg.width,
                                           pkg.height, pkg.rects_path));
  }

  auto optional_path = [&](const char* name) {
    std::string p = join(dir, name);
    return path_exists(p) ? p : std::string();
  };
  pkg.crops_video_path = optional_path(kCropsVideo);
  pkg.package_info_path = optional_path("package_info.json");
  pkg.aud_ave_path = optional_path("aud_ave.bin");
  pkg.aud_ave_json_path = optional_path("aud_ave.json");
  for (auto [stem, path] : {std::pair{"generator", &pkg.generator_path},
                            std::pair{"audio_encoder", &pkg.audio_encoder_path}}) {
    const std::string p = package_model_path(dir, stem);
    *path = path_exists(p) ? p : std::string();
  }

  if (opts.decode_frames && opts.frame_store) {
    FrameStoreOptions so;
    so.threads = opts.decode.threads;
    so.cache_bytes = opts.frame_cache_bytes;
    so.stream_decode_nice = opts.stream_decode_nice;
    TR_ASSIGN_OR_RETURN(std::unique_ptr<FrameStore> store,
                        FrameStore::open(pkg.full_video_path, so));
    pkg.store = std::move(store);
    frame_count = pkg.store->count();
  } else if (opts.decode_frames) {
    TR_ASSIGN_OR_RETURN(pkg.frames, decode_all_frames(pkg.full_video_path, opts.decode));
    frame_count = static_cast<int64_t>(pkg.frames.size());
  } else if (frame_count <= 0) {
    TR_ASSIGN_OR_RETURN(frame_count, count_frames_by_decoding(pkg.full_video_path));
  }
  pkg.frame_count = static_cast<int>(frame_count);
  TR_RETURN_IF_ERROR(
      validate_crop_rects(pkg.rects, pkg.frame_count, pkg.width, pkg.height, pkg.rects_path));

  // Every other video of the package must have the same frame count.
  if (!pkg.crops_video_path.empty()) {
    TR_ASSIGN_OR_RETURN(VideoInfo ci, probe_video(pkg.crops_video_path));
    TR_RETURN_IF_ERROR(check_video_count(pkg.crops_video_path, kCropsVideo, frame_count, ci));
  }
  for (const char* name : kRedundantVideos) {
    std::string p = optional_path(name);
    if (p.empty()) continue;
    TR_ASSIGN_OR_RETURN(VideoInfo ri, probe_video(p));
    TR_RETURN_IF_ERROR(check_video_count(p, name, frame_count, ri));
  }
  if (opts.crops_from == CropsFrom::kVideo) {
    if (pkg.crops_video_path.empty())
      return BadInput(join(dir, kCropsVideo) +
                      ": missing (needed because the crops are to come from the video)");
    TR_ASSIGN_OR_RETURN(pkg.crop_frames, decode_all_frames(pkg.crops_video_path, opts.decode));
    if (static_cast<int64_t>(pkg.crop_frames.size()) != frame_count)
      return BadInput(pkg.crops_video_path + ": has " + std::to_string(pkg.crop_frames.size()) +
                      " frames but " + kFullVideo + " has " + std::to_string(frame_count));
  }

  if (!pkg.package_info_path.empty())
    TR_RETURN_IF_ERROR(check_package_info(pkg.package_info_path, frame_count));
  if (!pkg.aud_ave_path.empty()) {
    TR_ASSIGN_OR_RETURN(pkg.aud_ave_rows, check_aud_ave(pkg.aud_ave_path, pkg.aud_ave_json_path));
  }

  set_rect_size_range(pkg);
  return pkg;
}

void set_rect_size_range(AvatarPackage& pkg) {
  pkg.min_rect_w = pkg.min_rect_h = std::numeric_limits<int>::max();
  for (const CropRect& r : pkg.rects) {
    pkg.min_rect_w = std::min(pkg.min_rect_w, r.width());
    pkg.max_rect_w = std::max(pkg.max_rect_w, r.width());
    pkg.min_rect_h = std::min(pkg.min_rect_h, r.height());
    pkg.max_rect_h = std::max(pkg.max_rect_h, r.height());
  }
}

}  // namespace tr::io
