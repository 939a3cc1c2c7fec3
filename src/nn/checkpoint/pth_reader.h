// PyTorch checkpoints (.pth) without Python (issue 16): torch.save's zip format, read with
// libzip and a small pickle reader that understands only what state dicts hold.
//
// What it reads: a zip whose `<prefix>/data.pkl` is a pickle (protocol 2) of a dict /
// OrderedDict of tensors (SyncTalk_2D's bare state_dict), or a dict holding such a dict
// under "state_dict" / "model_state_dict" / "model" / "net" / "generator" / "net_g" / "netG" /
// "params_ema" / "params" (Ultralight's {"epoch", "model", "optimizer"}: the optimizer's
// state is parsed and left alone). The tensors are `torch._utils._rebuild_tensor_v2` calls
// (or `_rebuild_parameter`) on `<prefix>/data/<key>` storages; offsets and strides are
// honoured (slices, transposes, stride-0 expands) and every tensor comes out contiguous
// float32: FloatStorage as is, HalfStorage / BFloat16Storage widened exactly, DoubleStorage
// rounded. Tensors of integer or bool storages (BatchNorm's int64 `num_batches_tracked`) and
// non-tensor values in the chosen dict are left out of the StateDict: a graph needs only
// float weights. Checked against what Debian's torch 1.13 writes (tests/nn/pth_reader_test.cc).
//
// Safety: the pickle reader executes nothing. GLOBAL/STACK_GLOBAL names outside a fixed
// allow-list (collections.OrderedDict, torch._utils._rebuild_tensor_v2,
// torch._utils._rebuild_parameter[_with_state], torch.<Float|Half|...>Storage) are errors,
// as are a legacy (pre-zip) file, a storage shorter than its tensor's view, a truncated zip,
// and anything that is not a zip at all. Every error is kBadInput, one line, naming the file
// (and the tensor, where there is one), except out-of-memory (kRuntime). Sizes are bounded
// by the file's: the pickle's values, stack and memo, the storages read (16x the file) and
// the float tensors made (32x), so no input can exhaust memory or time. Never throws or
// crashes on any input (fuzz target fuzz/fuzz_pth.cc).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"

namespace tr::nn {

// The float tensors of a state dict, in the file's order (a repeated key keeps its first
// place and its last value, as in Python), all float32 and contiguous.
struct StateDict {
  std::vector<std::pair<std::string, Tensor>> entries;
  // nullptr when absent.
  const Tensor* find(const std::string& name) const;
};

// Reads the state dict in the .pth file at `path` (a 48 MB file loads in about 0.15 s).
Result<StateDict> read_pth(const std::string& path);
// The same from the file's bytes; `name` is used in messages.
Result<StateDict> read_pth_bytes(std::string_view bytes, const std::string& name);

}  // namespace tr::nn
