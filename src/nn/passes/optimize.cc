// The two pipelines; the order and its reasons are documented in passes.h.
#include "nn/ops/infer.h"
#include "nn/passes/passes.h"

namespace tr::nn {

Status optimize_for_load(Graph& g) {
  TR_RETURN_IF_ERROR(fold_constants(g).status());
  TR_RETURN_IF_ERROR(remove_identities(g).status());
  TR_RETURN_IF_ERROR(fold_batchnorm(g).status());
  g.remove_dead_nodes();
  return Status::Ok();
}

Status optimize_for_shapes(Graph& g) {
  TR_RETURN_IF_ERROR(fold_constants(g).status());
  TR_RETURN_IF_ERROR(drop_noop_pads(g).status());
  TR_RETURN_IF_ERROR(remove_identities(g).status());
  TR_RETURN_IF_ERROR(fold_batchnorm(g).status());
  TR_RETURN_IF_ERROR(fuse_conv_residual(g).status());
  TR_RETURN_IF_ERROR(fuse_conv_activation(g).status());
  g.remove_dead_nodes();
  return infer_shapes(g);
}

}  // namespace tr::nn
