#!/usr/bin/python3
"""How close a speed target is to what oneDNN's kernels can do on this CPU: the sum of every
conv layer of a model run alone (bench_conv_floor: one oneDNN primitive per layer, weights
and activations hot in cache, best of 15), beside ONNX Runtime (the yardstick) and
talkrender's whole plan, the three alternating round by round.

  /usr/bin/python3 bench/conv_floor.py --model gen160-hubert.onnx --batches 1,4 \\
      [--floor build/bench_conv_floor] [--talkrender build/talkrender] \\
      [--ort ../shared/yardstick/ort-bench] [--rounds 3] [--threads 2]

The floor leaves out everything that is not a conv (resize, concat, conversions), and a plan
pays for weights and activations coming from memory rather than cache, so a plan's real
time is above it; a target below the floor needs fewer FLOPs or better kernels, not a better
plan. Prints ms/frame, best (min) and median over rounds; nothing is asserted.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

import onnx
from onnx import shape_inference

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_vs_ort import ort_run, ours_run  # noqa: E402  (the same two engine runs)


def conv_lines(model_path, batch):
    """One line per Conv: batch in_c out_c height width kernel stride pad group name."""
    m = onnx.load(model_path)
    for i in m.graph.input:
        dims = i.type.tensor_type.shape.dim
        if dims and not dims[0].dim_value:
            dims[0].dim_value = batch
    m = shape_inference.infer_shapes(m)
    shapes = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
              for vi in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output)}
    inits = {t.name: list(t.dims) for t in m.graph.initializer}
    lines = []
    for n in m.graph.node:
        if n.op_type != 'Conv':
            continue
        w = inits.get(n.input[1])
        x = shapes.get(n.input[0]) or []
        y = shapes.get(n.output[0]) or []
        attrs = {a.name: (list(a.ints) if a.ints else a.i) for a in n.attribute}
        group = attrs.get('group', 1)
        pads = attrs.get('pads', [0, 0, 0, 0])
        strides = attrs.get('strides', [1, 1])
        if not w or len(set(pads)) > 1 or strides[0] != strides[1] or w[2] != w[3]:
            raise SystemExit('%s: conv %s has no weights or is not square (pads %s, strides '
                             '%s)' % (model_path, n.name, pads, strides))
        if len(x) != 4 or not x[2] or not x[3]:
            # ONNX's shape inference loses some spatial sizes (after Resize); a stride-1 conv's
            # input size follows from its output's.
            if strides[0] != 1 or len(y) != 4 or not y[2] or not y[3]:
                raise SystemExit('%s: conv %s has no static input shape' % (model_path, n.name))
            x = [batch, w[1] * group, y[2] + w[2] - 1 - 2 * pads[0], y[3] + w[3] - 1 - 2 * pads[0]]
        lines.append('%d %d %d %d %d %d %d %d %d %s' % (
            batch, w[1] * group, w[0], x[2], x[3], w[2], strides[0], pads[0], group,
            n.name or 'conv%d' % len(lines)))
    return lines


def run_floor(floor, lines, threads):
    with tempfile.NamedTemporaryFile('w', suffix='.txt', delete=False) as f:
        f.write('\n'.join(lines) + '\n')
    try:
        out = subprocess.run([floor, f.name], stdout=subprocess.PIPE, text=True, check=True,
                             env=dict(os.environ, OMP_NUM_THREADS=str(threads))).stdout
    finally:
        os.unlink(f.name)
    got = {}
    for line in out.splitlines():
        if line.startswith('floor '):
            layout = line.split()[1].rstrip(':')
            got[layout] = float(line.split()[2])
    return got


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    ap.add_argument('--model', action='append', required=True)
    ap.add_argument('--batches', default='1,4')
    ap.add_argument('--floor', default=os.path.join(root, 'build/bench_conv_floor'))
    ap.add_argument('--talkrender', default=os.path.join(root, 'build/talkrender'))
    ap.add_argument('--ort', default=os.path.join(root, '../shared/yardstick/ort-bench'))
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--threads', type=int, default=2)
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    for tool in (args.floor, args.talkrender):
        if not os.access(tool, os.X_OK):
            raise SystemExit('not found or not executable: ' + tool)
    have_ort = os.access(args.ort, os.X_OK)
    batches = [int(b) for b in args.batches.split(',')]
    print('uptime before: ' + subprocess.run(['uptime'], stdout=subprocess.PIPE,
                                             text=True).stdout.strip())
    times = {}  # (model, what, batch) -> [ms/frame]
    for r in range(args.rounds):
        for model in args.model:
            name = os.path.basename(model)
            if have_ort:
                for b, ms in ort_run(args.ort, model, args.batches, args.threads).items():
                    times.setdefault((name, 'ort', b), []).append(ms)
            got, _ = ours_run(args.talkrender, model, args.batches, args.threads, 'fp32', 5)
            for b, ms in got.items():
                times.setdefault((name, 'talkrender', b), []).append(ms)
            for b in batches:
                for layout, ms in run_floor(args.floor, conv_lines(model, b),
                                            args.threads).items():
                    times.setdefault((name, 'floor ' + layout, b), []).append(ms)
            print('  round %d %s done' % (r + 1, name))
    print('uptime after: ' + subprocess.run(['uptime'], stdout=subprocess.PIPE,
                                            text=True).stdout.strip())
    whats = (['ort'] if have_ort else []) + ['talkrender', 'floor nChw16c', 'floor nChw8c',
                                             'floor nhwc']
    print('\nms/frame, best (min) / median over %d rounds, %d threads' % (args.rounds,
                                                                           args.threads))
    head = '| model | batch | ' + ' | '.join(whats)
    head += ' | 0.75 x ort (best) | floor nChw16c / ort (best) |' if have_ort else ' |'
    print(head)
    print('|' + '---|' * (head.count('|') - 1))
    for model in args.model:
        name = os.path.basename(model)
        for b in batches:
            cells = []
            for w in whats:
                v = times.get((name, w, b), [])
                cells.append('%.1f / %.1f' % (min(v), statistics.median(v)) if v else '-')
            row = '| %s | %d | %s |' % (name, b, ' | '.join(cells))
            if have_ort:
                ort = min(times[(name, 'ort', b)])
                row += ' %.1f | %.2f |' % (0.75 * ort, min(times[(name, 'floor nChw16c', b)]) / ort)
            print(row)
    return 0


if __name__ == '__main__':
    sys.exit(main())
