// Helpers shared by the talkrender subcommands (each still lives in its own cmd_*.cc):
// one-line usage errors, FFmpeg's log level, and matrix outputs (.npy or .bin) checked
// before any work.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "common/status.h"
#include "common/tensor.h"

namespace tr::cli {

// Parses argv into `app`. Returns -1 to go on; otherwise the exit code: 0 after --help
// (printed on stdout), 2 after a usage error, printed as the one line
// "talkrender CMD: <what is wrong> (see talkrender CMD --help)".
int parse_args(CLI::App& app, int argc, char** argv);

// Prints "talkrender CMD: <message>" on stderr and returns the error's exit code.
int report_error(const CLI::App& app, const Error& e);

// Adds --verbose: FFmpeg's own log on stderr (quiet otherwise, since talkrender reports
// errors itself). Call apply_verbose() after parsing.
void add_verbose_flag(CLI::App& app, bool* verbose);
void apply_verbose(bool verbose);

// The avatar options of render, bench and inspect: --package DIR (an mp4_video_package)
// or --dataset DIR (a SyncTalk_2D / Ultralight dataset folder: full_body_img/, landmarks/,
// aud_*.npy), mutually exclusive; io::open_avatar opens either. check_avatar_options
// (after parsing) says when neither was given.
void add_avatar_options(CLI::App& app, std::string* package_dir, std::string* dataset_dir);
Status check_avatar_options(const std::string& package_dir, const std::string& dataset_dir);

// What `--precision auto` runs on the cpu backend (nn::resolve_precision decides it), for the
// --precision help of every subcommand that has the option.
inline constexpr const char* kCpuAutoPrecision =
    "bf16 where the cpu runs it faster than fp32 (AMX, or AMD's AVX512_BF16), else fp32";

// Matrix outputs of `mel` and `features`, written as their extension says: .npy, or .bin
// (raw float32 little-endian, row-major) with a .json sidecar {"shape": [...]} beside it
// (the layout render --features reads). Anything else is refused before any work, as is a
// folder that does not take new files. With `rows_are_frames` the sidecar also holds
// "num_frames" and "feature_size", as the sample package's aud_ave.json does.
Status check_matrix_output(const std::string& out_path);
Status write_matrix(const std::string& out_path, const Tensor& t, bool rows_are_frames = false);

}  // namespace tr::cli
