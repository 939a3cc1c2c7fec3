// Where a render's frames go, decided from the --out name as ffmpeg decides it, and how
// they get there without ever touching a file that is not ours.
//
// Output kinds (resolve_output):
//   NAME.mp4                      an MP4 video (H.264 + AAC); other containers (.mov, .mkv,
//                                 .webm, ...) are refused with the list of what we write
//   DIR/ or an existing folder    an image sequence DIR/frame_000000.png, frame_000001.png ...
//                                 (.jpg with --format jpg)
//   DIR/NAME_%05d.png             an image sequence named by the pattern (%d, %0Nd; numbered
//                                 from 0), in the format of its extension (png, jpg, jpeg);
//                                 the folder must exist
//   anything else                 refused, saying how to write a video or a sequence
// --format that contradicts the name (an MP4, or a pattern's extension) is an error.
//
// Replacing (check_output_target, open_output_sink):
//   * an MP4 that exists is replaced only with --overwrite, after the render succeeds (the
//     new file is staged beside it and renamed over it);
//   * a folder that does not exist is created; an empty folder is used;
//   * a folder holding anything is written into only with --overwrite, and then only files
//     named by the sequence's pattern are replaced (and those beyond the new frame count
//     removed), after the render succeeds. No other file or folder is ever removed,
//     whatever the flags: not in the current directory, not beside an input.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "io/frame_writer.h"
#include "render/render.h"

namespace tr::render {

enum class OutputKind { kMp4, kImageSequence };

// The printf-like name of a sequence's frames, "PREFIX%0Nd SUFFIX"; built and matched by
// hand, so a user's pattern is never given to printf.
struct FramePattern {
  std::string prefix, suffix;  // '%%' already turned into '%'
  int width = 0;               // minimum digits (zero-padded); 0 = no padding
  std::string name(int64_t index) const;
  // True when `file_name` is name(i) for some i >= 0 (exactly: padding included).
  bool matches(const std::string& file_name, int64_t* index = nullptr) const;
  std::string text() const;  // as the user would write it, e.g. "frame_%06d.png"
};

struct OutputTarget {
  OutputKind kind = OutputKind::kMp4;
  std::string path;  // MP4: the file; sequence: the folder (no trailing slash)
  // Sequences only.
  FramePattern pattern;
  io::ImageFormat format = io::ImageFormat::kPng;
  std::string display() const;  // "out.mp4" or "frames/frame_%06d.png"
};

// Decides the output from `out` (the --out value) and `format` (--format; empty when not
// given). kBadInput for names we cannot or will not write, saying what to write instead.
Result<OutputTarget> resolve_output(const std::string& out, const std::string& format);

// The render's inputs, as (flag, path): the output must not replace any of them.
using NamedPaths = std::vector<std::pair<std::string, std::string>>;

// Checked first, on the raw --out value: when it names an existing file (not a folder)
// that is or holds one of `inputs`, kBadInput saying so (whatever its extension).
Status check_output_is_not_an_input(const std::string& out, const NamedPaths& inputs);

// Checks, before any work, that the target may be written: --overwrite when something of
// ours would be replaced, no input replaced, nothing in the way that is not ours, and that
// the folder it goes into exists and takes new files. kBadInput for the user's choices,
// kRuntime for file system failures (with the system's reason).
Status check_output_target(const OutputTarget& t, bool overwrite, const NamedPaths& inputs);

// The pipeline's sink for `t`: the writer aims at a staging name when something is to be
// replaced, and finish() publishes (see the top of this file). abort(), a failed finish()
// or destroying the sink unfinished leaves the target as it was.
Result<std::shared_ptr<FrameSink>> open_output_sink(const OutputTarget& t,
                                                    const io::Mp4Options& mp4,
                                                    const io::ImageSequenceOptions& images);

// A FrameSink over an io::FrameWriter writing `target`. With `staged` set the writer wrote
// there and finish() renames it over `target` (a file; see run_render_job).
std::shared_ptr<FrameSink> make_writer_sink(std::unique_ptr<io::FrameWriter> writer,
                                            std::string target, std::string staged = "");

// The x264 presets --preset accepts, in order, space-separated (for messages and --help).
const char* x264_preset_list();
bool is_x264_preset(const std::string& name);

}  // namespace tr::render
