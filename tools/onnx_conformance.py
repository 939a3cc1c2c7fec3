#!/usr/bin/python3
"""ONNX conformance runner: Debian's libonnx-testdata cases through `talkrender infer`.

Selection: every case under node/ and pytorch-converted/ whose graph uses only the ops the
runtime claims (SUPPORTED_OPS), whose graph has one output, and whose fed inputs are float32.
"Fed inputs are float32" is read from the test data itself: every
test_data_set_*/input_*.pb, parsed as an ONNX TensorProto, has data_type FLOAT. That gives
the issue's 102 cases. Note that it admits node/test_identity_sequence: its input is a
SequenceProto whose elem_type field (TENSOR = 1) sits where TensorProto keeps data_type
(FLOAT = 1). That case is kept on purpose: its graph input is a sequence, which the runtime
must refuse cleanly, so it is run with its first tensor and only a clean refusal passes as
"declined" (exit 0 counts as wrong). Cases with int64/int32/uint8 inputs (Reshape's shape,
Pad's pads, Squeeze's axes, ...) are left out of the gate; --extended runs them as well,
report-only.

Each case runs through each backend as
    talkrender infer --model M --input NAME=FILE.npy ... --out OUT.npy --backend ref|cpu
and is classified:
    pass      exit 0 and the output matches (numpy.allclose, rtol 1e-3, atol 1e-5, shape equal)
    declined  exit 2 with one non-empty stderr line that names the feature (an op type,
              attribute, input name of the graph, or "opset")
    wrong     a mismatch, a missing/unreadable output, or a refusal that is not clean
              (another exit code, no message, a multi-line message, one naming nothing)
    crash     a signal, an exit code >= 128, a sanitizer report, or a timeout

Exit status: 0 when nothing is wrong/crash, the declined set equals the declined file and
every backend passes >= --min-pass-rate of the selected cases; 1 otherwise; 77 (ctest skip)
when the test data, python's onnx or the talkrender binary is missing.
"""

import argparse
import concurrent.futures
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SKIP = 77
SUITES = ("node", "pytorch-converted")
BACKENDS = ("ref", "cpu")
RTOL, ATOL = 1e-3, 1e-5
# The ops the runtime claims to support for this issue (the runtime's op table also has
# internal/folding-only ops such as Shape and Gather; the issue fixes the list at these 16).
SUPPORTED_OPS = (
    "Conv", "Relu", "LeakyRelu", "Add", "Mul", "Concat", "Sigmoid", "BatchNormalization",
    "Resize", "Pad", "Transpose", "Flatten", "Identity", "Squeeze", "Unsqueeze", "Reshape",
)
SANITIZER_PATTERNS = re.compile(
    r"ERROR: (Address|Leak|Memory|Thread)Sanitizer|WARNING: ThreadSanitizer|"
    r"runtime error: |SUMMARY: UndefinedBehaviorSanitizer")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DECLINED = os.path.join(REPO_ROOT, "tests", "conformance", "declined.txt")


def skip(message):
    print(f"SKIP: {message}")
    sys.exit(SKIP)


# ----------------------------------------------------------------------------- selection

def tensor_type_name(type_proto):
    """'tensor(float)', 'sequence(tensor(float))', ... for messages."""
    kind = type_proto.WhichOneof("value")
    if kind == "tensor_type":
        import onnx
        return f"tensor({onnx.TensorProto.DataType.Name(type_proto.tensor_type.elem_type).lower()})"
    if kind == "sequence_type":
        return f"sequence({tensor_type_name(type_proto.sequence_type.elem_type)})"
    if kind == "optional_type":
        return f"optional({tensor_type_name(type_proto.optional_type.elem_type)})"
    return str(kind)


