#include <array>

#include "nn/ops/infer.h"
#include "nn/ref/ref_kernels.h"

namespace tr::nn {

namespace {
constexpr std::array<RefKernel, kNumOps> kRefKernels = {
#define TR_NN_REF_ENTRY_(name) &ref_##name,
    TR_NN_OPS(TR_NN_REF_ENTRY_)
#undef TR_NN_REF_ENTRY_
};
}  // namespace

Result<std::vector<Tensor>> run_ref_node(const Node& n, const std::vector<const Tensor*>& in) {
  std::vector<InputInfo> info(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (!in[i]) continue;
    info[i].present = true;
    info[i].dtype = in[i]->dtype();
    info[i].shape = in[i]->shape();
    info[i].value = in[i];
  }
  TR_ASSIGN_OR_RETURN(auto outs, infer_node(n, info));
  std::vector<Tensor> out;
  out.reserve(outs.size());
  for (const auto& o : outs) out.emplace_back(o.dtype, o.shape);
  TR_RETURN_IF_ERROR(kRefKernels[op_index(n.op)](n, in, out));
  return out;
}

}  // namespace tr::nn
