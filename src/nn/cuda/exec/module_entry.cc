// The one symbol libtalkrender_cuda.so exports (see module.h). Everything else in the
// module, the nn core copy and the static CUDA runtime included, is hidden.
#include "nn/cuda/exec/cuda_backend.h"
#include "nn/cuda/exec/module.h"

namespace {

const tr::nn::cuda::ModuleApi* module_api() {
  static const tr::nn::cuda::ModuleApi api = [] {
    tr::nn::cuda::ModuleApi a;
    a.device_description = &tr::nn::cuda::device_description;
    a.make_backend = &tr::nn::make_cuda_backend;
    return a;
  }();
  return &api;
}

}  // namespace

extern "C" __attribute__((visibility("default"))) const tr::nn::cuda::ModuleApi*
tr_nn_cuda_module_v1() {
  return module_api();
}
