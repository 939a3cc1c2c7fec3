// The boundary between talkrender and its CUDA module (libtalkrender_cuda.so).
//
// Why a module: an executable that links cuBLASLt does not start on a machine without the
// CUDA toolkit (the loader fails before main), and a CPU render would map cuBLASLt's code
// for nothing. So the CUDA executor (cuda_backend.cc, kernels.cu, the static CUDA runtime)
// is built into a separate shared module that Session loads with dlopen only when the cuda
// backend is asked for. talkrender links no CUDA library; talkrender-nn still links the
// executor statically (it is the lean runner for GPU machines).
//
// The module exports one C symbol, kModuleEntry, returning a ModuleApi. The table holds C++
// function pointers: module and binary come from the same build (the module carries its own
// hidden copy of the nn core it needs), and the abi/size fields catch a module from another
// build sitting beside the binary.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"
#include "nn/backend.h"
#include "nn/graph.h"
#include "nn/nn.h"

namespace tr::nn::cuda {

// Bump when ModuleApi or the types crossing it change.
constexpr uint32_t kModuleAbi = 1;
constexpr const char* kModuleEntry = "tr_nn_cuda_module_v1";
constexpr const char* kModuleFile = "libtalkrender_cuda.so";

struct ModuleApi {
  uint32_t abi = kModuleAbi;
  // sizeof of the types passed across, as the module saw them.
  uint32_t sizeof_graph = sizeof(Graph);
  uint32_t sizeof_tensor = sizeof(Tensor);
  uint32_t sizeof_error = sizeof(Error);
  // As in cuda_backend.h / backend.h.
  Result<std::string> (*device_description)() = nullptr;
  std::unique_ptr<Backend> (*make_backend)(Precision precision) = nullptr;
};

// The module's entry point: extern "C" const ModuleApi* tr_nn_cuda_module_v1();
using ModuleEntryFn = const ModuleApi* (*)();

// In talkrender (not in the module): loads the module once per process and checks that the
// machine can run it. The module is `libtalkrender_cuda.so` in the directory of the running
// executable (/proc/self/exe), or the file named by $TALKRENDER_CUDA_MODULE. Errors are
// kBadInput (exit 2), one line naming what is missing: the module, the CUDA libraries it
// needs, or the NVIDIA driver. (No GPU is reported by device_description().)
Result<const ModuleApi*> load_module();

}  // namespace tr::nn::cuda