def feature_tags(graph):
    """Features a case needs beyond the plain op, named the way the widening issue names
    them (conv1d, conv3d, dilation, pad-reflect, pad-edge, resize-cubic, ...)."""
    from onnx import helper
    tags = set()
    inits = {t.name: t for t in graph.initializer}
    value_shapes = {}
    for vi in list(graph.input) + list(graph.value_info):
        if vi.type.WhichOneof("value") == "tensor_type" and vi.type.tensor_type.HasField("shape"):
            value_shapes[vi.name] = len(vi.type.tensor_type.shape.dim)
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Conv":
            rank = None
            if len(node.input) > 1 and node.input[1] in inits:
                rank = len(inits[node.input[1]].dims) - 2
            elif len(node.input) > 1 and node.input[1] in value_shapes:
                rank = value_shapes[node.input[1]] - 2
            if "kernel_shape" in attrs:
                rank = len(attrs["kernel_shape"])
            if rank is not None and rank != 2:
                tags.add(f"conv{rank}d")
            if any(d != 1 for d in attrs.get("dilations", [])):
                tags.add("dilation")
            if attrs.get("group", 1) != 1:
                tags.add("grouped")
            pad = attrs.get("auto_pad", b"NOTSET")
            if pad not in (b"NOTSET", b"VALID"):
                tags.add("auto_pad-" + pad.decode().lower())
            pads = attrs.get("pads", [])
            if pads and pads[: len(pads) // 2] != pads[len(pads) // 2:]:
                tags.add("asymmetric-pads")
        elif node.op_type == "Pad":
            mode = attrs.get("mode", b"constant").decode()
            if mode != "constant":
                tags.add(f"pad-{mode}")
        elif node.op_type == "Resize":
            tags.add(f"resize-{attrs.get('mode', b'nearest').decode()}")
            ctm = attrs.get("coordinate_transformation_mode", b"half_pixel").decode()
            if ctm != "half_pixel":
                tags.add(f"ctm-{ctm}")
            if attrs.get("exclude_outside", 0):
                tags.add("exclude_outside")
            if "cubic_coeff_a" in attrs:
                tags.add("cubic_coeff_a")
        elif node.op_type == "BatchNormalization" and attrs.get("training_mode", 0):
            tags.add("bn-training")
    for vi in graph.input:
        if vi.type.WhichOneof("value") != "tensor_type":
            tags.add("non-tensor-input")
    return sorted(tags)


def read_proto_dtype(path):
    """data_type of a .pb parsed as TensorProto (see the module docstring)."""
    import onnx
    t = onnx.TensorProto()
    t.ParseFromString(open(path, "rb").read())
    return t.data_type


def select_cases(testdata, ops, suites=SUITES, extended=False):
    """Returns (selected, extended_cases): lists of dicts describing each case."""
    import onnx
    selected, extra = [], []
    ops = set(ops)
    for suite in suites:
        for case_dir in sorted(glob.glob(os.path.join(testdata, suite, "*"))):
            model_path = os.path.join(case_dir, "model.onnx")
            if not os.path.isfile(model_path):
                continue
            model = onnx.load(model_path)
            graph = model.graph
            case_ops = sorted({n.op_type for n in graph.node})
            if not case_ops or not set(case_ops) <= ops or len(graph.output) != 1:
                continue
            datasets = sorted(glob.glob(os.path.join(case_dir, "test_data_set_*")))
            if not datasets:
                continue
            dtypes = [read_proto_dtype(p)
                      for p in sorted(glob.glob(os.path.join(datasets[0], "input_*.pb")))]
            all_float = all(d == onnx.TensorProto.FLOAT for d in dtypes)
            if not all_float and not extended:
                continue
            inits = {t.name for t in graph.initializer}
            fed = [vi for vi in graph.input if vi.name not in inits]
            if not all_float and any(vi.type.WhichOneof("value") != "tensor_type" for vi in fed):
                continue  # optional/sequence inputs outside the 102: nothing to feed them

            case = {
                "id": f"{suite}/{os.path.basename(case_dir)}",
                "dir": case_dir,
                "model": model_path,
                "ops": case_ops,
                "opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                             default=0),
                "datasets": datasets,
                "inputs": [(vi.name, tensor_type_name(vi.type)) for vi in fed],
                "features": feature_tags(graph),
                # tokens a clean refusal may name
                "tokens": sorted(set(case_ops) | {a.name for n in graph.node for a in n.attribute}
                                 | {n.name for n in graph.node if n.name}
                                 | {vi.name for vi in fed}
                                 | {"opset", "sequence", "optional", "int64", "int32", "uint8",
                                    "not a tensor"}),
                "non_tensor": any(vi.type.WhichOneof("value") != "tensor_type" for vi in fed),
            }
            (selected if all_float else extra).append(case)
    return selected, extra


# ----------------------------------------------------------------------------- running

def load_pb(path):
    """A test-data .pb as a numpy array; a sequence yields its first tensor (the case is
    then only expected to be refused) and a flag saying so."""
    import onnx
    from onnx import numpy_helper
    data = open(path, "rb").read()
    seq = onnx.SequenceProto()
    try:
        seq.ParseFromString(data)
        is_seq = seq.elem_type == onnx.SequenceProto.TENSOR and len(seq.tensor_values) > 0
    except Exception:  # not a SequenceProto
        is_seq = False
    if is_seq:
        return seq.name, numpy_helper.to_array(seq.tensor_values[0]), True
    t = onnx.TensorProto()
    t.ParseFromString(data)
    return t.name, numpy_helper.to_array(t), False


def refusal_problem(stderr, case):
    """None when stderr is a clean one-line refusal naming the feature, else why not."""
    lines = [l for l in stderr.splitlines() if l.strip()]
    if not lines:
        return "exit 2 with no message"
    if len(lines) > 1:
        return f"exit 2 with a {len(lines)}-line message (first: {lines[0][:160]!r})"
    line = lines[0]
    for tok in case["tokens"]:
        # Short names ('x', '0') count only when quoted; longer ones as whole words.
        if f"'{tok}'" in line or f'"{tok}"' in line:
            return None
        if len(tok) > 1 and re.search(r"(?<![A-Za-z0-9_])" + re.escape(tok) +
                                      r"(?![A-Za-z0-9_])", line,
                                      re.IGNORECASE if tok.islower() else 0):
            return None
    return f"exit 2 but the message names no op/attribute/input of the graph: {line[:200]!r}"


def describe_mismatch(got, want):
    import numpy as np
    if got.shape != want.shape:
        return f"shape {list(got.shape)} != expected {list(want.shape)}"
    if got.size == 0:
        return None
    g = got.astype(np.float64)
    w = want.astype(np.float64)
    if np.allclose(g, w, rtol=RTOL, atol=ATOL, equal_nan=True):
        return None
    err = np.abs(g - w)
    err = np.where(np.isnan(g) & np.isnan(w), 0.0, err)
    err = np.where(np.isnan(err), np.inf, err)
    bad = err > ATOL + RTOL * np.abs(w)
    worst = np.unravel_index(int(np.argmax(err)), err.shape)
    return (f"{int(bad.sum())}/{err.size} elements differ; worst at {list(map(int, worst))}: "
            f"got {g[worst]:.6g} expected {w[worst]:.6g} (|diff| {err[worst]:.3g})")


def run_one(case, backend, talkrender, workdir, timeout, extra_args):
    """run_case, with a failure of the runner itself (unreadable test data) reported as
    'wrong' with the reason instead of stopping the whole run."""
    try:
        return run_case(case, backend, talkrender, workdir, timeout, extra_args)
    except Exception as e:  # noqa: BLE001 -- any runner bug must not hide the other cases
        return {"case": case["id"], "backend": backend, "ops": case["ops"],
                "features": case["features"], "status": "wrong", "seconds": 0.0,
                "detail": f"runner error preparing/checking the case: {type(e).__name__}: {e}"}


def run_case(case, backend, talkrender, workdir, timeout, extra_args):
    """Runs every data set of one case on one backend; returns a result dict."""
    import numpy as np
    result = {"case": case["id"], "backend": backend, "ops": case["ops"],
              "features": case["features"], "status": "pass", "detail": "", "seconds": 0.0}
    case_work = os.path.join(workdir, case.get("work_key", case["id"]).replace("/", "__"), backend)
    os.makedirs(case_work, exist_ok=True)
    fed_names = [name for name, _ in case["inputs"]]
    start = time.monotonic()
    for ds in case["datasets"]:
        ds_name = os.path.basename(ds)
        args = [talkrender, "infer", "--model", case["model"]]
        expect_refusal = case["non_tensor"]
        for i, pb in enumerate(sorted(glob.glob(os.path.join(ds, "input_*.pb")))):
            name, array, from_seq = load_pb(pb)
            expect_refusal = expect_refusal or from_seq
            if not name:
                if i >= len(fed_names):
                    result.update(status="wrong", detail=f"{ds_name}: more input files than graph inputs")
                    return result
                name = fed_names[i]
            if name in case.get("baked", ()):  # a probe model holds it as an initializer
                continue
            npy = os.path.join(case_work, f"{ds_name}_input_{i}.npy")
            np.save(npy, array)
            args += ["--input", f"{name}={npy}"]
        out = os.path.join(case_work, f"{ds_name}_out.npy")
        args += ["--out", out, "--backend", backend] + extra_args
        try:
            proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  timeout=timeout, text=True, errors="replace")
        except subprocess.TimeoutExpired:
            result.update(status="crash", detail=f"{ds_name}: timed out after {timeout} s")
            break
        result["command"] = " ".join(args)
        rc = proc.returncode
        stderr = proc.stderr.strip()
        if rc < 0 or rc >= 128:
            sig = ""
            if rc < 0:
                try:
                    sig = f" ({signal.Signals(-rc).name})"
                except ValueError:
                    pass
            result.update(status="crash", detail=f"{ds_name}: exit {rc}{sig}; stderr: {stderr[-400:]!r}")
            break
        if SANITIZER_PATTERNS.search(proc.stderr):
            m = SANITIZER_PATTERNS.search(proc.stderr)
            tail = proc.stderr[m.start():m.start() + 400]
            result.update(status="crash", detail=f"{ds_name}: sanitizer report (exit {rc}): {tail!r}")
            break
        if rc == 2:
            problem = refusal_problem(proc.stderr, case)
            if problem:
                result.update(status="wrong", detail=f"{ds_name}: unclean refusal: {problem}")
            else:
                # The case is on the same line of the declined file: drop its long path.
                reason = stderr.splitlines()[0].strip().replace(case["model"], "model.onnx")
                result.update(status="declined", detail=reason)
            break
        if rc != 0:
            result.update(status="wrong",
                          detail=f"{ds_name}: unclean refusal: exit {rc}; stderr: {stderr[-300:]!r}")
            break
        if expect_refusal:
            result.update(status="wrong", detail=f"{ds_name}: exit 0 for a graph with a non-tensor "
                          f"input ({case['inputs']}); it must be refused")
            break
        want_pbs = sorted(glob.glob(os.path.join(ds, "output_*.pb")))
        _, want, _ = load_pb(want_pbs[0])
        try:
            got = np.load(out, allow_pickle=False)
        except Exception as e:  # missing or malformed output file
            result.update(status="wrong", detail=f"{ds_name}: exit 0 but output {out} unreadable: {e}")
            break
        problem = describe_mismatch(got, want)
        if problem:
            result.update(status="wrong", detail=f"{ds_name}: {problem}")
            break
    result["seconds"] = round(time.monotonic() - start, 3)
    return result


