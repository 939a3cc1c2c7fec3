// What a live renderer (talkrender serve, src/serve/) needs of an avatar and its models,
// behind render's public interface so that serve/ never includes nn/ or io/ internals:
// an avatar's frames decoded once into RAM (BGR), its generator behind a Predictor with the
// family's render rules, and its audio encoder as a thread-safe EncoderFn.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "audio/audio.h"
#include "common/status.h"
#include "common/tensor.h"
#include "render/model_family.h"
#include "render/render.h"

namespace tr::render {

// A folder that is an avatar: a package (full_body_video.mp4) or a SyncTalk_2D /
// Ultralight dataset (full_body_img/).
bool is_avatar_dir(const std::string& dir);
bool is_dataset_avatar_dir(const std::string& dir);

// The model files of an avatar folder (a package's models/generator.onnx or .pth and
// models/audio_encoder.onnx); empty when the folder has none (datasets).
std::string avatar_generator_path(const std::string& dir);
std::string avatar_audio_encoder_path(const std::string& dir);

struct LiveAvatar {
  std::string dir;
  std::shared_ptr<const AvatarFrames> frames;  // full BGR frames in RAM and rects
  int width = 0, height = 0;
  int64_t bytes = 0;  // the decoded frames' size
};
// Decodes every frame of the package or dataset at `dir` into RAM. Refuses (kBadInput,
// naming the folder, the size and the budget) an avatar whose decoded frames would exceed
// `max_bytes` (checked from the probe, before anything is decoded); 0: no limit.
Result<LiveAvatar> load_live_avatar(const std::string& dir, int64_t max_bytes);

struct LiveModel {
  std::string generator_path;
  std::shared_ptr<Predictor> predictor;  // one thread at a time (Predictor's contract)
  ModelFamily family;                    // the render rules (size, window, fps, first frame)
  PrepSettings prep;
};
// Loads a generator for live use on the cpu. `precision`: "auto", "fp32", "bf16", "fp16"
// (empty = the render default); `threads` 0 = one per core.
Result<LiveModel> load_live_model(const std::string& generator_path, int threads,
                                  const std::string& precision);

// The audio encoder at `path` as an EncoderFn that may be called from any thread (calls are
// serialised; the function keeps the encoder alive).
Result<audio::EncoderFn> load_shared_audio_encoder(const std::string& path, int threads);

}  // namespace tr::render
