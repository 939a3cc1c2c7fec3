// The audio encoder on talkrender's model runtime (src/nn). Kept in its own file so that
// programs which only need the mel (and tests with a stand-in encoder) do not pull the
// runtime in from the static library.
#include <string>

#include "audio/audio.h"
#include "nn/nn.h"

namespace tr::audio {

struct AudioEncoder::Impl {
  std::shared_ptr<const nn::Model> model;
  std::unique_ptr<nn::Session> session;
  std::string input_name;
};

AudioEncoder::AudioEncoder(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
AudioEncoder::~AudioEncoder() = default;

Result<std::unique_ptr<AudioEncoder>> AudioEncoder::load(const std::string& onnx_path) {
  return load(onnx_path, nn::SessionOptions{});
}

Result<std::unique_ptr<AudioEncoder>> AudioEncoder::load(const std::string& onnx_path,
                                                         const nn::SessionOptions& opts) {
  TR_ASSIGN_OR_RETURN(std::shared_ptr<const nn::Model> model, nn::Model::load(onnx_path));
  if (model->inputs().size() != 1 || model->outputs().empty()) {
    return BadInput(onnx_path + ": an audio encoder has one input [B, 1, 80, 16]; this model has " +
                    std::to_string(model->inputs().size()) + " inputs");
  }
  const nn::TensorInfo& in = model->inputs()[0];
  const Shape want = {-1, 1, kMelBins, kMelWindow};
  bool fits = in.shape.size() == 4;
  for (size_t d = 1; fits && d < 4; ++d) fits = in.shape[d] == want[d] || in.shape[d] < 0;
  if (!fits) {
    return BadInput(onnx_path + ": input '" + in.name + "' is " + shape_str(in.shape) +
                    ", an audio encoder takes [B, 1, 80, 16] (is this the generator?)");
  }
  auto impl = std::make_unique<Impl>();
  impl->model = model;
  impl->input_name = in.name;
  TR_ASSIGN_OR_RETURN(impl->session, nn::Session::create(model, opts));
  return std::make_unique<AudioEncoder>(std::move(impl));
}

Result<Tensor> AudioEncoder::encode(const Tensor& batch) {
  TR_ASSIGN_OR_RETURN(std::vector<Tensor> outs, impl_->session->run({{impl_->input_name, batch}}));
  if (outs.empty()) return RuntimeError(impl_->model->name() + ": the encoder returned no output");
  const int64_t b = batch.dim(0);
  if (outs[0].numel() != b * kFeatureDim) {
    return BadInput(impl_->model->name() + ": output " + shape_str(outs[0].shape()) +
                    " is not 512 features per window");
  }
  return outs[0].reshaped({b, kFeatureDim});
}

EncoderFn AudioEncoder::fn() {
  return [this](const Tensor& batch) { return encode(batch); };
}

}  // namespace tr::audio
