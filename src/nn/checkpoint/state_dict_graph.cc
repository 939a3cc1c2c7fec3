#include "nn/checkpoint/state_dict_graph.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <unordered_map>

namespace tr::nn {

namespace {

// nn.BatchNorm2d's default; none of the reference modules changes it.
constexpr float kBnEpsilon = 1e-5f;

bool starts_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(0, p.size(), p) == 0;
}
bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

// A value flowing through the graph and its channel count.
struct Flow {
  ValueId v = kNoId;
  int64_t c = 0;
};

struct ConvSpec {
  int64_t cout = 0, kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0, group = 1;
  bool bias = false;
};

// Looks tensors up by module name, turns them into graph constants, and remembers which were
// used, so that what is left over at the end is an "extra tensor" error. Every shape is
// checked where the tensor is consumed, against what the tensors before it imply, so an
// error names the first tensor that disagrees.
class Builder {
 public:
  Builder(const StateDict& sd, const std::string& file) : sd_(sd), file_(file) {
    for (size_t i = 0; i < sd.entries.size(); ++i) {
      std::string key = sd.entries[i].first;
      // DataParallel's prefix: the module names below it are the same.
      if (starts_with(key, "module.")) key = key.substr(7);
      index_.emplace(std::move(key), i);
    }
    used_.assign(sd.entries.size(), false);
    g_.name = file;
    g_.opset = 17;
  }

  // Keys are looked up as key_prefix + name (the encoder's keys come with or without
  // "audio_encoder.").
  void set_key_prefix(std::string p) { key_prefix_ = std::move(p); }
  // What the file was recognised as, for messages ("a SyncTalk_2D generator S=320").
  void set_what(std::string w) { what_ = std::move(w); }
  const std::string& file() const { return file_; }
  Graph& graph() { return g_; }

  const Tensor* peek(const std::string& name) const {
    auto it = index_.find(key_prefix_ + name);
    return it == index_.end() ? nullptr : &sd_.entries[it->second].second;
  }
  bool has(const std::string& name) const { return peek(name) != nullptr; }

  Error missing(const std::string& name, const Shape& expected) const {
    // A width only the missing tensor itself would have told (-1) is left out.
    const bool known =
        std::all_of(expected.begin(), expected.end(), [](int64_t d) { return d > 0; });
    return BadInput(file_ + ": tensor '" + key_prefix_ + name + "' " +
                    (known ? shape_str(expected) + " " : "") + "missing (" + what_ + " has it)");
  }
  Error wrong_shape(const std::string& name, const Shape& got, const Shape& expected) const {
    return BadInput(file_ + ": tensor '" + key_prefix_ + name + "' has shape " + shape_str(got) +
                    ", expected " + shape_str(expected) + " (" + what_ + ")");
  }

  // The tensor `name` of shape `expected`, as a graph constant.
  Result<ValueId> param(const std::string& name, const Shape& expected) {
    auto it = index_.find(key_prefix_ + name);
    if (it == index_.end()) return missing(name, expected);
    const Tensor& t = sd_.entries[it->second].second;
    if (t.shape() != expected) return wrong_shape(name, t.shape(), expected);
    if (t.dtype() != DType::kFloat32) {
      return BadInput(file_ + ": tensor '" + key_prefix_ + name + "' is " + dtype_name(t.dtype()) +
                      ", expected float32");
    }
    used_[it->second] = true;
    // Constants share the state dict's buffers: no copy of the weights is made here.
    return g_.add_constant(key_prefix_ + name, t);
  }

  ValueId input(const std::string& name, Shape shape) {
    Value v;
    v.name = name;
    v.shape = std::move(shape);
    v.shape_known = true;
    const ValueId id = g_.add_value(std::move(v));
    g_.inputs.push_back(id);
    return id;
  }

