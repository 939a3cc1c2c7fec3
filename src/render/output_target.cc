// Output kinds, the overwrite rules and staged publishing (see output_target.h).
#include "render/output_target.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>

#include "common/files.h"

namespace tr::render {
namespace {

namespace fs = std::filesystem;

constexpr const char* kX264Presets[] = {"ultrafast", "superfast", "veryfast", "faster",
                                        "fast",      "medium",    "slow",     "slower",
                                        "veryslow",  "placebo"};

// How to write each output kind, for the messages that refuse a name.
constexpr const char* kHowToWrite =
    "give NAME.mp4 for a video, or a folder (NAME/) or a pattern (NAME_%06d.png) for an "
    "image sequence";

std::string strip_trailing_slashes(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string extension_of(const std::string& name) {
  const size_t dot = name.rfind('.');
  return dot == std::string::npos || dot == 0 ? "" : lower(name.substr(dot));
}

// "png" | "jpg" for an image extension or --format value, "" for anything else.
std::string image_format_name(const std::string& ext_or_format) {
  std::string e = lower(ext_or_format);
  if (!e.empty() && e[0] == '.') e = e.substr(1);
  if (e == "png") return "png";
  if (e == "jpg" || e == "jpeg") return "jpg";
  return "";
}

io::ImageFormat image_format(const std::string& name) {
  return name == "jpg" ? io::ImageFormat::kJpg : io::ImageFormat::kPng;
}

// Parses the %d conversion of a file name. Returns false (no error) when there is none.
Result<bool> parse_pattern(const std::string& name, FramePattern* p) {
  bool found = false;
  std::string* part = &p->prefix;
  for (size_t i = 0; i < name.size(); ++i) {
    if (name[i] != '%') {
      *part += name[i];
      continue;
    }
    if (i + 1 < name.size() && name[i + 1] == '%') {
      *part += '%';
      ++i;
      continue;
    }
    size_t j = i + 1;
    while (j < name.size() && std::isdigit(static_cast<unsigned char>(name[j]))) ++j;
    if (j >= name.size() || name[j] != 'd' || found) {
      return BadInput(name +
                      ": a frame-number pattern takes one %d or %0Nd (and %% for a percent "
                      "sign), e.g. frame_%06d.png");
    }
    const std::string digits = name.substr(i + 1, j - i - 1);
    if (digits.size() > 2 || (!digits.empty() && std::stoi(digits) > 18)) {
      return BadInput(name + ": the frame number is at most 18 digits wide (%018d)");
    }
    p->width = digits.empty() ? 0 : std::stoi(digits);
    found = true;
    part = &p->suffix;
    i = j;
  }
  return found;
}

// The staging folder of a sequence written into an existing folder: inside it (same file
// system, so publishing is renames), hidden, and named so that no user file can be it.
std::string staging_dir_for(const std::string& folder) {
  return folder + "/.talkrender.new-" + std::to_string(::getpid());
}

// The io image writer's file names (io/image_writer.cc).
std::string staged_frame_name(int64_t i, const std::string& ext) {
  char name[40];
  std::snprintf(name, sizeof name, "frame_%06lld", static_cast<long long>(i));
  return name + ext;
}

bool is_same_or_inside(const fs::path& inner, const fs::path& outer) {
  auto [o, i] = std::mismatch(outer.begin(), outer.end(), inner.begin(), inner.end());
  return o == outer.end();
}

}  // namespace

// An existing output file must not be one of the inputs (--overwrite would destroy it
// after it was read).
Status check_output_is_not_an_input(const std::string& out_path, const NamedPaths& inputs) {
  const std::string target = strip_trailing_slashes(out_path);
  if (!path_exists(target) || is_directory(target)) return Status::Ok();
  std::error_code ec;
  const fs::path out = fs::weakly_canonical(target, ec);
  if (ec) return Status::Ok();
  for (const auto& [flag, path] : inputs) {
    if (path.empty()) continue;
    const fs::path in = fs::weakly_canonical(path, ec);
    if (ec || !fs::exists(in, ec)) continue;
    if (is_same_or_inside(in, out) || fs::equivalent(in, out, ec)) {
      return BadInput(fmt::format(
          "{}: the output is (or holds) {}, an input of this render ({}); --overwrite would "
          "destroy it; choose another output path",
          target, path, flag));
    }
  }
  return Status::Ok();
}

namespace {

// A sequence replaces only files named by its pattern directly in its folder: refuses
// when one of those is an input.
Status check_sequence_spares_inputs(const OutputTarget& t, const NamedPaths& inputs) {
  std::error_code ec;
  const fs::path folder = fs::weakly_canonical(t.path, ec);
  if (ec) return Status::Ok();
  for (const auto& [flag, path] : inputs) {
    if (path.empty()) continue;
    const fs::path in = fs::weakly_canonical(path, ec);
    if (ec || !fs::exists(in, ec)) continue;
    if (in.parent_path() == folder && t.pattern.matches(in.filename().string())) {
      return BadInput(fmt::format(
          "{}: {} is an input of this render ({}) and is named like a frame of the output "
          "sequence {}; choose another output",
          t.display(), path, flag, t.pattern.text()));
    }
  }
  return Status::Ok();
}

// An io::FrameWriter as the pipeline's sink; with `staged` set, finish() renames the
// finished file over `target` (rename replaces it in one step, so a failed or interrupted
// render leaves the old output as it was).
class WriterSink final : public FrameSink {
 public:
  WriterSink(std::unique_ptr<io::FrameWriter> w, std::string target, std::string staged)
      : writer_(std::move(w)), target_(std::move(target)), staged_(std::move(staged)) {}
  ~WriterSink() override { abort(); }

