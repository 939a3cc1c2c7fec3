#!/usr/bin/python3
"""The committed demo model (models/demo) is what tools/train_demo.py defines (issue 17).

Each committed file is compared with a fresh export of the script's architecture (random
weights, the script's own export routine): the same inputs and outputs with the same
shapes, the same sequence of operators and the same weight shapes, so the files cannot
drift from the code that claims to make them. Both files together must stay <= 8 MB, the
README beside them must give the command and the seed, and the training log must exist.

Run: /usr/bin/python3 tests/models/demo_model_test.py (TALKRENDER_SOURCE=source tree).
Exit 77 = skipped (no torch/onnx in /usr/bin/python3).
"""
import collections
import os
import sys
import tempfile

SOURCE = os.environ.get("TALKRENDER_SOURCE",
                        os.path.join(os.path.dirname(os.path.abspath(__file__)), "../.."))
MODELS = os.path.join(SOURCE, "models", "demo")
sys.path.insert(0, os.path.join(SOURCE, "tools"))

try:
    import onnx
    import torch
except ImportError:
    print("SKIP: needs Debian's python3-torch and python3-onnx (/usr/bin/python3)")
    sys.exit(77)

import model_arch  # noqa: E402
import train_demo  # noqa: E402


def signature(path):
    m = onnx.load(path)
    g = m.graph
    init = {i.name for i in g.initializer}

    def shape(v):
        return [d.dim_value if d.HasField("dim_value") else d.dim_param
                for d in v.type.tensor_type.shape.dim]

    return {
        "inputs": [(v.name, shape(v)) for v in g.input if v.name not in init],
        "outputs": [(v.name, shape(v)) for v in g.output],
        "ops": [n.op_type for n in g.node],
        "weights": sorted(collections.Counter(tuple(i.dims) for i in g.initializer).items()),
        "opset": max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")),
    }


def main():
    failures = []
    torch.manual_seed(0)
    encoder = model_arch.AudioEncoder(train_demo.ENCODER_WIDTHS)
    generator = model_arch.Generator(train_demo.SIZE, "ave", widths=train_demo.GENERATOR_WIDTHS)
    # Trained BatchNorm statistics differ per channel; untrained ones fold into equal biases
    # that the exporter deduplicates into Identity nodes, a different graph. Random ones
    # give the trained graph's shape.
    for bn in [m for net in (encoder, generator) for m in net.modules()
               if isinstance(m, torch.nn.BatchNorm2d)]:
        with torch.no_grad():
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 1.5)
    with tempfile.TemporaryDirectory() as tmp:
        train_demo.export(torch, encoder, generator, tmp)
        for name in ("generator.onnx", "audio_encoder.onnx"):
            committed = os.path.join(MODELS, name)
            if not os.path.isfile(committed):
                failures.append("%s is missing" % committed)
                continue
            want, got = signature(os.path.join(tmp, name)), signature(committed)
            for key in want:
                if want[key] != got[key]:
                    failures.append("%s: %s differ from the script's architecture:\n  "
                                    "script    %s\n  committed %s" %
                                    (name, key, str(want[key])[:300], str(got[key])[:300]))
            print("%s: %d ops, %d weight tensors, inputs %s -> outputs %s" %
                  (name, len(got["ops"]), sum(c for _, c in got["weights"]), got["inputs"],
                   got["outputs"]))
    total = sum(os.path.getsize(os.path.join(MODELS, f))
                for f in ("generator.onnx", "audio_encoder.onnx")
                if os.path.isfile(os.path.join(MODELS, f)))
    print("both files: %.2f MB" % (total / 1e6))
    if total > 8e6:
        failures.append("the two files are %.2f MB, more than 8 MB" % (total / 1e6))
    readme = os.path.join(MODELS, "README.md")
    text = open(readme).read() if os.path.isfile(readme) else ""
    for needle in ("tools/train_demo.py", "--seed", "wall time"):
        if needle not in text:
            failures.append("%s does not give %r" % (readme, needle))
    if not os.path.isfile(os.path.join(MODELS, "train_log.txt")):
        failures.append("models/demo/train_log.txt is missing")
    for f in failures:
        print("FAIL: " + f)
    if not failures:
        print("ok")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
