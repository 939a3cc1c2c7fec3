// Avatars and models for live rendering (talkrender serve): the glue to io and nn.
#include "render/live_avatar.h"

#include <fmt/format.h>

#include <filesystem>
#include <mutex>

#include "common/files.h"
#include "io/dataset.h"
#include "io/package.h"
#include "nn/nn.h"
#include "render/render_job.h"
#include "render/speech_features.h"

namespace tr::render {

namespace fs = std::filesystem;

bool is_dataset_avatar_dir(const std::string& dir) { return io::is_dataset_dir(dir); }

bool is_avatar_dir(const std::string& dir) {
  std::error_code ec;
  return fs::is_regular_file(fs::path(dir) / "full_body_video.mp4", ec) || io::is_dataset_dir(dir);
}

std::string avatar_generator_path(const std::string& dir) {
  const std::string p = io::package_model_path(dir, "generator");
  return path_exists(p) ? p : "";
}

std::string avatar_audio_encoder_path(const std::string& dir) {
  const std::string p = io::package_model_path(dir, "audio_encoder");
  return path_exists(p) ? p : "";
}

Result<LiveAvatar> load_live_avatar(const std::string& dir, int64_t max_bytes) {
  const bool dataset = io::is_dataset_dir(dir);
  const std::string pkg_dir = dataset ? "" : dir, ds_dir = dataset ? dir : "";
  // Probe first: the budget is checked before seconds of decoding.
  io::PackageOptions probe;
  probe.decode_frames = false;
  TR_ASSIGN_OR_RETURN(io::AvatarPackage info, io::open_avatar(pkg_dir, ds_dir, probe));
  const int64_t bytes = static_cast<int64_t>(info.frame_count) * info.width * info.height * 3;
  if (max_bytes > 0 && bytes > max_bytes) {
    return BadInput(fmt::format(
        "{}: {} frames of {}x{} need {:.0f} MiB decoded; the frame cache budget is {:.0f} MiB "
        "per avatar (shorten the avatar video or raise the budget)",
        dir, info.frame_count, info.width, info.height, bytes / 1048576.0, max_bytes / 1048576.0));
  }
  io::PackageOptions po;  // frames decoded into AvatarPackage::frames (BGR)
  TR_ASSIGN_OR_RETURN(io::AvatarPackage pkg, io::open_avatar(pkg_dir, ds_dir, po));
  auto frames = std::make_shared<AvatarFrames>();
  frames->full = std::move(pkg.frames);
  for (const auto& r : pkg.rects) frames->rects.push_back(r.to_cv());
  if (frames->full.empty() || frames->full.size() != frames->rects.size()) {
    return BadInput(fmt::format("{}: {} frames but {} face rectangles", dir, frames->full.size(),
                                frames->rects.size()));
  }
  LiveAvatar a;
  a.dir = dir;
  a.width = pkg.width;
  a.height = pkg.height;
  a.bytes = 0;
  for (const cv::Mat& m : frames->full) a.bytes += static_cast<int64_t>(m.total() * m.elemSize());
  a.frames = std::move(frames);
  return a;
}

Result<LiveModel> load_live_model(const std::string& generator_path, int threads,
                                  const std::string& precision) {
  if (!path_exists(generator_path)) return BadInput(generator_path + ": generator not found");
  std::optional<nn::Precision> p = kDefaultRenderPrecision;
  if (!precision.empty()) {
    TR_ASSIGN_OR_RETURN(p, nn::parse_precision(precision));
  }
  nn::LoadOptions lo;
  lo.relax_fixed_batch = true;
  TR_ASSIGN_OR_RETURN(std::shared_ptr<const nn::Model> model, nn::Model::load(generator_path, lo));
  LiveModel m;
  m.generator_path = generator_path;
  TR_ASSIGN_OR_RETURN(m.family, family_of_model(*model));
  m.prep = m.family.prep();
  // Batches of varying size run on this session: keep the weights (no release_weights).
  TR_ASSIGN_OR_RETURN(m.predictor, make_predictor(std::move(model), nn::BackendKind::kCpu, threads,
                                                  /*release_weights=*/false, p));
  return m;
}

Result<audio::EncoderFn> load_shared_audio_encoder(const std::string& path, int threads) {
  if (!path_exists(path)) return BadInput(path + ": audio encoder not found");
  nn::SessionOptions so;
  so.threads = threads;
  TR_ASSIGN_OR_RETURN(std::unique_ptr<audio::AudioEncoder> enc,
                      audio::AudioEncoder::load(path, so));
  struct Shared {
    std::mutex mu;
    std::unique_ptr<audio::AudioEncoder> enc;
  };
  auto shared = std::make_shared<Shared>();
  shared->enc = std::move(enc);
  return audio::EncoderFn([shared](const Tensor& batch) -> Result<Tensor> {
    std::lock_guard<std::mutex> lock(shared->mu);
    return shared->enc->encode(batch);
  });
}

}  // namespace tr::render
