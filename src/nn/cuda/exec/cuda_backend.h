// Entry points of the CUDA backend beyond the Backend interface, for tools that measure it
// (talkrender-nn). Plain C++: no CUDA header needed to call them.
#pragma once

#include <string>

#include "common/status.h"
#include "nn/backend.h"

namespace tr::nn::cuda {

// The device's name and compute capability, e.g. "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs)";
// an error when no device is usable.
Result<std::string> device_description();

// Device time of one compiled run without the host copies (the captured graph replayed
// back to back, timed with events): the median over `repeats` of the mean over `iters`
// replays, in ms. `exe` must come from make_cuda_backend() and have run at least once.
Result<double> compute_ms(Executable& exe, int iters, int repeats);

// The plan's one-line summary (steps, arena size) of a compiled executable.
std::string plan_summary(const Executable& exe);

}  // namespace tr::nn::cuda
