// Graph rewrites. Each pass lives in its own file and is written as match -> check ->
// rewrite; each returns how many rewrites it made and leaves the graph compacted and in
// topological order.
//
// THE RUN ORDER (the only place it is defined):
//   At load, shape-independent (optimize_for_load):
//     1. fold_constants          constant sub-graphs (Identity on initialisers, ...)
//     2. remove_identities       Identity on runtime values
//     3. fold_batchnorm          BatchNormalization after Conv -> Conv's weights and bias
//   Per input-shape set, after infer_shapes (optimize_for_shapes):
//     4. fold_constants          now also Shape of concrete values: the Pad size chains
//     5. drop_noop_pads          Pad whose pads are all zero
//     6. remove_identities
//     7. fold_batchnorm          (again: a BN may become foldable once its inputs fold)
//     8. fuse_conv_residual      Conv -> Add(other) => FusedConv(residual = other)
//     9. fuse_conv_activation    (Fused)Conv -> Relu/LeakyRelu => FusedConv(activation)
//     then infer_shapes once more so every new value has its shape.
// Residual before activation, because FusedConv computes act(conv + b + residual): the
// encoder's conv -> Add -> Relu becomes one node, while the generator's conv -> Relu ->
// (other ops) -> Add keeps the Add (it is not fed by a conv without activation).
#pragma once

#include "common/status.h"
#include "nn/graph.h"

namespace tr::nn {

// Evaluates nodes whose inputs are all constants (and Shape nodes whose input shape is
// concrete) with the reference kernels; their outputs become constants.
Result<int> fold_constants(Graph& g);
// Identity nodes: readers of the output read the input instead.
Result<int> remove_identities(Graph& g);
// Pad with constant all-zero pads: removed.
Result<int> drop_noop_pads(Graph& g);
// BatchNormalization whose input is a Conv's only use, with constant weights and stats:
// scaled into new conv weights/bias; the BN node disappears.
Result<int> fold_batchnorm(Graph& g);
// Add(conv_out, other) where conv_out comes from a Conv/FusedConv without activation or
// residual, is read only by this Add, and other has the output's shape: one FusedConv.
Result<int> fuse_conv_residual(Graph& g);
// Relu/LeakyRelu reading the only use of a Conv/FusedConv without activation: folded in.
Result<int> fuse_conv_activation(Graph& g);

Status optimize_for_load(Graph& g);
// `g` must be shape-inferred with concrete shapes.
Status optimize_for_shapes(Graph& g);

}  // namespace tr::nn
