// Precomputed speech features for a generator, read as the SyncTalk_2D / Ultralight tools
// write them and checked against the generator's family (render/model_family.h).
#pragma once

#include <string>

#include "common/status.h"
#include "common/tensor.h"
#include "nn/nn.h"
#include "render/model_family.h"

namespace tr::render {

// The family of a loaded generator, from its inputs 'input' [B, 6, S, S] and 'audio'
// [B, ...]; kBadInput naming the model when they are missing or not a known family.
Result<ModelFamily> family_of_model(const nn::Model& m);

// Reads `path` for a generator of family `f`: .npy in any row shape (aud_ave [n, 512],
// aud_hu.npy [n, 2, 1024], aud_wenet.npy [n, 16, 512], as np.save writes float32/float64),
// or raw float32 .bin with a .json shape sidecar (without one, rows of f's block size).
// Returns [rows, block], one row per output frame. A file whose block is not the family's
// (audio input / window blocks) is kBadInput naming the file, its shape and the model's.
Result<Tensor> read_features_for_family(const std::string& path, const ModelFamily& f);

// The audio mode ("ave" or "hubert") the speech implies for a .pth generator whose tensors
// cannot tell (SyncTalk_2D's ave and hubert generators differ only in a stride), or "" when
// nothing tells (the loader then goes by the file's name). In order: a features file's
// shape (hubert [n, 2, 1024]; ave [rows, 512] or .bin), a package's package_info.json
// (the generator's audio input shape `package` recorded), a dataset holding only one of
// aud_hu.npy / aud_ave.npy, and --audio (which computes ave features).
struct SpeechSources {
  std::string features_path, package_dir, dataset_dir, audio_path;
};
std::string checkpoint_audio_hint(const SpeechSources& s);

}  // namespace tr::render
