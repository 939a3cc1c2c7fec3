// A render-farm job: the JSON a producer (talkrender submit, tools/farm_submit.py) puts in
// a Redis stream entry, parsed and checked before anything is read or written, and the
// paths it names resolved strictly inside the worker's roots. Untrusted input: the parser
// is fuzzed (fuzz/fuzz_farm_job.cc).
//
// Stream entry: field "job" = the JSON below; field "audio" (optional) = the audio file's
// bytes, at most kMaxInlineAudioBytes, when the job carries its audio.
//   {"id": "J1",              job id: 1-128 of [A-Za-z0-9._:-]
//    "avatar": "anna",        a package folder's name under the worker's --avatars
//    "audio": "talks/a.wav",  a file under --in-root (omit when the entry has "audio" bytes)
//    "out": "anna/a.mp4",     where to write, relative to --out-root (NAME.mp4, DIR/ or
//                             DIR/NAME_%06d.png, as render's --out)
//    "frames": 50, "batch": 1, "crf": 20, "format": "png", "precision": "fp32"}  optional
// Unknown fields are refused (a typo must not silently render something else).
//
// Errors: kBadInput naming the field (bad JSON, wrong types, a path that leaves its
// root); kRuntime for file system failures while resolving. No function here keeps state.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "render/render_job.h"

namespace tr::farm {

inline constexpr size_t kMaxJobJsonBytes = 64 * 1024;
inline constexpr size_t kMaxInlineAudioBytes = 16 * 1024 * 1024;

struct FarmJob {
  std::string id;
  std::string avatar;
  std::string audio;  // relative path under --in-root; empty: bytes in the entry
  std::string out;    // relative path under --out-root
  std::optional<int64_t> frames, batch, crf;
  std::string format, precision;  // empty: render's default

  // The job as canonical JSON (fields sorted, defaults left out), for manifests.
  std::string canonical_json() const;
};

// Parses and checks the "job" field. `inline_audio` says whether the entry carries audio
// bytes (then "audio" must be absent; otherwise it is required).
Result<FarmJob> parse_job(std::string_view json, bool inline_audio);

// Sets the render options the job names on *o (render/render_flags.h: the checks and
// messages of `render`'s flags of the same names).
Status apply_job_options(const FarmJob& job, render::RenderJobOptions* o);

// True when `name` is one path component of [A-Za-z0-9._-] (plus '%' when allowed), not
// "." or "..", at most 255 bytes.
bool is_safe_component(std::string_view name, bool allow_percent);

// Avatar `name` (one component) under `root`: the package folder's real path. Refused when
// it is not a plain name, does not exist, or resolves (through symlinks) outside `root`.
Result<std::string> resolve_avatar(const std::string& root, const std::string& name);
// A relative file path under `root` (components checked; resolves inside `root`; a file).
Result<std::string> resolve_input(const std::string& root, const std::string& rel);
// The output path for relative `rel` under `root`: no absolute path, no '..', every
// component safe. Missing folders on the way are created (each checked to stay inside
// `root`, so a symlink out is refused); the result is the real path of its folder + the
// last component (a trailing '/' kept: render's DIR/ form). An existing symlink at the
// final name is refused.
Result<std::string> prepare_output(const std::string& root, const std::string& rel);

// 64-bit FNV-1a as 16 hex digits: the manifest's fingerprint of inputs (not a defence
// against a forger: it tells a redelivered job from a different one with the same out).
std::string fnv1a64_hex(std::string_view bytes, uint64_t seed = 1469598103934665603ULL);
Result<std::string> fnv1a64_file_hex(const std::string& path);

}  // namespace tr::farm
