#!/usr/bin/python3
"""A stand-in for `talkrender infer` that misbehaves on request, to test the conformance
runner's classification (selftest.py). It answers with the case's expected output, read
from the test data next to --model, unless $FAKE_INFER_PLAN (JSON: {"<backend>:<case dir
name>": behaviour}) says otherwise. Behaviours: pass, wrong, badshape, nooutput, decline,
decline-vague, decline-multiline, exit3, segv, sanitizer, hang."""
import json
import os
import signal
import sys
import time

import numpy as np
import onnx
from onnx import numpy_helper


def main(argv):
    if len(argv) < 2 or argv[1] != "infer":
        print("fake_infer: only 'infer' is faked", file=sys.stderr)
        return 2
    opts, i = {"--input": []}, 2
    while i < len(argv):
        key, val = argv[i], argv[i + 1]
        if key == "--input":
            opts[key].append(val)
        else:
            opts[key] = val
        i += 2
    case_dir = os.path.dirname(opts["--model"])
    case = os.path.basename(case_dir)
    plan = json.loads(os.environ.get("FAKE_INFER_PLAN", "{}"))
    behaviour = plan.get(f"{opts['--backend']}:{case}", "pass")
    for spec in opts["--input"]:  # the runner must hand over readable .npy files
        np.load(spec.split("=", 1)[1], allow_pickle=False)
    if behaviour == "decline":
        op = onnx.load(opts["--model"]).graph.node[0].op_type
        print(f"talkrender: {opts['--model']}: node 'n0': this {op} is not supported",
              file=sys.stderr)
        return 2
    if behaviour == "decline-vague":
        print("talkrender: something is not supported", file=sys.stderr)
        return 2
    if behaviour == "decline-multiline":
        print("usage: talkrender infer [options]\n  --model FILE\n  --out FILE", file=sys.stderr)
        return 2
    if behaviour == "exit3":
        print("talkrender: internal error", file=sys.stderr)
        return 3
    if behaviour == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    if behaviour == "sanitizer":
        print("=================================================================\n"
              "==123==ERROR: AddressSanitizer: heap-buffer-overflow on address 0x6020", file=sys.stderr)
        return 1
    if behaviour == "hang":
        time.sleep(600)
    if behaviour == "nooutput":
        return 0
    data = open(os.path.join(case_dir, "test_data_set_0", "output_0.pb"), "rb").read()
    if case == "test_identity_sequence":  # a SequenceProto: answer with its first tensor
        seq = onnx.SequenceProto()
        seq.ParseFromString(data)
        want = numpy_helper.to_array(seq.tensor_values[0])
    else:
        t = onnx.TensorProto()
        t.ParseFromString(data)
        want = numpy_helper.to_array(t)
    if behaviour == "wrong":
        want = want + np.float32(0.01) + np.float32(0.01) * np.abs(want)
    if behaviour == "badshape":
        want = want[np.newaxis]
    np.save(opts["--out"], want)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