  Status write(int64_t, const cv::Mat& frame) override { return writer_->write_frame(frame); }

  Status finish() override {
    TR_RETURN_IF_ERROR(writer_->finish());
    done_ = true;
    if (staged_.empty()) return Status::Ok();
    std::error_code ec;
    fs::rename(staged_, target_, ec);
    if (ec) {
      const std::string reason = ec.message();  // before the clean-up's own error code
      fs::remove(staged_, ec);
      return RuntimeError(target_ + ": cannot replace the existing output: " + reason);
    }
    return Status::Ok();
  }

  void abort() override {
    if (done_) return;
    done_ = true;
    writer_->abort();
  }

 private:
  std::unique_ptr<io::FrameWriter> writer_;
  std::string target_, staged_;
  bool done_ = false;
};

// An image sequence written into a folder that exists (or that this sink made for a
// pattern): the writer fills a hidden staging folder inside it; finish() renames each
// frame to its pattern name (replacing an old frame of that name), removes old frames of
// the pattern beyond the new count, and removes the staging folder. Nothing else in the
// folder is touched.
class SequenceSink final : public FrameSink {
 public:
  SequenceSink(std::unique_ptr<io::FrameWriter> w, OutputTarget t, std::string staging,
               std::string ext, bool created_folder)
      : writer_(std::move(w)),
        target_(std::move(t)),
        staging_(std::move(staging)),
        ext_(std::move(ext)),
        created_folder_(created_folder) {}
  ~SequenceSink() override { abort(); }

  Status write(int64_t, const cv::Mat& frame) override { return writer_->write_frame(frame); }

  Status finish() override {
    Status s = writer_->finish();
    if (s.ok()) s = publish();
    if (!s.ok()) {
      abort();
      return s;
    }
    done_ = true;
    return Status::Ok();
  }

  void abort() override {
    if (done_) return;
    done_ = true;
    writer_->abort();
    std::error_code ec;
    fs::remove_all(staging_, ec);                       // our own folder, named with our pid
    if (created_folder_) fs::remove(target_.path, ec);  // only if still empty
  }

 private:
  Status publish() {
    const int64_t n = writer_->frames_written();
    std::error_code ec;
    for (int64_t i = 0; i < n; ++i) {
      const std::string to = target_.path + "/" + target_.pattern.name(i);
      fs::rename(staging_ + "/" + staged_frame_name(i, ext_), to, ec);
      if (ec) return RuntimeError(to + ": cannot move the new frame into place: " + ec.message());
    }
    // Old frames of the same pattern beyond the new count: the sequence is the new one.
    std::vector<fs::path> stale;
    for (const auto& e : fs::directory_iterator(target_.path, ec)) {
      int64_t index = -1;
      std::error_code type_ec;
      if (e.is_regular_file(type_ec) && !e.is_symlink(type_ec) &&
          target_.pattern.matches(e.path().filename().string(), &index) && index >= n) {
        stale.push_back(e.path());
      }
    }
    if (ec) return RuntimeError(target_.path + ": cannot list the folder: " + ec.message());
    for (const auto& p : stale) {
      if (!fs::remove(p, ec) && ec) {
        return RuntimeError(p.string() + ": cannot remove an old frame: " + ec.message());
      }
    }
    fs::remove(staging_, ec);
    if (ec) return RuntimeError(staging_ + ": cannot remove the staging folder: " + ec.message());
    return Status::Ok();
  }

