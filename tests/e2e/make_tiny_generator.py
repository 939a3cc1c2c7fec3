#!/usr/bin/python3
"""Writes a tiny ONNX model with the generator's interface (input [B,6,320,320], audio
[B,32,16,16] -> output [B,3,320,320] in (0,1)) for end-to-end tests that exercise the
pipeline, audio and muxing rather than the network: output = sigmoid(1x1 conv(input) +
a per-channel term from the audio window). Seeded; a few milliseconds per frame.

usage: /usr/bin/python3 tests/e2e/make_tiny_generator.py OUT.onnx [SIZE]
"""

import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    out = argv[1]
    size = int(argv[2]) if len(argv) > 2 else 320
    rng = np.random.default_rng(7)
    w_img = (rng.standard_normal((3, 6, 1, 1)) * 2).astype(np.float32)
    w_aud = (rng.standard_normal((3, 32, 16, 16)) * 0.01).astype(np.float32)
    nodes = [
        helper.make_node('Conv', ['input', 'w_img'], ['img']),
        helper.make_node('Conv', ['audio', 'w_aud'], ['aud']),  # [B, 3, 1, 1]
        helper.make_node('Add', ['img', 'aud'], ['logits']),
        helper.make_node('Sigmoid', ['logits'], ['output']),
    ]
    graph = helper.make_graph(
        nodes, 'tiny_generator',
        [helper.make_tensor_value_info('input', TensorProto.FLOAT, ['batch', 6, size, size]),
         helper.make_tensor_value_info('audio', TensorProto.FLOAT, ['batch', 32, 16, 16])],
        [helper.make_tensor_value_info('output', TensorProto.FLOAT, ['batch', 3, size, size])],
        [numpy_helper.from_array(w_img, 'w_img'), numpy_helper.from_array(w_aud, 'w_aud')])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    onnx.checker.check_model(model)
    tmp = out + '.tmp-%d' % os.getpid()
    onnx.save(model, tmp)
    os.replace(tmp, out)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
