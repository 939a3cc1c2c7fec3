// Dataset folders as avatars (dataset.h).
#include "io/dataset.h"

#include <charconv>
#include <filesystem>
#include <map>

#include "common/files.h"
#include "common/interrupt.h"
#include "io/jpeg_file.h"
#include "io/landmarks.h"

namespace tr::io {
namespace {

namespace fs = std::filesystem;

constexpr const char* kImageDir = "full_body_img";
constexpr const char* kLandmarkDir = "landmarks";
// Frame numbers above this are refused rather than sized into vectors (a stray
// "99999999.jpg" would otherwise ask for a gap report over a hundred million frames).
constexpr int64_t kMaxFrames = 10'000'000;

std::string join(const std::string& dir, const std::string& name) {
  if (dir.empty() || dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

// The numbered files "<i><ext>" of a folder, by number. Other names are ignored, except
// "<something><ext>" that is not a plain number ("007.jpg", "a.jpg"): the reference opens
// "{i}.jpg", so such a file is a mistake worth naming.
Result<std::map<int64_t, std::string>> numbered_files(const std::string& dir,
                                                      const std::string& ext) {
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) return BadInput(dir + ": cannot list the folder: " + ec.message());
  std::map<int64_t, std::string> files;
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) return BadInput(dir + ": cannot list the folder: " + ec.message());
    const std::string name = it->path().filename().string();
    if (name.size() <= ext.size() || name.compare(name.size() - ext.size(), ext.size(), ext) != 0)
      continue;
    const std::string stem = name.substr(0, name.size() - ext.size());
    int64_t k = -1;
    const bool plain = stem.size() <= 9 && (stem.size() == 1 || stem[0] != '0');
    auto [ptr, perr] = std::from_chars(stem.data(), stem.data() + stem.size(), k);
    if (!plain || perr != std::errc() || ptr != stem.data() + stem.size() || k < 0) {
      return BadInput(join(dir, name) + ": not a frame file (frames are named 0" + ext + ", 1" +
                      ext + ", ...)");
    }
    if (k >= kMaxFrames)
      return BadInput(join(dir, name) + ": frame number beyond " + std::to_string(kMaxFrames - 1));
    files.emplace(k, it->path().string());
  }
  return files;
}

std::string rect_str(const CropRect& r) {
  return "[" + std::to_string(r.x1) + ", " + std::to_string(r.y1) + ", " + std::to_string(r.x2) +
         ", " + std::to_string(r.y2) + "]";
}

}  // namespace

bool is_dataset_dir(const std::string& dir) { return is_directory(join(dir, kImageDir)); }

