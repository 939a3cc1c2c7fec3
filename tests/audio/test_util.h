// Helpers for the audio tests: shared data, temporary folders, WAV writing, running the
// Python reference and the ffmpeg CLI.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/tensor.h"

namespace tr::audio::test {

// <$TALKRENDER_SHARED or source/../shared/data>/<rel>, or "" when absent.
std::string shared_file(const std::string& rel);
// A fresh empty folder under the system temp dir, removed at process exit.
std::string temp_dir();
// Runs a shell command, returns its exit status; stdout+stderr go to *output if given.
int run_command(const std::string& cmd, std::string* output = nullptr);
bool have_program(const std::string& name);  // on PATH (or an absolute path that exists)
// /usr/bin/python3 with numpy (and torch/onnx when `with_torch`), else false.
bool have_reference_python(bool with_torch = false);
std::string source_root();
std::string build_dir();
// Writes a WAV file: 16-bit PCM (format 1) or 32-bit float (format 3).
void write_wav_pcm16(const std::string& path, const std::vector<float>& mono, int rate);
void write_wav_float(const std::string& path, const std::vector<float>& samples, int rate,
                     int channels);
float max_abs_diff(const Tensor& a, const Tensor& b);

}  // namespace tr::audio::test