  std::unique_ptr<io::FrameWriter> writer_;
  OutputTarget target_;
  std::string staging_, ext_;
  bool created_folder_ = false;
  bool done_ = false;
};

}  // namespace

std::string FramePattern::name(int64_t index) const {
  std::string digits = std::to_string(index);
  if (static_cast<int>(digits.size()) < width) digits.insert(0, width - digits.size(), '0');
  return prefix + digits + suffix;
}

bool FramePattern::matches(const std::string& file_name, int64_t* index) const {
  if (file_name.size() <= prefix.size() + suffix.size()) return false;
  if (file_name.compare(0, prefix.size(), prefix) != 0) return false;
  if (file_name.compare(file_name.size() - suffix.size(), suffix.size(), suffix) != 0) {
    return false;
  }
  const std::string digits =
      file_name.substr(prefix.size(), file_name.size() - prefix.size() - suffix.size());
  if (digits.size() > 18 || !std::all_of(digits.begin(), digits.end(), [](char c) {
        return std::isdigit(static_cast<unsigned char>(c));
      })) {
    return false;
  }
  const int64_t i = std::stoll(digits);
  if (name(i) != file_name) return false;  // same padding, no extra leading zeros
  if (index) *index = i;
  return true;
}

std::string FramePattern::text() const {
  auto escape = [](const std::string& s) {
    std::string out;
    for (char c : s) out += c == '%' ? std::string("%%") : std::string(1, c);
    return out;
  };
  return escape(prefix) + (width > 0 ? fmt::format("%0{}d", width) : std::string("%d")) +
         escape(suffix);
}

std::string OutputTarget::display() const {
  return kind == OutputKind::kMp4 ? path : path + "/" + pattern.text();
}

const char* x264_preset_list() {
  return "ultrafast superfast veryfast faster fast medium slow slower veryslow placebo";
}

bool is_x264_preset(const std::string& name) {
  return std::find(std::begin(kX264Presets), std::end(kX264Presets), name) !=
         std::end(kX264Presets);
}

Result<OutputTarget> resolve_output(const std::string& out, const std::string& format) {
  if (out.empty()) return BadInput(std::string("no output given (--out): ") + kHowToWrite);
  std::string format_name;
  if (!format.empty()) {
    format_name = image_format_name(format);
    if (format_name.empty()) {
      return BadInput("--format: '" + format + "' is not an image format (png or jpg)");
    }
  }
  OutputTarget t;
  const bool slash = out.back() == '/';
  const std::string path = strip_trailing_slashes(out);
  const size_t cut = path.rfind('/');
  const std::string base = cut == std::string::npos ? path : path.substr(cut + 1);
  const std::string dir = cut == std::string::npos ? "." : cut == 0 ? "/" : path.substr(0, cut);

  // A %d pattern: an image sequence in the pattern's format, in the pattern's folder.
  FramePattern pattern;
  TR_ASSIGN_OR_RETURN(bool is_pattern, slash ? Result<bool>(false) : parse_pattern(base, &pattern));
  if (is_pattern) {
    const std::string ext = extension_of("x" + pattern.suffix);  // the suffix may be ".png"
    const std::string fmt_of_name = image_format_name(ext);
    if (fmt_of_name.empty()) {
      return BadInput(out + ": an image pattern ends in .png, .jpg or .jpeg (e.g. " + base +
                      ".png); " + kHowToWrite);
    }
    if (!format_name.empty() && format_name != fmt_of_name) {
      return BadInput(fmt::format("--format {} contradicts the output {} ({} images)", format, out,
                                  fmt_of_name));
    }
    t.kind = OutputKind::kImageSequence;
    t.path = dir;
    t.pattern = pattern;
    t.format = image_format(fmt_of_name);
    return t;
  }
  // A folder: frame_000000.EXT ...
  if (slash || is_directory(path)) {
    const std::string fmt_name = format_name.empty() ? "png" : format_name;
    t.kind = OutputKind::kImageSequence;
    t.path = path;
    t.pattern.prefix = "frame_";
    t.pattern.width = 6;
    t.pattern.suffix = "." + fmt_name;
    t.format = image_format(fmt_name);
    return t;
  }
  const std::string ext = extension_of(base);
  if (ext == ".mp4") {
    if (!format_name.empty()) {
      return BadInput(fmt::format(
          "--format {} is for image sequences, and {} is an MP4 video; for {} images give a "
          "folder ({}/) or a pattern ({}_%06d.{})",
          format, out, format_name, path.substr(0, path.size() - 4),
          path.substr(0, path.size() - 4), format_name));
    }
    t.kind = OutputKind::kMp4;
    t.path = path;
    return t;
  }
  for (const char* video : {".mov", ".mkv", ".webm", ".avi", ".m4v", ".gif", ".flv", ".ts", ".mpg",
                            ".mpeg", ".ogv", ".wmv", ".3gp"}) {
    if (ext == video) {
      return BadInput(
          fmt::format("{}: {} output is not supported; talkrender writes MP4 (H.264 + AAC): {}",
                      out, ext, kHowToWrite));
    }
  }
  if (!image_format_name(ext).empty() || ext == ".bmp" || ext == ".tif" || ext == ".tiff" ||
      ext == ".webp") {
    return BadInput(fmt::format("{}: names a single image, and a render writes many frames; {}",
                                out, kHowToWrite));
  }
  if (ext.empty()) {
    return BadInput(
        fmt::format("{}: no extension and no such folder, so the output kind is ambiguous; {}", out,
                    kHowToWrite));
  }
  return BadInput(
      fmt::format("{}: {} is not an output format talkrender writes; {}", out, ext, kHowToWrite));
}

Status check_output_target(const OutputTarget& t, bool overwrite, const NamedPaths& inputs) {
  std::error_code ec;
  if (t.kind == OutputKind::kMp4) {
    if (path_exists(t.path)) {
      if (is_directory(t.path)) {
        return BadInput(t.path + ": is a folder; give a file name (NAME.mp4) for a video");
      }
      TR_RETURN_IF_ERROR(check_output_is_not_an_input(t.path, inputs));
      if (!overwrite) {
        return BadInput(t.path + ": the output exists; pass --overwrite to replace it");
      }
    }
    return check_can_create_in(parent_dir_of(t.path), t.path);
  }

  // Image sequence.
  if (!path_exists(t.path)) {
    // Made by the render: its parent must take a new folder.
    return check_can_create_in(parent_dir_of(t.path), t.display());
  }
  if (!is_directory(t.path)) return BadInput(t.path + ": exists and is not a folder");
  TR_RETURN_IF_ERROR(check_sequence_spares_inputs(t, inputs));
  int64_t ours = 0, others = 0;
  for (const auto& e : fs::directory_iterator(t.path, ec)) {
    const std::string name = e.path().filename().string();
    std::error_code type_ec;
    if (t.pattern.matches(name)) {
      if (!e.is_regular_file(type_ec) || e.is_symlink(type_ec)) {
        return BadInput(fmt::format(
            "{}: is named like a frame of the sequence {} but is not a regular file; move it "
            "away or choose another output",
            e.path().string(), t.pattern.text()));
      }
      ++ours;
    } else {
      ++others;
    }
  }
  if (ec) return RuntimeError(t.path + ": cannot list the folder: " + ec.message());
  const std::string staging = staging_dir_for(t.path);
  if (path_exists(staging) || path_exists(temp_path_for(staging))) {
    return RuntimeError(staging + ": exists (another render of this process id?); remove it");
  }
  if ((ours > 0 || others > 0) && !overwrite) {
    return BadInput(fmt::format(
        "{}: the folder exists and is not empty ({} files named {}, {} other entries); pass "
        "--overwrite to write the sequence into it: only files named {} are replaced, "
        "nothing else is touched",
        t.path, ours, t.pattern.text(), others, t.pattern.text()));
  }
  return check_can_create_in(t.path, t.display());
}

Result<std::shared_ptr<FrameSink>> open_output_sink(const OutputTarget& t,
                                                    const io::Mp4Options& mp4,
                                                    const io::ImageSequenceOptions& images) {
  if (t.kind == OutputKind::kMp4) {
    const bool replace = path_exists(t.path);
    const std::string staged = replace ? t.path + ".new-" + std::to_string(::getpid()) : "";
    TR_ASSIGN_OR_RETURN(std::unique_ptr<io::FrameWriter> writer,
                        io::create_mp4_writer(replace ? staged : t.path, mp4));
    return make_writer_sink(std::move(writer), t.path, staged);
  }
  io::ImageSequenceOptions o = images;
  o.format = t.format;
  const std::string ext = t.format == io::ImageFormat::kJpg ? ".jpg" : ".png";
  const bool folder_exists = path_exists(t.path);
  const bool default_names =
      t.pattern.prefix == "frame_" && t.pattern.width == 6 && t.pattern.suffix == ext;
  if (!folder_exists && default_names) {
    // A new folder: the writer fills a sibling and renames it into place when finished.
    TR_ASSIGN_OR_RETURN(std::unique_ptr<io::FrameWriter> writer,
                        io::create_image_sequence_writer(t.path, o));
    return make_writer_sink(std::move(writer), t.path);
  }
  bool created = false;
  if (!folder_exists) {
    std::error_code ec;
    created = fs::create_directory(t.path, ec);
    if (ec) return RuntimeError(t.path + ": cannot create the folder: " + ec.message());
  }
  const std::string staging = staging_dir_for(t.path);
  auto writer = io::create_image_sequence_writer(staging, o);
  if (!writer.ok()) {
    std::error_code ec;
    if (created) fs::remove(t.path, ec);
    return writer.error();
  }
  return std::shared_ptr<FrameSink>(
      std::make_shared<SequenceSink>(std::move(*writer), t, staging, ext, created));
}

std::shared_ptr<FrameSink> make_writer_sink(std::unique_ptr<io::FrameWriter> writer,
                                            std::string target, std::string staged) {
  return std::make_shared<WriterSink>(std::move(writer), std::move(target), std::move(staged));
}

}  // namespace tr::render
