#include "cli/cli_util.h"

#include <cstdio>
#include <nlohmann/json.hpp>

#include "common/files.h"
#include "common/npy.h"
#include "io/av_util.h"

namespace tr::cli {
namespace {

std::string lower_extension(const std::string& path) {
  const size_t slash = path.rfind('/');
  const size_t dot = path.rfind('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
  std::string ext = path.substr(dot);
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext;
}

std::string sidecar_for(const std::string& bin_path) {
  return bin_path.substr(0, bin_path.size() - 4) + ".json";
}

}  // namespace

int parse_args(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help: the help text on stdout
    std::fprintf(stderr, "%s: %s (see %s --help)\n", app.get_name().c_str(), e.what(),
                 app.get_name().c_str());
    return 2;
  }
  return -1;
}

int report_error(const CLI::App& app, const Error& e) {
  std::fprintf(stderr, "%s: %s\n", app.get_name().c_str(), e.message.c_str());
  return e.exit_code();
}

void add_verbose_flag(CLI::App& app, bool* verbose) {
  app.add_flag("--verbose", *verbose, "show FFmpeg's own log messages (quiet by default)");
}

void apply_verbose(bool verbose) { io::set_ffmpeg_log_level(verbose); }

void add_avatar_options(CLI::App& app, std::string* package_dir, std::string* dataset_dir) {
  auto* p = app.add_option("--package,-p", *package_dir,
                           "avatar package folder (full_body_video.mp4, "
                           "cache/crop_rectangles.json, models/)");
  auto* d = app.add_option(
      "--dataset", *dataset_dir,
      "instead of --package: a SyncTalk_2D / Ultralight dataset folder as they leave it: "
      "full_body_img/{i}.jpg, landmarks/{i}.lms (110 points; face rect by the reference's "
      "rule) and aud_ave.npy / aud_hu.npy / aud_wenet.npy (the speech when no --audio or "
      "--features is given)");
  p->excludes(d);
  d->excludes(p);
}

Status check_avatar_options(const std::string& package_dir, const std::string& dataset_dir) {
  if (package_dir.empty() && dataset_dir.empty())
    return BadInput("no avatar given: --package DIR or --dataset DIR");
  return Status::Ok();
}

Status check_matrix_output(const std::string& out_path) {
  const std::string ext = lower_extension(out_path);
  if (ext != ".npy" && ext != ".bin") {
    return BadInput(out_path +
                    ": the output is written as its extension says: .npy (NumPy), or .bin "
                    "(raw float32 with a .json shape sidecar); give one of those");
  }
  if (is_directory(out_path)) return BadInput(out_path + ": is a folder; give a file name");
  return check_can_create_in(parent_dir_of(out_path), out_path);
}

Status write_matrix(const std::string& out_path, const Tensor& t, bool rows_are_frames) {
  if (lower_extension(out_path) == ".npy") return write_npy(out_path, t);
  // .bin: the bytes as they are in memory (x86: little-endian), plus the shape beside it,
  // which render --features reads.
  nlohmann::json shape = nlohmann::json::array();
  for (int64_t d : t.shape()) shape.push_back(d);
  nlohmann::json side = {{"shape", shape}};
  if (rows_are_frames && t.rank() == 2) {
    side["num_frames"] = t.dim(0);
    side["feature_size"] = t.dim(1);
  }
  const std::string sidecar = sidecar_for(out_path);
  TR_RETURN_IF_ERROR(write_file_atomic(sidecar, side.dump() + "\n"));
  Status s = write_file_atomic(
      out_path, std::string(static_cast<const char*>(t.raw()), t.numel() * sizeof(float)));
  if (!s.ok()) std::remove(sidecar.c_str());  // written just now, by us
  return s;
}

}  // namespace tr::cli
