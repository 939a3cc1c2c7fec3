// Finds and loads libtalkrender_cuda.so (module.h). Linked into talkrender itself, so it
// uses nothing of CUDA: dlopen, and a dlopen of the driver library to tell "no driver" apart
// from "no GPU" before the module's CUDA runtime is asked anything.
#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "nn/cuda/exec/module.h"

namespace tr::nn::cuda {
namespace {

// The directory of the running executable: the module is installed beside the binary.
std::string exe_dir() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  const std::string path(buf, static_cast<size_t>(n));
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

std::string dl_error() {
  const char* e = dlerror();
  std::string s = e ? e : "unknown dlopen error";
  // One line, whatever the loader said.
  for (char& c : s) {
    if (c == '\n') c = ' ';
  }
  return s;
}

Result<const ModuleApi*> load_once() {
  const char* override_path = std::getenv("TALKRENDER_CUDA_MODULE");
  const std::string path =
      override_path && *override_path ? std::string(override_path) : exe_dir() + "/" + kModuleFile;
  if (access(path.c_str(), F_OK) != 0) {
    return BadInput("backend 'cuda': the CUDA module is missing: no " + path +
                    " (it is built beside talkrender when CUDA is configured and must be "
                    "installed beside it)");
  }
  // Kept open for the life of the process: backends and executables point into it.
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    return BadInput("backend 'cuda': the CUDA module " + path +
                    " cannot load, the CUDA libraries it needs are missing: " + dl_error());
  }
  dlerror();
  auto entry = reinterpret_cast<ModuleEntryFn>(dlsym(handle, kModuleEntry));
  const ModuleApi* api = entry ? entry() : nullptr;
  if (!api || api->abi != kModuleAbi || api->sizeof_graph != sizeof(Graph) ||
      api->sizeof_tensor != sizeof(Tensor) || api->sizeof_error != sizeof(Error) ||
      !api->device_description || !api->make_backend) {
    return BadInput("backend 'cuda': " + path +
                    " is not the CUDA module of this build of talkrender (reinstall it from the "
                    "same build)");
  }
  // The CUDA runtime inside the module would report a missing driver as an "insufficient
  // driver"; say plainly that there is none.
  void* driver = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!driver) {
    return BadInput("backend 'cuda': no NVIDIA driver on this machine (" + dl_error() + ")");
  }
  return api;
}

}  // namespace

Result<const ModuleApi*> load_module() {
  // Loaded once; a failure is remembered too (the machine will not change under us).
  static const Result<const ModuleApi*> loaded = load_once();
  return loaded;
}

}  // namespace tr::nn::cuda
