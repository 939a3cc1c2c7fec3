// Feature files for a model family: see render/speech_features.h.
#include "render/speech_features.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "audio/audio.h"
#include "common/files.h"
#include "common/npy.h"
#include "io/dataset.h"

namespace tr::render {

Result<ModelFamily> family_of_model(const nn::Model& m) {
  const nn::TensorInfo* image = nullptr;
  const nn::TensorInfo* audio = nullptr;
  for (const auto& in : m.inputs()) {
    if (in.name == "input") image = &in;
    if (in.name == "audio") audio = &in;
  }
  if (!image || !audio) {
    return BadInput(m.name() +
                    ": not a lip-sync generator: it needs inputs named 'input' and 'audio'");
  }
  const Shape& is = image->shape;
  if (is.size() != 4 || is[1] != 6 || is[2] != is[3] || is[2] < 16) {
    return BadInput(
        fmt::format("{}: input 'input' is {}; expected [B, 6, S, S]", m.name(), shape_str(is)));
  }
  if (audio->shape.size() < 2) {
    return BadInput(fmt::format("{}: input 'audio' is {}; expected [B, ...]", m.name(),
                                shape_str(audio->shape)));
  }
  auto f = family_for_inputs(static_cast<int>(is[2]),
                             Shape(audio->shape.begin() + 1, audio->shape.end()));
  if (!f.ok()) return BadInput(m.name() + ": " + f.error().message);
  return f;
}

Result<Tensor> read_features_for_family(const std::string& path, const ModelFamily& f) {
  // The block size is checked here, against the family, so that the error can name the
  // file's own shape and the model's window; the reader only needs it to shape a raw .bin
  // that has no sidecar.
  const std::string sidecar = (path.size() > 4 && path.compare(path.size() - 4, 4, ".bin") == 0
                                   ? path.substr(0, path.size() - 4)
                                   : path) +
                              ".json";
  const bool self_described =
      (path.size() > 4 && path.compare(path.size() - 4, 4, ".npy") == 0) || path_exists(sidecar);
  Shape file_shape;
  TR_ASSIGN_OR_RETURN(
      Tensor t, audio::read_feature_file(path, self_described ? 0 : f.block_numel(), &file_shape));
  TR_RETURN_IF_ERROR(check_feature_blocks(path, file_shape, f));
  return t;
}

std::string checkpoint_audio_hint(const SpeechSources& s) {
  if (!s.features_path.empty()) {
    if (!s.features_path.ends_with(".npy")) return "ave";  // .bin: rows of 512, ave's
    auto f = read_npy(s.features_path);
    if (!f.ok()) return "";  // reading the features says what is wrong with the file
    if (f->rank() == 3 && f->dim(1) == 2 && f->dim(2) == 1024) return "hubert";
    if (f->rank() == 2 && f->dim(1) == 512) return "ave";
    return "";
  }
  if (!s.package_dir.empty()) {
    // `package` records the generator's input shapes: audio [-1, 32, 32, 32] is hubert's.
    if (auto text = read_file(s.package_dir + "/package_info.json"); text.ok()) {
      const auto info = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
      const auto ptr = nlohmann::json::json_pointer("/onnx/input_shapes/audio");
      if (info.is_object() && info.contains(ptr) && info[ptr].is_array() && info[ptr].size() == 4 &&
          info[ptr][1] == 32) {
        return info[ptr][2] == 32 ? "hubert" : "ave";
      }
    }
  }
  if (!s.dataset_dir.empty() && s.audio_path.empty()) {
    const bool hu = !io::dataset_features_path(s.dataset_dir, "hubert").empty();
    const bool ave = !io::dataset_features_path(s.dataset_dir, "ave").empty();
    if (hu != ave) return hu ? "hubert" : "ave";
  }
  return s.audio_path.empty() ? "" : "ave";  // --audio computes ave features
}

}  // namespace tr::render
