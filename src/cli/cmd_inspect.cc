// talkrender inspect --package DIR: validates an avatar package and describes it (frames,
// size, fps, rect size range, optional files, models and their input shapes). With
// --decode it also decodes every frame into RAM and reports the time taken.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "common/npy.h"
#include "io/dataset.h"
#include "io/package.h"
#include "nn/nn.h"
#include "render/speech_features.h"

namespace tr::cli {
namespace {

// "[n, 2, 1024]" from a .npy header, or why not.
std::string npy_shape_of(const std::string& path) {
  auto t = read_npy(path);
  if (!t.ok()) return "(" + t.error().message + ")";
  return shape_str(t->shape());
}

std::string describe_tensors(const std::vector<nn::TensorInfo>& ts) {
  std::string s;
  for (const auto& t : ts) {
    if (!s.empty()) s += ", ";
    s += t.name + " " + shape_str(t.shape);
  }
  return s;
}

// `hint`: a .pth generator's audio mode as render would choose it for this avatar.
void describe_model(const std::string& path, const std::string& hint) {
  nn::LoadOptions load_opts;
  load_opts.checkpoint_audio_mode = hint;
  auto model = nn::Model::load(path, load_opts);
  if (!model.ok()) {
    std::printf("  %s: cannot load (%s); input shapes unknown\n", path.c_str(),
                model.error().message.c_str());
    return;
  }
  std::printf("  %s\n    inputs:  %s\n    outputs: %s\n", path.c_str(),
              describe_tensors((*model)->inputs()).c_str(),
              describe_tensors((*model)->outputs()).c_str());
  // A .pth: what its tensors were recognised as (family, S, audio layout, widths).
  if (!(*model)->description().empty()) {
    std::printf("    from the state dict: %s\n", (*model)->description().c_str());
  }
  // A generator: the render rules its inputs select (render/model_family.h).
  if (auto f = render::family_of_model(**model); f.ok()) {
    std::printf(
        "    render rules: %s (%d-block audio window, first frame %d, crop %s, paste %s, "
        "%d fps)\n",
        f->name, f->window_blocks, f->first_frame,
        render::interpolation_name(f->crop_interpolation),
        render::interpolation_name(f->paste_interpolation), f->fps);
  }
}

}  // namespace

int cmd_inspect(int argc, char** argv) {
  CLI::App app{
      "Validate an avatar package and describe it: frames, size, fps, crop rects, "
      "optional files, models and their input shapes.",
      "talkrender inspect"};
  std::string dir, dataset;
  bool decode = false;
  int threads = 0;
  add_avatar_options(app, &dir, &dataset);
  app.add_flag("--decode", decode,
               "also decode every frame into RAM as render holds it (compact YUV, the frame "
               "store) and report the time and the memory");
  app.add_option("--threads", threads, "decoder threads for --decode (0 = one per core)");
  if (int rc = parse_args(app, argc, argv); rc >= 0) return rc;
  if (Status s = check_avatar_options(dir, dataset); !s.ok()) return report_error(app, s.error());

  io::PackageOptions opts;
  opts.decode_frames = decode;
  opts.frame_store = true;  // as render: frames kept as the decoder's YUV, BGR per use
  opts.decode.threads = threads;
  const auto start = std::chrono::steady_clock::now();
  auto pkg = io::open_avatar(dir, dataset, opts);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!pkg.ok()) {
    std::fprintf(stderr, "talkrender inspect: %s\n", pkg.error().message.c_str());
    return pkg.error().exit_code();
  }
  const io::AvatarPackage& p = *pkg;
  if (!dataset.empty()) {
    std::printf("dataset: %s\n", p.dir.c_str());
    std::printf(
        "frames:  %d, %dx%d, %s/{0..%d}.jpg (no rate of their own; renders run at the "
        "model's, 25 fps, wenet 20)\n",
        p.frame_count, p.width, p.height, p.full_video_path.c_str(), p.frame_count - 1);
    std::printf("rects:   %zu from %s/{i}.lms, width %d..%d, height %d..%d\n", p.rects.size(),
                p.rects_path.c_str(), p.min_rect_w, p.max_rect_w, p.min_rect_h, p.max_rect_h);
    for (const char* mode : {"ave", "hubert", "wenet"}) {
      const std::string f = io::dataset_features_path(p.dir, mode);
      if (f.empty()) continue;
      auto shape = npy_shape_of(f);
      std::printf("features: %s %s\n", f.c_str(), shape.c_str());
    }
    if (decode && p.store) {
      const double mib = p.store->resident_bytes() / (1024.0 * 1024.0);
      const double bgr_mib = double(p.frame_count) * p.width * p.height * 3 / (1024.0 * 1024.0);
      std::printf(
          "decoded: %d frames in %.3f s (%.1f fps incl. validation); render holds them in "
          "%.1f MiB (the JPEGs' YCbCr planes, converted per use; %.1f MiB as BGR; --cache-mb "
          "bounds it)\n",
          p.frame_count, secs, p.frame_count / secs, mib, bgr_mib);
    }
    std::printf("models:  none (a dataset holds none); render needs --generator\n");
    return 0;
  }
  std::printf("package: %s\n", p.dir.c_str());
  std::printf("frames:  %d, %dx%d, %g fps (%d/%d), %.2f s\n", p.frame_count, p.width, p.height,
              p.fps, p.fps_num, p.fps_den, p.frame_count / p.fps);
  std::printf("         the video's own rate; renders run at the model's (25 fps, wenet 20)\n");
  std::printf("rects:   %zu, width %d..%d, height %d..%d\n", p.rects.size(), p.min_rect_w,
              p.max_rect_w, p.min_rect_h, p.max_rect_h);
  auto opt = [](const std::string& path) { return path.empty() ? "absent" : "present"; };
  std::printf("crops_328_video.mp4: %s\n", opt(p.crops_video_path));
  std::printf("package_info.json:   %s\n", opt(p.package_info_path));
  if (p.aud_ave_path.empty())
    std::printf("aud_ave.bin:         absent\n");
  else
    std::printf("aud_ave.bin:         %d rows x 512 (renders %d frames)\n", p.aud_ave_rows,
                p.aud_ave_rows);
  if (decode && p.store) {
    const double mib = p.store->resident_bytes() / (1024.0 * 1024.0);
    const double bgr_mib = double(p.frame_count) * p.width * p.height * 3 / (1024.0 * 1024.0);
    std::printf(
        "decoded: %d frames in %.3f s (%.1f fps incl. validation); render holds them in "
        "%.1f MiB (YUV, converted per use; %.1f MiB as BGR; --cache-mb bounds it)\n",
        p.frame_count, secs, p.frame_count / secs, mib, bgr_mib);
  }

  // Models: the two the renderer looks for, plus any other .onnx (or .pth) in models/.
  std::printf("models:\n");
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path models_dir = fs::path(dir) / "models";
  bool any = false;
  if (fs::is_directory(models_dir, ec)) {
    for (const auto& e : fs::directory_iterator(models_dir, ec)) {
      if (e.path().extension() != ".onnx" && e.path().extension() != ".pth") continue;
      any = true;
      describe_model(e.path().string(),
                     render::checkpoint_audio_hint({.package_dir = dir, .dataset_dir = dataset}));
    }
  }
  if (!any) std::printf("  none in %s\n", models_dir.string().c_str());
  if (p.generator_path.empty())
    std::printf("  note: no models/generator.onnx; render needs --generator\n");
  if (p.audio_encoder_path.empty())
    std::printf(
        "  note: no models/audio_encoder.onnx; rendering from an audio file needs "
        "--audio-encoder (or precomputed features)\n");
  return 0;
}

}  // namespace tr::cli
