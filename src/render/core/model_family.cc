// The model family table: see render/model_family.h.
#include "render/model_family.h"

#include <fmt/format.h>

#include <opencv2/imgproc.hpp>

#include "render/render.h"

namespace tr::render {
namespace {

// The masks of the two reference sizes (OpenCV rectangle (x, y, w, h) in the ROI).
const cv::Rect kMask320(5, 5, 310, 305);
const cv::Rect kMask160(5, 5, 150, 145);

ModelFamily synctalk(const char* name, const char* audio, int size, Shape shape, int fps) {
  ModelFamily f;
  f.name = name;
  f.project = "SyncTalk_2D";
  f.audio = audio;
  f.size = size;
  f.audio_shape = std::move(shape);
  f.window_blocks = 16;  // frames i-8 .. i+7 (contract section 4 step 12)
  f.fps = fps;
  // SyncTalk_2D's own script starts its walk at 1 (contract section 5), but talkrender has
  // always started at 0 and its users' renders must not shift; --start-frame 1 matches it.
  f.first_frame = 0;
  // Only ave features are computed here (audio encoder), with the contract's repeated
  // first and last rows; hubert and wenet arrive as files, used row for row.
  f.pad_rows = std::string(audio) == "ave";
  if (size == 160) {
    // SyncTalk_2D's 160 script passes INTER_AREA in resize's dst slot: bilinear both ways.
    f.crop_interpolation = cv::INTER_LINEAR;
    f.paste_interpolation = cv::INTER_LINEAR;
    f.mask = kMask160;
  } else {
    f.crop_interpolation = cv::INTER_CUBIC;
    f.paste_interpolation = cv::INTER_CUBIC;
    f.mask = kMask320;
  }
  return f;
}

ModelFamily ultralight(const char* name, const char* audio, Shape shape, int fps) {
  ModelFamily f;
  f.name = name;
  f.project = "Ultralight";
  f.audio = audio;
  f.size = 160;
  f.audio_shape = std::move(shape);
  f.window_blocks = 8;  // frames i-4 .. i+3 (face_utils.py AUDIO_HALF_WINDOW = 4)
  f.fps = fps;
  f.first_frame = 1;   // its walk steps before the first frame: 1, 2, ..., N-1, N-2, ...
  f.pad_rows = false;  // one output frame per feature row
  // Its crop names interpolation=INTER_AREA; the paste-back resize names none (bilinear).
  f.crop_interpolation = cv::INTER_AREA;
  f.paste_interpolation = cv::INTER_LINEAR;
  f.mask = kMask160;
  return f;
}

std::vector<ModelFamily> make_table() {
  return {
      synctalk("synctalk2d-ave-320", "ave", 320, {32, 16, 16}, 25),
      synctalk("synctalk2d-hubert-320", "hubert", 320, {32, 32, 32}, 25),
      synctalk("synctalk2d-wenet-320", "wenet", 320, {256, 16, 32}, 20),
      synctalk("synctalk2d-ave-160", "ave", 160, {32, 16, 16}, 25),
      synctalk("synctalk2d-hubert-160", "hubert", 160, {32, 32, 32}, 25),
      synctalk("synctalk2d-wenet-160", "wenet", 160, {256, 16, 32}, 20),
      ultralight("ultralight-hubert-160", "hubert", {16, 32, 32}, 25),
      ultralight("ultralight-wenet-160", "wenet", {128, 16, 32}, 20),
  };
}

std::string known_inputs() {
  std::string s;
  for (const ModelFamily& f : model_families()) {
    if (!s.empty()) s += ", ";
    s += fmt::format("{} {}x{} audio {}", f.name, f.size, f.size, shape_str(f.audio_shape));
  }
  return s;
}

}  // namespace

int64_t ModelFamily::block_numel() const {
  return window_blocks > 0 ? shape_numel(audio_shape) / window_blocks : 0;
}

PrepSettings ModelFamily::prep() const {
  PrepSettings s;
  s.size = size;
  s.border = 4;
  s.crop_interpolation = crop_interpolation;
  s.paste_interpolation = paste_interpolation;
  s.mask = mask;
  return s;
}

const std::vector<ModelFamily>& model_families() {
  static const std::vector<ModelFamily> table = make_table();
  return table;
}

Result<ModelFamily> family_for_inputs(int size, const Shape& audio_shape) {
  const ModelFamily* same_audio = nullptr;
  for (const ModelFamily& f : model_families()) {
    if (f.audio_shape != audio_shape) continue;
    if (f.size == size) return f;
    if (!same_audio) same_audio = &f;
  }
  if (same_audio && std::string(same_audio->project) == "SyncTalk_2D" && size >= 16) {
    // No reference exists at this size: bicubic both ways, the 320 mask's proportions.
    ModelFamily f = *same_audio;
    f.size = size;
    f.name = f.audio == std::string("ave")      ? "synctalk2d-ave"
             : f.audio == std::string("hubert") ? "synctalk2d-hubert"
                                                : "synctalk2d-wenet";
    f.crop_interpolation = cv::INTER_CUBIC;
    f.paste_interpolation = cv::INTER_CUBIC;
    f.mask = cv::Rect(5, 5, size - 10, size * 305 / 320);
    return f;
  }
  return BadInput(fmt::format(
      "the generator's inputs (ROI {}x{}, audio {}) are not a known model family; known: {}", size,
      size, shape_str(audio_shape), known_inputs()));
}

ModelFamily apply_overrides(ModelFamily f, const FamilyOverrides& o) {
  if (o.crop_interpolation) f.crop_interpolation = *o.crop_interpolation;
  if (o.first_frame) f.first_frame = static_cast<int>(*o.first_frame);
  return f;
}

Result<int> parse_interpolation(const std::string& name, const std::string& flag) {
  if (name == "area") return static_cast<int>(cv::INTER_AREA);
  if (name == "linear") return static_cast<int>(cv::INTER_LINEAR);
  if (name == "cubic") return static_cast<int>(cv::INTER_CUBIC);
  return BadInput(
      fmt::format("{}: unknown interpolation '{}' (area, linear or cubic)", flag, name));
}

const char* interpolation_name(int interpolation) {
  switch (interpolation) {
    case cv::INTER_AREA:
      return "area";
    case cv::INTER_LINEAR:
      return "linear";
    case cv::INTER_CUBIC:
      return "cubic";
    default:
      return "other";
  }
}

Status check_feature_blocks(const std::string& path, const Shape& file_shape,
                            const ModelFamily& f) {
  const int64_t rows = file_shape.empty() ? 0 : file_shape[0];
  const int64_t block = rows > 0 ? shape_numel(file_shape) / rows : 0;
  if (block == f.block_numel()) return Status::Ok();
  return BadInput(fmt::format(
      "{}: feature file {} has blocks of {} floats, but the {} generator's audio input {} is "
      "a window of {} blocks of {} floats each",
      path, shape_str(file_shape), block, f.name, shape_str(f.audio_shape), f.window_blocks,
      f.block_numel()));
}

// The preparation settings of a SyncTalk_2D generator of ROI size `size` (tests, benches
// and callers without a model): the family table's rules.
PrepSettings PrepSettings::for_size(int size) {
  auto f = family_for_inputs(size, {32, 16, 16});
  if (f.ok()) return f->prep();
  PrepSettings s;  // size < 16: no model exists; keep the struct's defaults at that size
  s.size = size;
  return s;
}

// The audio mode view of the family table (name, shape, fps), for callers that only need
// those: the first family with this audio shape.
Result<AudioMode> audio_mode_for_shape(const Shape& shape) {
  for (const ModelFamily& f : model_families()) {
    if (f.audio_shape == shape) return AudioMode{f.audio, f.audio_shape, f.fps};
  }
  return BadInput(fmt::format("the generator's audio input {} is not a known mode; known: {}",
                              shape_str(shape), known_inputs()));
}

}  // namespace tr::render
