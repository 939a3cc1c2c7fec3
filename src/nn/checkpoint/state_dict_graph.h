// A runtime Graph built from a PyTorch state dict (issue 16): `--generator X.pth` and
// `--audio-encoder X.pth` run without an ONNX export.
//
// What it recognises (docs/model-contract.md, sections 2 and 4), from tensor names and shapes
// only; the parameter names are those of the reference modules (SyncTalk_2D's unet_328.py /
// unet.py, Ultralight-Digital-Human's unet.py, SyncTalk_2D's audio encoder):
//   - the generator, S = 320 (down1..down5) or S = 160 (down1..down4), with the channel widths
//     read from the weights (any widths, e.g. Ultralight's (16..256) "mobile" setting);
//   - its audio path, chosen by the audio input's channel count (audio_model.conv1's input):
//     32 SyncTalk_2D ave [32,16,16] or hubert [32,32,32], 256 SyncTalk_2D wenet [256,16,32],
//     16 Ultralight hubert [16,32,32], 128 Ultralight wenet [128,16,32];
//   - the ave audio encoder (`audio_encoder.N.conv_block.*`, or the same keys without the
//     `audio_encoder.` prefix as SyncTalk_2D ships it).
// `module.` prefixes (DataParallel) are ignored, `*.num_batches_tracked` too.
//
// The graph is what the ONNX exports hold, minus the exporter's Pad-to-skip-size chain (a
// no-op at these sizes): inputs `input` [-1,6,S,S] and `audio` [-1,C,H,W] (the encoder: `mel`
// [-1,1,80,16]), output `output`; BatchNormalization nodes are kept for the load passes to
// fold, so a .pth and the ONNX export of the same weights run the same plan.
//
// Errors are kBadInput, one line, naming the file and the tensor: a missing or extra tensor,
// a wrong shape, an unknown audio layout, or a state dict of something else entirely.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "nn/checkpoint/pth_reader.h"
#include "nn/graph.h"

namespace tr::nn {

struct StateDictGraphOptions {
  // SyncTalk_2D's ave and hubert generators have the same tensors (only audio_model.conv3's
  // stride differs), so the weights cannot tell them apart: "ave" or "hubert" picks one; ""
  // means hubert when the file's or its folder's name contains "hubert", otherwise ave
  // (SyncTalk_2D's default).
  // Ignored for the other layouts, whose audio input is told by its channel count.
  std::string audio_mode;
};

// What was recognised.
struct StateDictModelInfo {
  std::string family;      // "SyncTalk_2D generator", "Ultralight generator", "audio encoder"
  int size = 0;            // S (generators)
  std::string audio_mode;  // "ave", "hubert", "wenet" (generators)
  bool audio_mode_guessed = false;  // ave/hubert chosen by the rule above, not by the weights
  Shape audio_shape;                // without the batch dimension
  std::vector<int64_t> widths;      // the trunk's channel widths (generators)
  // e.g. "SyncTalk_2D generator S=320, audio ave [32, 16, 16], widths 32/64/128/256/512".
  std::string describe() const;
};

// Builds the graph; `name` (the file) is used in messages and as the graph's name.
Result<Graph> graph_from_state_dict(const StateDict& sd, const std::string& name,
                                    const StateDictGraphOptions& opts = {},
                                    StateDictModelInfo* info = nullptr);

}  // namespace tr::nn
