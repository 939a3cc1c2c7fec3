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
#include "io/package.h"
#include "nn/nn.h"

namespace tr::cli {
namespace {

std::string describe_tensors(const std::vector<nn::TensorInfo>& ts) {
  std::string s;
  for (const auto& t : ts) {
    if (!s.empty()) s += ", ";
    s += t.name + " " + shape_str(t.shape);
  }
  return s;
}

void describe_model(const std::string& path) {
  auto model = nn::Model::load(path);
  if (!model.ok()) {
    std::printf("  %s: cannot load (%s); input shapes unknown\n", path.c_str(),
                model.error().message.c_str());
    return;
  }
  std::printf("  %s\n    inputs:  %s\n    outputs: %s\n", path.c_str(),
              describe_tensors((*model)->inputs()).c_str(),
              describe_tensors((*model)->outputs()).c_str());
}

}  // namespace

int cmd_inspect(int argc, char** argv) {
  CLI::App app{
      "Validate an avatar package and describe it: frames, size, fps, crop rects, "
      "optional files, models and their input shapes.",
      "talkrender inspect"};
  std::string dir;
  bool decode = false;
  int threads = 0;
  app.add_option("--package", dir, "avatar package directory")->required();
  app.add_flag("--decode", decode,
               "also decode every frame into RAM as render holds it (compact YUV, the frame "
               "store) and report the time and the memory");
  app.add_option("--threads", threads, "decoder threads for --decode (0 = one per core)");
  if (int rc = parse_args(app, argc, argv); rc >= 0) return rc;

  io::PackageOptions opts;
  opts.decode_frames = decode;
  opts.frame_store = true;  // as render: frames kept as the decoder's YUV, BGR per use
  opts.decode.threads = threads;
  const auto start = std::chrono::steady_clock::now();
  auto pkg = io::open_package(dir, opts);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!pkg.ok()) {
    std::fprintf(stderr, "talkrender inspect: %s\n", pkg.error().message.c_str());
    return pkg.error().exit_code();
  }
  const io::AvatarPackage& p = *pkg;
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

  // Models: the two the renderer looks for, plus any other .onnx in models/.
  std::printf("models:\n");
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path models_dir = fs::path(dir) / "models";
  bool any = false;
  if (fs::is_directory(models_dir, ec)) {
    for (const auto& e : fs::directory_iterator(models_dir, ec)) {
      if (e.path().extension() != ".onnx") continue;
      any = true;
      describe_model(e.path().string());
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