# ----------------------------------------------------------------------------- probes

# Input slots that hold shape-like data (sizes, pads, axes, scales): a probe bakes graph
# inputs feeding them into initializers, as an exported model would have them.
SHAPE_LIKE_SLOTS = {"Resize": {1, 2, 3}, "Pad": {1, 2}, "Reshape": {1}, "Squeeze": {1},
                    "Unsqueeze": {1}}
# Ops whose opset-6 form means the same as their opset-11 form once the listed legacy
# attributes are dropped (BatchNormalization-6: is_test/spatial, gone in 9; spatial=1 is the
# later behaviour). Pad-2 is rewritten separately (pads attribute -> input).
SAME_SINCE_6 = {"Conv", "Relu", "LeakyRelu", "Sigmoid", "Concat", "Transpose", "Flatten",
                "Identity", "BatchNormalization", "Pad", "Unsqueeze", "Squeeze"}


def make_probe(case, workdir):
    """A semantics-preserving rewrite of a case's model that gets past an import-time refusal,
    so the kernels behind it can be checked now: (1) graph inputs that only feed shape-like
    slots become initializers holding the test data; (2) an opset 6..10 model of ops whose
    meaning did not change becomes opset 11. Returns (case dict, what was done) or None."""
    import onnx
    from onnx import helper, numpy_helper
    model = onnx.load(case["model"])
    graph = model.graph
    done = []
    ds = case["datasets"][0]
    fed_names = [name for name, _ in case["inputs"]]
    values = {}
    for i, pb in enumerate(sorted(glob.glob(os.path.join(ds, "input_*.pb")))):
        name, array, from_seq = load_pb(pb)
        if from_seq:
            return None
        values[name or fed_names[i]] = array
    baked = []
    for vi in list(graph.input):
        uses = [(n.op_type, k) for n in graph.node for k, x in enumerate(n.input) if x == vi.name]
        if vi.name in values and uses and all(k in SHAPE_LIKE_SLOTS.get(op, ()) for op, k in uses):
            graph.initializer.append(numpy_helper.from_array(values[vi.name], vi.name))
            graph.input.remove(vi)
            baked.append(vi.name)
    if baked:
        done.append("baked inputs " + ",".join(baked) + " into initializers")
    opset = case["opset"]
    if opset < 11:
        if not {n.op_type for n in graph.node} <= SAME_SINCE_6:
            return None
        for node in graph.node:
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            if "consumed_inputs" in attrs or attrs.get("spatial", 1) != 1:
                return None
            if node.op_type == "BatchNormalization":
                for a in [a for a in node.attribute if a.name in ("is_test", "spatial")]:
                    node.attribute.remove(a)
            if node.op_type == "Pad":
                pads_name, value_name = node.name + "_pads", node.name + "_value"
                import numpy as np
                graph.initializer.append(numpy_helper.from_array(
                    np.array(attrs.get("pads", attrs.get("paddings", [])), np.int64), pads_name))
                graph.initializer.append(numpy_helper.from_array(
                    np.array(attrs.get("value", 0.0), np.float32), value_name))
                for a in [a for a in node.attribute if a.name in ("pads", "paddings", "value")]:
                    node.attribute.remove(a)
                node.input.extend([pads_name, value_name])
        for o in model.opset_import:
            if o.domain in ("", "ai.onnx"):
                o.version = 11
        model.ir_version = max(model.ir_version, 6)
        done.append(f"opset {opset} -> 11")
    if not done:
        return None
    path = os.path.join(workdir, "probe_models", case["id"].replace("/", "__") + ".onnx")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    onnx.save(model, path)
    probe = dict(case, model=path, datasets=[ds], baked=set(baked),
                 work_key="probe/" + case["id"])
    return probe, "; ".join(done)