  // A node of `op` reading `inputs`, with one new output value; its name says which module
  // (and op) it is, as the exporter's node names do.
  ValueId node(OpKind op, const std::string& module, std::vector<ValueId> inputs,
               std::map<std::string, AttrValue> attrs = {}, const std::string& out_name = "") {
    Node n;
    n.op = op;
    n.name = "/" + module + "/" + op_name(op) + "_" + std::to_string(g_.nodes.size());
    n.inputs = std::move(inputs);
    n.attrs = std::move(attrs);
    Value v;
    v.name = out_name.empty() ? n.name + "_output_0" : out_name;
    n.outputs.push_back(g_.add_value(std::move(v)));
    const ValueId out = n.outputs[0];
    g_.add_node(std::move(n));
    return out;
  }

  Result<Flow> conv(Flow x, const std::string& module, const ConvSpec& s) {
    TR_ASSIGN_OR_RETURN(const ValueId w,
                        param(module + ".weight", {s.cout, x.c / s.group, s.kh, s.kw}));
    std::vector<ValueId> ins = {x.v, w};
    if (s.bias) {
      TR_ASSIGN_OR_RETURN(const ValueId b, param(module + ".bias", {s.cout}));
      ins.push_back(b);
    }
    std::map<std::string, AttrValue> attrs;
    attrs["kernel_shape"] = std::vector<int64_t>{s.kh, s.kw};
    attrs["strides"] = std::vector<int64_t>{s.sh, s.sw};
    attrs["pads"] = std::vector<int64_t>{s.ph, s.pw, s.ph, s.pw};
    attrs["dilations"] = std::vector<int64_t>{1, 1};
    attrs["group"] = s.group;
    return Flow{node(OpKind::kConv, module, std::move(ins), std::move(attrs)), s.cout};
  }

  // Kept as a node: the load passes fold it into the conv before it, exactly as they fold
  // the BatchNormalization of an export made with BN kept.
  Result<Flow> batchnorm(Flow x, const std::string& module) {
    std::vector<ValueId> ins = {x.v};
    for (const char* p : {".weight", ".bias", ".running_mean", ".running_var"}) {
      TR_ASSIGN_OR_RETURN(const ValueId v, param(module + p, {x.c}));
      ins.push_back(v);
    }
    return Flow{node(OpKind::kBatchNormalization, module, std::move(ins),
                     {{"epsilon", AttrValue(kBnEpsilon)}, {"momentum", AttrValue(0.9f)}}),
                x.c};
  }

  Flow relu(Flow x, const std::string& module) { return {node(OpKind::kRelu, module, {x.v}), x.c}; }

  // The output channels a module declares: dim 0 of its weight `name` (-1 when the tensor is
  // missing or not a conv weight; param() then reports it).
  int64_t declared_out(const std::string& name) const {
    const Tensor* t = peek(name);
    return t && t->rank() == 4 ? t->dim(0) : -1;
  }

  // InvertedResidual(cin, cout, stride, res, expand_ratio=2): 1x1 expand + BN + ReLU,
  // 3x3 depthwise + BN + ReLU, 1x1 project + BN, plus the input when `res`. `cout` < 0:
  // read from the weights (conv.6). Every reference module uses expand ratio 2.
  Result<Flow> inverted_residual(Flow x, const std::string& m, int64_t sh, int64_t sw, bool res,
                                 int64_t cout = -1) {
    const int64_t hidden = 2 * x.c;
    if (cout < 0) cout = declared_out(m + ".conv.6.weight");
    if (cout < 0 && res) cout = x.c;  // else param() names the missing or malformed tensor
    if (res && cout != x.c) {
      const Tensor* t = peek(m + ".conv.6.weight");
      return wrong_shape(m + ".conv.6.weight", t ? t->shape() : Shape{}, {x.c, hidden, 1, 1});
    }
    Flow y = x;
    TR_ASSIGN_OR_RETURN(y, conv(y, m + ".conv.0", {.cout = hidden}));
    TR_ASSIGN_OR_RETURN(y, batchnorm(y, m + ".conv.1"));
    y = relu(y, m + ".conv.2");
    TR_ASSIGN_OR_RETURN(y, conv(y, m + ".conv.3",
                                {.cout = hidden,
                                 .kh = 3,
                                 .kw = 3,
                                 .sh = sh,
                                 .sw = sw,
                                 .ph = 1,
                                 .pw = 1,
                                 .group = hidden}));
    TR_ASSIGN_OR_RETURN(y, batchnorm(y, m + ".conv.4"));
    y = relu(y, m + ".conv.5");
    TR_ASSIGN_OR_RETURN(y, conv(y, m + ".conv.6", {.cout = cout}));
    TR_ASSIGN_OR_RETURN(y, batchnorm(y, m + ".conv.7"));
    if (res) y.v = node(OpKind::kAdd, m, {x.v, y.v});
    return y;
  }

