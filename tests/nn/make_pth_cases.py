#!/usr/bin/python3
"""Writes the .pth cases for tests/nn/pth_reader_test.cc into OUT_DIR.

Usage: /usr/bin/python3 tests/nn/make_pth_cases.py OUT_DIR [--large-mb N]
  --large-mb N   also (or, with --only-large, only) write large.pth, a state dict of about
                 N MB for the load time (default: not written)
  --only-large
  --fuzz-seeds DIR  also write fuzz/corpus/fuzz_pth/ seeds into DIR (fuzz/README.md: byte 0
                 is the form, 0 a whole .pth, 1 a data.pkl zipped beside fixed storages)

Good cases are written by PyTorch's own torch.save; beside each, CASE.expect/ holds
keys.txt (the float tensors' names in file order) and I.npy (tensor I as float32, as
torch's own .float() widens it), which the test compares bit for bit.

Bad cases: a truncated zip, a pickle naming os.system (bytes written by hand here and never
unpickled, in Python either), a storage record shorter than its tensor, a view past its
storage's end (pickle written by hand), torch's legacy format, a JPEG renamed .pth, and a
dict without tensors.
"""
import io
import os
import struct
import sys
import zipfile
from collections import OrderedDict

import cv2
import numpy as np
import torch


def expect(out, case, sd):
    """Writes CASE.expect/ for the float tensors of the dict `sd` (int tensors are skipped
    by the reader: BatchNorm's num_batches_tracked)."""
    d = os.path.join(out, case + ".expect")
    os.makedirs(d, exist_ok=True)
    keys = []
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor) or not v.is_floating_point():
            continue
        np.save(os.path.join(d, "%d.npy" % len(keys)), v.detach().float().contiguous().numpy())
        keys.append(k)
    with open(os.path.join(d, "keys.txt"), "w") as f:
        f.write("".join(k + "\n" for k in keys))