# ----------------------------------------------------------------------------- declined file

def read_declined(path):
    """{(backend, case): reason} from the declined file ('' reason when none)."""
    entries = {}
    if not os.path.exists(path):
        return entries
    with open(path, encoding="utf-8") as f:
        text = f.read()
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split(None, 2)
        if len(parts) >= 2:
            entries[(parts[0], parts[1])] = parts[2] if len(parts) > 2 else ""
    return entries


def write_declined(path, declined):
    lines = [
        "# ONNX conformance: the libonnx-testdata cases the runtime declines cleanly (exit 2),",
        "# one per line: <backend> <suite>/<case> <the runtime's one-line message>.",
        "# tools/onnx_conformance.py fails when the declined set differs from this file;",
        "# regenerate it with: /usr/bin/python3 tools/onnx_conformance.py --update-declined",
    ]
    for (backend, case), reason in sorted(declined.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        lines.append(f"{backend} {case} {reason}".rstrip())
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- report

def print_table(results, cases, backends, title, all_ops=()):
    statuses = ("pass", "declined", "wrong", "crash")
    ops = sorted({op for c in cases for op in c["ops"]} | set(all_ops))
    head = f"{'op':<20} {'sel':>4} " + " ".join(
        f"| {b:<3} {'pass':>4} {'decl':>4} {'wrong':>5} {'crash':>5}" for b in backends)
    print(f"\n{title}\n{head}\n{'-' * len(head)}")
    by_key = {(r["case"], r["backend"]): r for r in results}

    def row(label, subset):
        cells = []
        for b in backends:
            counts = {s: 0 for s in statuses}
            for c in subset:
                r = by_key.get((c["id"], b))
                if r:
                    counts[r["status"]] += 1
            cells.append(f"| {'':<3} {counts['pass']:>4} {counts['declined']:>4} "
                         f"{counts['wrong']:>5} {counts['crash']:>5}")
        print(f"{label:<20} {len(subset):>4} " + " ".join(cells))

    for op in ops:
        row(op, [c for c in cases if op in c["ops"]])
    print("-" * len(head))
    row("all cases", cases)


def run_probes(cases, results, backends, talkrender, args):
    """Reruns declined cases as rewritten models (make_probe) and prints what they do."""
    declined_ids = {r["case"] for r in results if r["status"] == "declined"}
    workdir = args.workdir or tempfile.mkdtemp(prefix="tr_conformance_probe_")
    try:
        probes = []
        for c in cases:
            if c["id"] in declined_ids:
                made = make_probe(c, workdir)
                if made:
                    probes.append(made)
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            futures = [(p, how, pool.submit(run_one, p, b, talkrender, workdir, args.timeout,
                                            args.infer_arg))
                       for p, how in probes for b in backends]
            probe_results = [(p, how, f.result()) for p, how, f in futures]
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    counts = {}
    for _, _, r in probe_results:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    print(f"\nprobes: {len(probes)} declined cases rewritten past the import-time refusal, "
          f"report only ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}):")
    for p, how, r in sorted(probe_results, key=lambda t: (t[2]["case"], t[2]["backend"])):
        print(f"  {r['status']:<8} {r['backend']:<3} {r['case']:<58} [{' '.join(r['features'])}] "
              f"({how}) {r['detail']}")
    for _, how, r in probe_results:
        r["probe"] = how
    results.extend(r for _, _, r in probe_results)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--talkrender", help="the talkrender binary (default: $TALKRENDER_BUILD/"
                    "talkrender, else build/talkrender)")
    ap.add_argument("--testdata", default="/usr/share/libonnx-testdata/data")
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--jobs", type=int, default=2, help="cases run in parallel")
    ap.add_argument("--timeout", type=float, default=60, help="seconds per case and backend")
    ap.add_argument("--declined", default=DEFAULT_DECLINED, help="the declined-cases file")
    ap.add_argument("--update-declined", action="store_true",
                    help="rewrite the declined file from this run")
    ap.add_argument("--min-pass-rate", type=float, default=0.85,
                    help="each backend must pass at least this fraction of selected cases")
    ap.add_argument("--filter", help="only cases whose id matches this regex (the declined "
                    "file is then compared on these cases only)")
    ap.add_argument("--extended", action="store_true",
                    help="also run the cases with non-float inputs (report only)")
    ap.add_argument("--probe", action="store_true",
                    help="after the run, rewrite declined cases past import-time refusals "
                    "(shape-like inputs baked into initializers, opset 6 -> 11) and run "
                    "those too (report only)")
    ap.add_argument("--list", action="store_true", help="print the selection and exit")
    ap.add_argument("--json", help="write every result to this JSON file")
    ap.add_argument("--workdir", help="keep the .npy files here (default: a temp dir, removed)")
    ap.add_argument("--infer-arg", action="append", default=[],
                    help="extra argument passed to every infer call (repeatable)")
    args = ap.parse_args()

    if not os.path.isdir(os.path.join(args.testdata, "node")):
        skip(f"{args.testdata}: libonnx-testdata is not installed (apt-get install libonnx-testdata)")
    try:
        import numpy  # noqa: F401
        import onnx  # noqa: F401
    except ImportError as e:
        skip(f"{sys.executable} lacks numpy/onnx ({e}); run with Debian's /usr/bin/python3")

    selected, extra = select_cases(args.testdata, SUPPORTED_OPS, extended=args.extended)
    if args.filter:
        rx = re.compile(args.filter)
        selected = [c for c in selected if rx.search(c["id"])]
        extra = [c for c in extra if rx.search(c["id"])]
    print(f"selected {len(selected)} cases (ops: {', '.join(SUPPORTED_OPS)}; one output; "
          f"float32 test inputs)" + (f"; +{len(extra)} extended (non-float inputs, report only)"
                                     if args.extended else ""))
    if args.list:
        for c in selected + extra:
            print(f"  {c['id']:<62} opset {c['opset']:>2}  {'+'.join(c['ops'])}"
                  f"  {' '.join(c['features'])}")
        return 0

    talkrender = args.talkrender
    if not talkrender:
        build = os.environ.get("TALKRENDER_BUILD", os.path.join(REPO_ROOT, "build"))
        talkrender = os.path.join(build, "talkrender")
    if not (os.path.isfile(talkrender) and os.access(talkrender, os.X_OK)):
        skip(f"{talkrender}: the talkrender binary is missing (build the 'talkrender' target)")
    backends = [b for b in args.backends.split(",") if b]

    workdir = args.workdir or tempfile.mkdtemp(prefix="tr_conformance_")
    started = time.monotonic()
    jobs = [(c, b) for c in selected + extra for b in backends]
    results = []
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            futures = [pool.submit(run_one, c, b, talkrender, workdir, args.timeout,
                                   args.infer_arg) for c, b in jobs]
            for f in futures:
                results.append(f.result())
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started

    selected_ids = {c["id"] for c in selected}
    gated = [r for r in results if r["case"] in selected_ids]
    print_table(gated, selected, backends, "per-op results (selected cases)", SUPPORTED_OPS)
    if extra:
        print_table([r for r in results if r["case"] not in selected_ids], extra, backends,
                    "per-op results (extended cases, report only)")

    declined = {(r["backend"], r["case"]): r["detail"] for r in gated if r["status"] == "declined"}
    print(f"\ndeclined ({len(declined)}):")
    for (b, case), reason in sorted(declined.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        feats = next(r["features"] for r in gated if r["case"] == case)
        print(f"  {b:<3} {case:<58} [{' '.join(feats)}] {reason}")

    bad = [r for r in gated if r["status"] in ("wrong", "crash")]
    print(f"\nwrong/crash ({len(bad)}):")
    for r in sorted(bad, key=lambda r: (r["case"], r["backend"])):
        print(f"  {r['status'].upper():<5} {r['backend']:<3} {r['case']} "
              f"[{' '.join(r['features'])}]: {r['detail']}")
    if extra:
        ext_bad = [r for r in results if r["case"] not in selected_ids and r["status"] != "pass"]
        print(f"\nextended cases not passing ({len(ext_bad)}, report only):")
        for r in sorted(ext_bad, key=lambda r: (r["case"], r["backend"])):
            print(f"  {r['status']:<8} {r['backend']:<3} {r['case']}: {r['detail']}")

    if args.probe:
        run_probes(selected + extra, results, backends, talkrender, args)

    failures = []
    if bad:
        failures.append(f"{len(bad)} wrong/crash results")
    for b in backends:
        n_pass = sum(1 for r in gated if r["backend"] == b and r["status"] == "pass")
        rate = n_pass / len(selected) if selected else 0.0
        print(f"pass rate {b}: {n_pass}/{len(selected)} = {rate:.1%}")
        if rate < args.min_pass_rate:
            failures.append(f"backend {b} passes {rate:.1%} < {args.min_pass_rate:.0%}")

    on_file = read_declined(args.declined)
    in_scope = {k: v for k, v in on_file.items() if k[1] in selected_ids and k[0] in backends}
    if args.filter:
        on_file = in_scope
    if args.update_declined:
        # With a filter, entries outside this run are kept.
        merged = {k: v for k, v in read_declined(args.declined).items()
                  if not (k[1] in selected_ids and k[0] in backends)} if args.filter else {}
        merged.update(declined)
        write_declined(args.declined, merged)
        print(f"\nwrote {args.declined} ({len(merged)} entries)")
    else:
        newly = sorted(set(declined) - set(on_file))
        gone = sorted(set(on_file) - set(declined))
        if newly or gone:
            print(f"\ndeclined set differs from {args.declined}:")
            for b, c in newly:
                print(f"  + {b} {c}   (declined now, not in the file)")
            for b, c in gone:
                now = next((r["status"] for r in gated if r["case"] == c and r["backend"] == b),
                           "not run")
                print(f"  - {b} {c}   (in the file, now: {now})")
            print("  (rerun with --update-declined once the change is intended)")
            failures.append("declined set differs from the declined file")

    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump({"selected": len(selected), "extended": len(extra), "results": results,
                       "failures": failures, "seconds": round(elapsed, 1)}, f, indent=1)
        os.replace(args.json + ".tmp", args.json)

    total = {s: sum(1 for r in gated if r["status"] == s)
             for s in ("pass", "declined", "wrong", "crash")}
    print(f"\n{len(jobs)} runs in {elapsed:.1f} s: " + ", ".join(f"{k} {v}" for k, v in total.items()))
    if failures:
        print("FAIL: " + "; ".join(failures))
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