  // DoubleConvDW: a block with the stride, then a residual block at its output width.
  Result<Flow> stage(Flow x, const std::string& m, int64_t stride) {
    TR_ASSIGN_OR_RETURN(Flow y, inverted_residual(x, m + ".double_conv.0", stride, stride, false));
    return inverted_residual(y, m + ".double_conv.1", 1, 1, true);
  }

  // Every tensor of the file was used (BatchNorm's num_batches_tracked aside).
  Status check_all_used() const {
    std::vector<size_t> extra;
    for (size_t i = 0; i < used_.size(); ++i) {
      if (!used_[i] && !ends_with(sd_.entries[i].first, ".num_batches_tracked")) {
        extra.push_back(i);
      }
    }
    if (extra.empty()) return Status::Ok();
    const auto& [key, t] = sd_.entries[extra[0]];
    std::string msg =
        file_ + ": tensor '" + key + "' " + shape_str(t.shape()) + " is not part of " + what_;
    if (extra.size() > 1) msg += " (and " + std::to_string(extra.size() - 1) + " more)";
    return BadInput(msg);
  }

 private:
  const StateDict& sd_;
  std::string file_;
  std::string key_prefix_;
  std::string what_ = "the model";
  std::unordered_map<std::string, size_t> index_;
  std::vector<bool> used_;
  Graph g_;
};

std::string lower(std::string s) {
  for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

// The audio path's layout from its input channel count (contract, section 2). The conv3
// stride brings every layout to 16x16, so conv5 (stride 2, pad 3) makes the 10x10 the image
// path's deepest map has.
struct AudioLayout {
  std::string mode;
  Shape shape;  // [C, H, W]
  int64_t conv3_sh = 1, conv3_sw = 1;
  bool ultralight = false;
  // Whether audio_model.conv1 / conv2 add their input (use_res_connect): fixed per layout in
  // the references, and not derivable from shapes (Ultralight's narrow wenet has a 128 -> 128
  // conv1 without one).
  bool res1 = false, res2 = false;
};

// `conv3`: audio_model.conv3.weight, or nullptr.
Result<AudioLayout> audio_layout(int64_t channels, const Tensor* conv3, const std::string& file,
                                 const StateDictGraphOptions& opts, bool* guessed) {
  *guessed = false;
  switch (channels) {
    case 32: {
      std::string mode = opts.audio_mode;
      if (mode.empty()) {
        *guessed = true;
        // The file's or its folder's name (SyncTalk_2D users name runs by their features).
        const std::filesystem::path p(file);
        const std::string names =
            lower(p.parent_path().filename().string() + "/" + p.filename().string());
        mode = names.find("hubert") != std::string::npos ? "hubert" : "ave";
      }
      if (mode == "ave") return AudioLayout{"ave", {32, 16, 16}, 1, 1, false, false, false};
      if (mode == "hubert") return AudioLayout{"hubert", {32, 32, 32}, 2, 2, false, false, false};
      return BadInput(file + ": audio mode '" + mode + "' does not fit a generator whose audio " +
                      "input has 32 channels (ave or hubert)");
    }
    case 256:  // SyncTalk_2D: two residual blocks at 256, then conv3 256 -> 256
      return AudioLayout{"wenet", {256, 16, 32}, 1, 2, false, true, true};
    case 16:
      return AudioLayout{"hubert", {16, 32, 32}, 2, 2, true, false, false};
    case 128: {
      // Ultralight's unet.py: block 128 -> c3, residual block at c3, conv3 c3 -> c3. An earlier
      // revision had two residual blocks at 128 and conv3 128 -> 256; conv3 changing the width
      // tells that one apart.
      const int64_t c3_out = conv3 && conv3->rank() == 4 ? conv3->dim(0) : -1;
      const int64_t c3_in = conv3 && conv3->rank() == 4 ? conv3->dim(1) : -1;
      const bool early = c3_in == 128 && c3_out != c3_in;
      return AudioLayout{"wenet", {128, 16, 32}, 1, 2, true, early, true};
    }
    default:
      return BadInput(file +
                      ": tensor 'audio_model.conv1.conv.0.weight' says the audio input has " +
                      std::to_string(channels) +
                      " channels, not a known layout (32: ave/hubert, 256: wenet; Ultralight 16: "
                      "hubert, 128: wenet)");
  }
}

// The output width `name` declares, or the references' one (for the message when it is
// missing).
int64_t declared_or(const Builder& b, const std::string& name, int64_t reference) {
  const int64_t c = b.declared_out(name);
  return c > 0 || b.has(name) ? c : reference;
}

Status build_generator(Builder& b, const StateDictGraphOptions& opts, StateDictModelInfo& info) {
  // S = 320 has a fifth level (unet_328.py); S = 160 (unet.py) has four.
  const bool s320 = b.has("down5.maxpool_conv.0.double_conv.0.conv.0.weight") ||
                    b.has("up5.conv.double_conv.0.conv.0.weight");
  const int levels = s320 ? 5 : 4;
  const int64_t S = s320 ? 320 : 160;
  const std::string a0 = "audio_model.conv1.conv.0.weight";
  const Tensor* at = b.peek(a0);
  b.set_what("a generator S=" + std::to_string(S));
  if (!at) return b.missing(a0, {64, 32, 1, 1});
  if (at->rank() != 4 || at->dim(2) != 1 || at->dim(3) != 1) {
    return b.wrong_shape(a0, at->shape(), {at->rank() ? at->dim(0) : 64, 32, 1, 1});
  }
  bool guessed = false;
  TR_ASSIGN_OR_RETURN(
      const AudioLayout al,
      audio_layout(at->dim(1), b.peek("audio_model.conv3.weight"), b.file(), opts, &guessed));
  info.family = al.ultralight ? "Ultralight generator" : "SyncTalk_2D generator";
  info.size = static_cast<int>(S);
  info.audio_mode = al.mode;
  info.audio_mode_guessed = guessed;
  info.audio_shape = al.shape;
  b.set_what((al.ultralight ? "an " : "a ") + info.family + " S=" + std::to_string(S) + ", audio " +
             al.mode);

  // Image path: inc, then the stride-2 stages; every level's output is a skip.
  const ValueId image = b.input("input", {-1, 6, S, S});
  std::vector<Flow> skips;
  TR_ASSIGN_OR_RETURN(Flow x, b.inverted_residual({image, 6}, "inc.inconv.0", 1, 1, false));
  skips.push_back(x);
  for (int k = 1; k <= levels; ++k) {
    TR_ASSIGN_OR_RETURN(x, b.stage(x, "down" + std::to_string(k) + ".maxpool_conv.0", 2));
    skips.push_back(x);
  }
  // Widths as the reference code's `ch` list: S = 320's down1 keeps ch[0].
  info.widths.clear();
  for (size_t i = 0; i < skips.size(); ++i) {
    if (!(s320 && i == 1)) info.widths.push_back(skips[i].c);
  }

  // Audio path.
  Shape audio_shape = {-1};
  audio_shape.insert(audio_shape.end(), al.shape.begin(), al.shape.end());
  Flow a{b.input("audio", audio_shape), al.shape[0]};
  TR_ASSIGN_OR_RETURN(a, b.inverted_residual(a, "audio_model.conv1", 1, 1, al.res1));
  TR_ASSIGN_OR_RETURN(a, b.inverted_residual(a, "audio_model.conv2", 1, 1, al.res2));
  TR_ASSIGN_OR_RETURN(a, b.conv(a, "audio_model.conv3",
                                {.cout = declared_or(b, "audio_model.conv3.weight", info.widths[3]),
                                 .kh = 3,
                                 .kw = 3,
                                 .sh = al.conv3_sh,
                                 .sw = al.conv3_sw,
                                 .ph = 1,
                                 .pw = 1,
                                 .bias = true}));
  TR_ASSIGN_OR_RETURN(a, b.batchnorm(a, "audio_model.bn3"));
  a = b.relu(a, "audio_model.relu");
  TR_ASSIGN_OR_RETURN(a, b.inverted_residual(a, "audio_model.conv4", 1, 1, true));
  TR_ASSIGN_OR_RETURN(a, b.conv(a, "audio_model.conv5",
                                {.cout = declared_or(b, "audio_model.conv5.weight", info.widths[4]),
                                 .kh = 3,
                                 .kw = 3,
                                 .sh = 2,
                                 .sw = 2,
                                 .ph = 3,
                                 .pw = 3,
                                 .bias = true}));
  TR_ASSIGN_OR_RETURN(a, b.batchnorm(a, "audio_model.bn5"));
  a = b.relu(a, "audio_model.relu_1");
  TR_ASSIGN_OR_RETURN(a, b.inverted_residual(a, "audio_model.conv6", 1, 1, true));
  TR_ASSIGN_OR_RETURN(a, b.inverted_residual(a, "audio_model.conv7", 1, 1, true));

  // Fuse the deepest image map with the audio map, then decode with the skips.
  Flow deepest = skips.back();
  skips.pop_back();
  x = {b.node(OpKind::kConcat, "fuse", {deepest.v, a.v}, {{"axis", AttrValue(int64_t{1})}}),
       deepest.c + a.c};
  TR_ASSIGN_OR_RETURN(x, b.stage(x, "fuse_conv.0", 1));
  TR_ASSIGN_OR_RETURN(x, b.stage(x, "fuse_conv.1", 1));
  const ValueId scales = b.graph().add_constant("up_scales", Tensor::f32({4}, {1, 1, 2, 2}));
  for (int k = 1; k <= levels; ++k) {
    const std::string up = "up" + std::to_string(k);
    // nn.Upsample(scale_factor=2, bilinear, align_corners=True), as the exporter writes it;
    // the F.pad to the skip's size that follows in the reference is a no-op here.
    const ValueId u =
        b.node(OpKind::kResize, up + ".up", {x.v, kNoId, scales},
               {{"mode", AttrValue(std::string("linear"))},
                {"coordinate_transformation_mode", AttrValue(std::string("align_corners"))},
                {"cubic_coeff_a", AttrValue(-0.75f)},
                {"nearest_mode", AttrValue(std::string("floor"))}});
    const Flow skip = skips.back();
    skips.pop_back();
    x = {b.node(OpKind::kConcat, up, {u, skip.v}, {{"axis", AttrValue(int64_t{1})}}), x.c + skip.c};
    TR_ASSIGN_OR_RETURN(x, b.stage(x, up + ".conv", 1));
  }
  TR_ASSIGN_OR_RETURN(x, b.conv(x, "outc.conv", {.cout = 3, .bias = true}));
  const ValueId out = b.node(OpKind::kSigmoid, "sigmoid", {x.v}, {}, "output");
  b.graph().outputs.push_back(out);
  return Status::Ok();
}

// The ave audio encoder (contract, section 4): 13 conv + BN (+ residual) + ReLU layers.
struct EncoderLayer {
  int64_t cin, cout, k, sh, sw, pad;
  bool res;
};
constexpr EncoderLayer kEncoder[] = {
    {1, 32, 3, 1, 1, 1, false},    {32, 32, 3, 1, 1, 1, true},   {32, 32, 3, 1, 1, 1, true},
    {32, 64, 3, 3, 1, 1, false},   {64, 64, 3, 1, 1, 1, true},   {64, 64, 3, 1, 1, 1, true},
    {64, 128, 3, 3, 3, 1, false},  {128, 128, 3, 1, 1, 1, true}, {128, 128, 3, 1, 1, 1, true},
    {128, 256, 3, 3, 2, 1, false}, {256, 256, 3, 1, 1, 1, true}, {256, 512, 3, 1, 1, 0, false},
    {512, 512, 1, 1, 1, 0, false},
};

Status build_encoder(Builder& b, StateDictModelInfo& info) {
  info.family = "audio encoder";
  b.set_what("an audio encoder");
  Flow x{b.input("mel", {-1, 1, 80, 16}), 1};
  for (size_t i = 0; i < std::size(kEncoder); ++i) {
    const EncoderLayer& l = kEncoder[i];
    // Names below the Sequential; the builder adds "audio_encoder." where the file has it.
    const std::string m = std::to_string(i);
    Flow y;
    TR_ASSIGN_OR_RETURN(y, b.conv(x, m + ".conv_block.0",
                                  {.cout = l.cout,
                                   .kh = l.k,
                                   .kw = l.k,
                                   .sh = l.sh,
                                   .sw = l.sw,
                                   .ph = l.pad,
                                   .pw = l.pad,
                                   .bias = true}));
    TR_ASSIGN_OR_RETURN(y, b.batchnorm(y, m + ".conv_block.1"));
    if (l.res) y.v = b.node(OpKind::kAdd, m, {y.v, x.v});
    x = b.relu(y, m + ".act");
  }
  // [B, 512, 1, 1] -> [B, 512] (the reference's squeeze(2).squeeze(2)).
  const ValueId out =
      b.node(OpKind::kFlatten, "flatten", {x.v}, {{"axis", AttrValue(int64_t{1})}}, "output");
  b.graph().outputs.push_back(out);
  return Status::Ok();
}

}  // namespace

std::string StateDictModelInfo::describe() const {
  if (family == "audio encoder") return "audio encoder (ave)";
  std::string s = family + " S=" + std::to_string(size) + ", audio " + audio_mode + " " +
                  shape_str(audio_shape);
  if (audio_mode_guessed) {
    s += " (ave and hubert have the same tensors: chosen by the file or folder name)";
  }
  s += ", widths ";
  for (size_t i = 0; i < widths.size(); ++i) s += (i ? "/" : "") + std::to_string(widths[i]);
  return s;
}

Result<Graph> graph_from_state_dict(const StateDict& sd, const std::string& name,
                                    const StateDictGraphOptions& opts, StateDictModelInfo* info) {
  StateDictModelInfo local;
  StateDictModelInfo& inf = info ? *info : local;
  inf = {};
  // What the file is, from its module names.
  bool generator = false, encoder = false, bare_encoder = false;
  for (const auto& [raw, t] : sd.entries) {
    const std::string key = starts_with(raw, "module.") ? raw.substr(7) : raw;
    for (const char* p : {"inc.", "down1.", "audio_model.", "fuse_conv.", "up1.", "outc."}) {
      generator |= starts_with(key, p);
    }
    encoder |= starts_with(key, "audio_encoder.");
    // SyncTalk_2D ships the encoder's Sequential without its attribute name: "0.conv_block...".
    const size_t dot = key.find('.');
    bare_encoder |=
        dot != std::string::npos && dot > 0 &&
        std::all_of(key.begin(), key.begin() + static_cast<long>(dot),
                    [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }) &&
        key.compare(dot, 12, ".conv_block.") == 0;
  }
  Builder b(sd, name);
  if (generator) {
    TR_RETURN_IF_ERROR(build_generator(b, opts, inf));
  } else if (encoder || bare_encoder) {
    b.set_key_prefix(encoder ? "audio_encoder." : "");
    TR_RETURN_IF_ERROR(build_encoder(b, inf));
  } else {
    std::string eg;
    for (size_t i = 0; i < sd.entries.size() && i < 3; ++i) {
      eg += (i ? ", '" : "'") + sd.entries[i].first + "'";
    }
    return BadInput(name +
                    ": not a SyncTalk_2D / Ultralight generator or audio encoder state dict "
                    "(found " +
                    std::to_string(sd.entries.size()) + " tensors" +
                    (eg.empty() ? "" : ", e.g. " + eg) + ")");
  }
  TR_RETURN_IF_ERROR(b.check_all_used());
  Graph g = std::move(b.graph());
  TR_RETURN_IF_ERROR(g.topo_sort());
  return g;
}

}  // namespace tr::nn