class Small(torch.nn.Module):
    """Conv + BatchNorm + Linear, like the generators' blocks."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


def good_cases(out):
    torch.manual_seed(16)
    m = Small()
    m.train()
    m(torch.randn(2, 3, 6, 6))  # running stats and num_batches_tracked move off their init
    sd = m.state_dict()
    torch.save(sd, os.path.join(out, "bare.pth"))
    expect(out, "bare", sd)
    # The same records re-zipped with deflate, as a user's zip tool might leave them.
    with zipfile.ZipFile(os.path.join(out, "bare.pth")) as src, \
            zipfile.ZipFile(os.path.join(out, "deflated.pth"), "w", zipfile.ZIP_DEFLATED) as dst:
        for name in src.namelist():
            dst.writestr(name.replace("bare/", "deflated/", 1), src.read(name))

    # Views: storages shared, offsets, strides, other widths.
    base = torch.randn(6, 5)
    views = OrderedDict()
    views["transposed"] = base.t()  # non-contiguous, shares base's storage
    views["row_slice"] = base[2:4]  # storage offset 10
    views["col_slice"] = base[1:5, 1:4]  # offset and strides
    views["base"] = base
    views["stepped"] = torch.arange(20.0)[3:17:3]  # stride 3
    views["expanded"] = torch.randn(3, 1).expand(3, 4)  # stride 0
    views["scalar"] = torch.tensor(2.5)
    views["empty"] = torch.zeros(0, 3)
    half = torch.tensor([0.0, -0.0, 1.0, -2.5, 65504.0, 6e-8, 1e-5, float("inf"),
                         float("-inf")], dtype=torch.float16)
    views["half"] = half
    views["half_matrix_t"] = torch.randn(4, 7).half().t()
    views["bfloat16"] = torch.randn(5).to(torch.bfloat16)
    views["double"] = torch.randn(3, 2, dtype=torch.float64)
    views["param"] = torch.nn.Parameter(torch.randn(2, 2))  # _rebuild_parameter
    views["channels_last"] = torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last)
    views["int_skipped"] = torch.arange(4)  # LongStorage: not in the StateDict
    torch.save(views, os.path.join(out, "views.pth"))
    expect(out, "views", views)

    # Ultralight's checkpoint: {"epoch", "model", "optimizer"} with Adam's state after a step.
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    m(torch.randn(2, 3, 6, 6)).sum().backward()
    opt.step()
    sd2 = m.state_dict()
    torch.save({"epoch": 7, "model": sd2, "optimizer": opt.state_dict()},
               os.path.join(out, "ultralight.pth"))
    expect(out, "ultralight", sd2)
    return sd


def large_case(out, mb):
    """A state dict of about `mb` MB in generator-like shapes, for the load time."""
    torch.manual_seed(48)
    sd = OrderedDict()
    total, i = 0, 0
    while total < mb * 1e6:
        c = 64 * (1 + i % 8)
        sd["layer%d.conv.weight" % i] = torch.randn(c, c, 3, 3)
        sd["layer%d.conv.bias" % i] = torch.randn(c)
        total += (c * c * 9 + c) * 4
        i += 1
    torch.save(sd, os.path.join(out, "large.pth"))
    expect(out, "large", sd)


# --- hand-written pickles (never unpickled) --------------------------------------------


def unicode(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def tuple_of_ints(vals):
    return b"(" + b"".join(b"J" + struct.pack("<i", v) for v in vals) + b"t"


def tensor_pickle(name, key, numel, offset, size, stride, location="cpu", metadata=False):
    """An OrderedDict {name: _rebuild_tensor_v2(FloatStorage key[numel], ...)} as torch.save
    writes it, opcode by opcode; `metadata` adds the optional 7th argument (a dict)."""
    p = b"\x80\x02" + b"ccollections\nOrderedDict\n)R"
    p += b"(" + unicode(name) + b"ctorch._utils\n_rebuild_tensor_v2\n"
    p += b"((" + unicode("storage") + b"ctorch\nFloatStorage\n" + unicode(key)
    p += unicode(location) + b"J" + struct.pack("<i", numel) + b"tQ"
    p += b"J" + struct.pack("<i", offset) + tuple_of_ints(size) + tuple_of_ints(stride)
    p += b"\x88ccollections\nOrderedDict\n)R" + (b"}" if metadata else b"") + b"t" + b"Ru."
    return p


def write_zip(path, prefix, records):
    """records: name -> bytes, stored (uncompressed) as torch does."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for name, data in records.items():
            z.writestr(prefix + "/" + name, data)


