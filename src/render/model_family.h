// The model families and their render rules (model-contract.md sections 2-5 and
// "Ultralight-Digital-Human's own model"): ONE table, keyed by what the generator's inputs
// say (ROI size S and the audio input shape without batch).
//
// Everything that differs between SyncTalk_2D and Ultralight models on the render side is
// here and nowhere else: the audio window (blocks, centred on the frame), crop and paste
// interpolation, the mask, the first avatar frame of the walk, the output frame rate, and
// whether features computed from audio get the repeated first/last rows. The family is
// chosen once, when the generator is loaded; a user may override the crop interpolation
// and the first frame (FamilyOverrides), and the render report records what was used.
//
// Thread-safety: the table is immutable; every function here is pure.
#pragma once

#include <cstdint>
#include <opencv2/core.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"

namespace tr::render {

struct PrepSettings;

struct ModelFamily {
  const char* name = "";     // e.g. "synctalk2d-ave-320", "ultralight-hubert-160"
  const char* project = "";  // "SyncTalk_2D" or "Ultralight"
  const char* audio = "";    // the speech features: "ave", "hubert" or "wenet"
  int size = 0;              // S, the model's ROI (0 in the table: any size, see below)
  Shape audio_shape;         // the generator's audio input without batch
  // The window of output frame i: blocks i - window_blocks/2 .. i + window_blocks/2 - 1 of
  // the feature file, zero blocks outside it, flattened row-major into audio_shape.
  int window_blocks = 16;
  int fps = 25;                 // output frame rate: one feature block per model frame
  int first_frame = 0;          // avatar frame of output frame 0 (start of the ping-pong walk)
  bool pad_rows = true;         // features from audio: P = [F0, F0..F(n-1), F(n-1)] (n + 2 rows)
  int crop_interpolation = 2;   // cv::InterpolationFlags
  int paste_interpolation = 2;  // cv::InterpolationFlags
  cv::Rect mask;                // filled black in the masked ROI

  // Floats in one feature block (one video frame of speech): audio input / window_blocks.
  int64_t block_numel() const;
  // The per-frame preparation settings of this family (size, border 4, interpolations,
  // mask).
  PrepSettings prep() const;
};

// Every family the engine knows, in lookup order.
const std::vector<ModelFamily>& model_families();

// The family of a generator with ROI size `size` and audio input `audio_shape` (without
// batch). A SyncTalk_2D audio shape at a size with no entry of its own gets the size's
// generic rules (PrepSettings::for_size); an unknown audio shape, or Ultralight's at a
// size other than 160, is an error naming both shapes and the known ones.
Result<ModelFamily> family_for_inputs(int size, const Shape& audio_shape);

// What the user may change (render flags); unset keeps the family's choice.
struct FamilyOverrides {
  std::optional<int> crop_interpolation;  // --crop-interp
  std::optional<int64_t> first_frame;     // --start-frame
};
ModelFamily apply_overrides(ModelFamily f, const FamilyOverrides& o);

// "area" | "linear" | "cubic" <-> cv::INTER_AREA | INTER_LINEAR | INTER_CUBIC. `flag` names
// the option in the error.
Result<int> parse_interpolation(const std::string& name, const std::string& flag);
const char* interpolation_name(int interpolation);

// Checks that a feature file of shape `file_shape` ([rows, ...], as stored) has blocks
// that fit family `f`; the error names `path`, the file's shape, the model's audio input
// and the block size it needs.
Status check_feature_blocks(const std::string& path, const Shape& file_shape, const ModelFamily& f);

}  // namespace tr::render