Result<AvatarPackage> open_dataset(const std::string& dir, const PackageOptions& opts) {
  if (!is_directory(dir)) return BadInput(dir + ": dataset folder not found");
  const std::string img_dir = join(dir, kImageDir);
  const std::string lms_dir = join(dir, kLandmarkDir);
  if (!is_directory(img_dir))
    return BadInput(img_dir + ": missing (a dataset folder holds full_body_img/{i}.jpg)");
  if (!is_directory(lms_dir))
    return BadInput(lms_dir + ": missing (a dataset folder holds landmarks/{i}.lms)");
  if (opts.crops_from == CropsFrom::kVideo)
    return BadInput(dir +
                    ": a dataset folder has no crops_328_video.mp4 (crops come from the "
                    "frames; leave out --crops-from video)");

  TR_ASSIGN_OR_RETURN(auto jpgs, numbered_files(img_dir, ".jpg"));
  TR_ASSIGN_OR_RETURN(auto lmss, numbered_files(lms_dir, ".lms"));
  if (jpgs.empty()) return BadInput(img_dir + ": no frames (0.jpg, 1.jpg, ...)");
  // Numbering 0..N-1 without gaps: the first missing number is named.
  const int64_t last = jpgs.rbegin()->first;
  if (last + 1 != static_cast<int64_t>(jpgs.size())) {
    int64_t k = 0;
    for (const auto& [i, path] : jpgs) {
      if (i != k) break;
      ++k;
    }
    return BadInput(join(img_dir, std::to_string(k) + ".jpg") +
                    ": missing (frames must be numbered 0.." + std::to_string(last) +
                    " without gaps; " + std::to_string(jpgs.size()) + " found)");
  }
  // Every frame has its landmarks and every landmark file its frame.
  for (const auto& [i, path] : jpgs) {
    if (!lmss.count(i))
      return BadInput(join(lms_dir, std::to_string(i) + ".lms") + ": missing (" + path +
                      " has no landmarks)");
  }
  for (const auto& [i, path] : lmss) {
    if (!jpgs.count(i))
      return BadInput(path + ": extra landmarks: there is no " +
                      join(img_dir, std::to_string(i) + ".jpg") + " (frames are 0.." +
                      std::to_string(last) + ")");
  }

  AvatarPackage pkg;
  pkg.dir = dir;
  pkg.full_video_path = img_dir;
  pkg.rects_path = lms_dir;
  pkg.fps = 0;
  pkg.fps_num = 0;
  pkg.fps_den = 1;
  const int n = static_cast<int>(jpgs.size());
  std::vector<std::string> jpg_paths;
  jpg_paths.reserve(n);
  for (auto& [i, path] : jpgs) jpg_paths.push_back(std::move(path));

  // Landmarks -> rects (cheap, before any decode).
  pkg.rects.reserve(n);
  for (const auto& [i, path] : lmss) {
    if (interrupted()) return Interrupted();
    TR_ASSIGN_OR_RETURN(std::string text, read_file(path));
    TR_ASSIGN_OR_RETURN(auto points, parse_landmarks(text, path));
    TR_ASSIGN_OR_RETURN(CropRect r, rect_from_landmarks(points, path));
    pkg.rects.push_back(r);
  }

  // The frame size from the first frame's header; every rect must lie inside it.
  {
    TR_ASSIGN_OR_RETURN(std::string bytes, read_file(jpg_paths[0]));
    TR_ASSIGN_OR_RETURN(cv::Size size, probe_jpeg_size(bytes, jpg_paths[0]));
    pkg.width = size.width;
    pkg.height = size.height;
  }
  int k = 0;
  for (const auto& [i, path] : lmss) {
    const CropRect& r = pkg.rects[k++];
    if (r.x1 < 0 || r.y1 < 0 || r.x2 > pkg.width || r.y2 > pkg.height || r.x2 <= r.x1 ||
        r.y2 <= r.y1) {
      return BadInput(path + ": the face rect " + rect_str(r) +
                      " (x1 = point 1 x, y1 = point 52 y, x2 = point 31 x, y2 = y1 + x2 - x1) is "
                      "not a non-empty rectangle inside the " +
                      std::to_string(pkg.width) + "x" + std::to_string(pkg.height) + " frame");
    }
  }

  if (opts.decode_frames) {
    FrameStoreOptions so;
    so.threads = opts.decode.threads;
    so.cache_bytes = opts.frame_store ? opts.frame_cache_bytes : 0;
    so.stream_decode_nice = opts.stream_decode_nice;
    TR_ASSIGN_OR_RETURN(std::unique_ptr<FrameStore> store,
                        FrameStore::open_jpegs(img_dir, jpg_paths, so));
    std::shared_ptr<FrameStore> shared(std::move(store));
    if (opts.frame_store) {
      pkg.store = std::move(shared);
    } else {
      pkg.frames.resize(n);
      for (int f = 0; f < n; ++f) {
        TR_ASSIGN_OR_RETURN(FrameHandle h, shared->acquire(f, f));
        TR_RETURN_IF_ERROR(shared->to_bgr(h, pkg.frames[f]));
      }
    }
  } else {
    // Not decoding (inspect): the headers still say whether every frame is one size.
    for (int f = 1; f < n; ++f) {
      if (interrupted()) return Interrupted();
      TR_ASSIGN_OR_RETURN(std::string bytes, read_file(jpg_paths[f]));
      TR_ASSIGN_OR_RETURN(cv::Size size, probe_jpeg_size(bytes, jpg_paths[f]));
      if (size.width != pkg.width || size.height != pkg.height)
        return BadInput(jpg_paths[f] + ": " + std::to_string(size.width) + "x" +
                        std::to_string(size.height) + ", but " + jpg_paths[0] + " is " +
                        std::to_string(pkg.width) + "x" + std::to_string(pkg.height) +
                        " (all frames must be one size)");
    }
  }
  pkg.frame_count = n;

  auto optional_path = [&](const char* name) {
    std::string p = join(dir, name);
    return path_exists(p) ? p : std::string();
  };
  pkg.aud_ave_path.clear();  // aud_ave.bin is a package's; datasets hold .npy (see below)
  pkg.package_info_path = optional_path("package_info.json");
  set_rect_size_range(pkg);
  return pkg;
}

Result<AvatarPackage> open_avatar(const std::string& package_dir, const std::string& dataset_dir,
                                  const PackageOptions& opts) {
  if (!package_dir.empty() && !dataset_dir.empty())
    return BadInput("give --package DIR or --dataset DIR, not both");
  if (!dataset_dir.empty()) return open_dataset(dataset_dir, opts);
  if (package_dir.empty()) return BadInput("no avatar given (--package DIR or --dataset DIR)");
  return open_package(package_dir, opts);
}

std::string dataset_features_path(const std::string& dir, std::string_view mode_name) {
  const char* name = nullptr;
  if (mode_name.find("wenet") != std::string_view::npos) {
    name = "aud_wenet.npy";
  } else if (mode_name.find("hu") != std::string_view::npos) {
    name = "aud_hu.npy";
  } else if (mode_name.find("ave") != std::string_view::npos) {
    name = "aud_ave.npy";
  }
  if (!name) return "";
  const std::string p = join(dir, name);
  return path_exists(p) ? p : std::string();
}

}  // namespace tr::io