def bad_cases(out, sd):
    with open(os.path.join(out, "bare.pth"), "rb") as f:
        good = f.read()
    with open(os.path.join(out, "truncated.pth"), "wb") as f:
        f.write(good[: len(good) // 2])

    # GLOBAL os.system, REDUCE'd on ("true",): refused before anything is looked up.
    evil = b"\x80\x02cos\nsystem\nq\x00" + unicode("true") + b"\x85R."
    write_zip(os.path.join(out, "evil_global.pth"), "evil_global",
              {"data.pkl": evil, "version": b"3\n"})

    # A storage record shorter than its FloatStorage says (tensor "w": 4 floats, 3 stored).
    write_zip(os.path.join(out, "short_storage.pth"), "short_storage",
              {"data.pkl": tensor_pickle("w", "0", 4, 0, [4], [1]),
               "data/0": struct.pack("<3f", 1, 2, 3), "version": b"3\n"})

    # A view past its storage's end: size [2, 3] at offset 1 needs 7 of the 6 elements.
    write_zip(os.path.join(out, "view_past_end.pth"), "view_past_end",
              {"data.pkl": tensor_pickle("dec.w", "0", 6, 1, [2, 3], [3, 1]),
               "data/0": struct.pack("<6f", *range(6)), "version": b"3\n"})

    # Not bad: a GPU-trained tensor (location cuda:0) with the 7th argument newer torch may
    # pass, under the "archive/" folder newer torch writes. Values 0..5 as [3, 2] at offset 2.
    write_zip(os.path.join(out, "cuda_archive.pth"), "archive",
              {"data.pkl": tensor_pickle("g.w", "0", 8, 2, [3, 2], [2, 1], "cuda:0", True),
               "data/0": struct.pack("<8f", -2, -1, 0, 1, 2, 3, 4, 5), "byteorder": b"little",
               "version": b"3\n"})

    torch.save(sd, os.path.join(out, "legacy.pth"), _use_new_zipfile_serialization=False)
    torch.save({"epoch": 1, "lr": 0.1, "opt": {"state": {}}}, os.path.join(out, "no_tensors.pth"))

    img = np.zeros((16, 16, 3), np.uint8)
    img[4:12, 4:12] = (40, 120, 200)
    cv2.imwrite(os.path.join(out, "photo.jpg"), img)
    os.rename(os.path.join(out, "photo.jpg"), os.path.join(out, "jpeg.pth"))


def fuzz_seeds(out, seeds):
    """Form 0: small .pth cases; form 1: data.pkl records whose storages match the harness's
    fixed ones (data/0: 16 floats, data/1: 3 halves, data/2: empty, data/3: 64 int64s)."""
    os.makedirs(seeds, exist_ok=True)
    for name in ["bare", "views", "ultralight", "evil_global", "short_storage",
                 "view_past_end", "no_tensors", "legacy", "jpeg", "cuda_archive", "deflated"]:
        with open(os.path.join(out, name + ".pth"), "rb") as f:
            data = f.read()
        with open(os.path.join(seeds, "file-" + name), "wb") as f:
            f.write(b"\x00" + data)

    def pkl_of(obj):
        buf = io.BytesIO()
        torch.save(obj, buf)
        with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as z:
            name = [n for n in z.namelist() if n.endswith("/data.pkl")][0]
            return z.read(name)

    f0 = torch.arange(16.0)
    h1 = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float16)
    e2 = torch.zeros(0)
    n3 = torch.arange(64)
    sd = OrderedDict([("w", f0.view(4, 4)), ("h", h1), ("e", e2.view(0, 2)), ("n", n3),
                      ("wt", f0.view(4, 4).t()), ("ws", f0[5:11:2]),
                      ("p", torch.nn.Parameter(f0.view(2, 8)))])
    records = {
        "state_dict": sd,
        "ultralight": {"epoch": 3, "model": sd,
                       "optimizer": {"state": {0: {"step": 1, "exp_avg": f0}},
                                     "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999),
                                                       "params": [0, 1]}]}},
    }
    for name, obj in records.items():
        with open(os.path.join(seeds, "pkl-" + name), "wb") as f:
            f.write(b"\x01" + pkl_of(obj))
    for name, pkl in [("evil", b"\x80\x02cos\nsystem\nq\x00" + unicode("true") + b"\x85R."),
                      ("past_end", tensor_pickle("w", "0", 16, 2, [4, 4], [4, 1]))]:
        with open(os.path.join(seeds, "pkl-" + name), "wb") as f:
            f.write(b"\x01" + pkl)


def main():
    out = sys.argv[1]
    mb = 0
    if "--large-mb" in sys.argv:
        mb = float(sys.argv[sys.argv.index("--large-mb") + 1])
    os.makedirs(out, exist_ok=True)
    if "--only-large" not in sys.argv:
        sd = good_cases(out)
        bad_cases(out, sd)
    if "--fuzz-seeds" in sys.argv:
        fuzz_seeds(out, sys.argv[sys.argv.index("--fuzz-seeds") + 1])
    if mb > 0:
        large_case(out, mb)
    with open(os.path.join(out, "DONE"), "w") as f:
        f.write("ok\n")


if __name__ == "__main__":
    main()
