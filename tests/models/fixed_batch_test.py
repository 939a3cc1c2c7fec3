#!/usr/bin/python3
"""Fixed-batch model files at any batch (issue 16, acceptance 4).

Ultralight's pth2onnx.py exports opset 11 with the batch fixed at 1. The runtime relaxes such
a file's batch when shape inference proves the graph batch-agnostic, and otherwise runs a
batch as one call per sample (nn/fixed_batch.h, nn::run_in_calls). Checks:

  infer, on Ultralight's hubert model exported as pth2onnx.py does (ul-hubert, --fixed-batch 1
  --opset 11):
    * batch 4 (relaxed) equals four batch-1 runs, bit for bit, in both cpu layouts;
    * --keep-fixed-batch runs batch 4 as 4 calls (and says so), with the same output;
    * a copy with a batch-baking Reshape pair (x -> [1, -1] -> [1, 3, 160, 160]) is not
      relaxed: batch 4 runs as 4 calls, naming the Reshape, with the same output;
    * a file with a fixed batch of 2: batch 4 runs as 2 calls; batch 3 exits 2;
  render, on the sample package with aud_hu.npy-shaped features (skipped with a message
  where ../shared/data/sanders is absent, or where render does not take Ultralight's model):
    * --batch 4 writes the same PNG bytes as --batch 1, for the relaxed file and the
      batch-baking one (4 calls), and the report says which happened.

Exit 0 passed, 1 failed, 77 skipped (no torch / onnx / numpy, or no binary).
"""

import argparse
import json
import os
import subprocess
import sys

SKIP = 77
SOURCE_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
EXPORTER = os.path.join(SOURCE_ROOT, 'tools', 'export_models.py')
FRAMES = 6  # rendered frames: batch 4 then a padded last batch

results = []


def check(name, ok, detail=''):
    results.append((name, ok))
    print('%s %-66s %s' % ('PASS' if ok else 'FAIL', name, detail))


def run(cmd, env=None):
    full_env = dict(os.environ)
    full_env.pop('TALKRENDER_CPU_BLOCK', None)
    full_env.update(env or {})
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       errors='replace', env=full_env, timeout=900)
    return p.returncode, p.stdout, p.stderr


def export(work, name, model, flags):
    out = os.path.join(work, name)
    onnx_path = os.path.join(out, model + '.onnx')
    stamp = os.path.join(out, 'export.flags')
    want = ' '.join(flags)
    if os.path.exists(onnx_path) and os.path.exists(stamp) and open(stamp).read() == want:
        return onnx_path
    cmd = [sys.executable, EXPORTER, '--out', out, '--models', model, '--no-goldens'] + flags
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        print(p.stdout)
        return None
    with open(stamp, 'w') as f:
        f.write(want)
    return onnx_path


def bake_batch(src, dst):
    """src with Reshape(output, [1, -1]) -> Reshape(.., [1, 3, S, S]) appended: the same
    function at batch 1, but a graph that names the batch, as some exporters write."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper
    m = onnx.load(src)
    g = m.graph
    out = g.output[0]
    dims = [d.dim_value for d in out.type.tensor_type.shape.dim]
    old = out.name
    g.initializer.extend([numpy_helper.from_array(np.array([1, -1], np.int64), 'bake_flat'),
                          numpy_helper.from_array(np.array(dims, np.int64), 'bake_back')])
    for node in g.node:
        node.output[:] = [old + '_pre' if o == old else o for o in node.output]
    g.node.extend([
        helper.make_node('Reshape', [old + '_pre', 'bake_flat'], [old + '_flat'],
                         name='bake_flatten'),
        helper.make_node('Reshape', [old + '_flat', 'bake_back'], [old], name='bake_unflatten'),
    ])
    onnx.checker.check_model(m)
    onnx.save(m, dst)


def write_inputs(npy_dir, batch, audio_shape):
    import numpy as np
    rng = np.random.default_rng(20261202)
    image = rng.random((batch, 6, 160, 160), dtype=np.float32)
    audio = rng.standard_normal((batch,) + tuple(audio_shape), dtype=np.float32)
    paths = {}
    for b in range(batch):
        paths[b] = (os.path.join(npy_dir, 'input.%d.npy' % b),
                    os.path.join(npy_dir, 'audio.%d.npy' % b))
        np.save(paths[b][0], image[b:b + 1])
        np.save(paths[b][1], audio[b:b + 1])
    whole = (os.path.join(npy_dir, 'input.all.npy'), os.path.join(npy_dir, 'audio.all.npy'))
    np.save(whole[0], image)
    np.save(whole[1], audio)
    return paths, whole


def infer(tr, model, inputs, out, extra=(), env=None):
    cmd = [tr, 'infer', '--model', model, '--input', 'input=' + inputs[0], '--input',
           'audio=' + inputs[1], '--out', out, '--threads', '2'] + list(extra)
    return run(cmd, env)


def infer_checks(tr, work, relaxed_model, baked_model, fixed2_model):
    import numpy as np
    npy = os.path.join(work, 'npy')
    os.makedirs(npy, exist_ok=True)
    singles, whole = write_inputs(npy, 4, (16, 32, 32))
    for block in ('8', '16'):
        env = {'TALKRENDER_CPU_BLOCK': block}
        parts = []
        for b, paths in singles.items():
            out = os.path.join(npy, 'single.%d.b%s.npy' % (b, block))
            rc, _, err = infer(tr, relaxed_model, paths, out, env=env)
            if rc != 0:
                check('infer batch 1 (nChw%sc)' % block, False, err.strip()[-300:])
                return
            parts.append(np.load(out))
        want = np.concatenate(parts)
        runs = [('relaxed', relaxed_model, [], None),
                ('--keep-fixed-batch', relaxed_model, ['--keep-fixed-batch'], 'runs as 4 calls'),
                ('batch-baking Reshape', baked_model, [], 'bake_')]
        for label, model, extra, note in runs:
            out = os.path.join(npy, 'b4.%s.b%s.npy' % (label.strip('-').replace(' ', '_'), block))
            rc, _, err = infer(tr, model, whole, out, extra, env)
            ok = rc == 0
            got = np.load(out) if ok else None
            same = ok and got.shape == want.shape and np.array_equal(got, want)
            said = note is None and 'calls' not in err or note is not None and note in err
            check('infer batch 4, %s, nChw%sc: equals 4 batch-1 runs' % (label, block),
                  same and said,
                  ('max|diff| %g; stderr: %s' %
                   (float(np.abs(got - want).max()), err.strip()[-200:])
                   if ok and got.shape == want.shape else err.strip()[-300:]))
    # A fixed batch of 2 is not relaxed (only 1 is): 4 runs as 2 calls, 3 is refused.
    os.makedirs(os.path.join(npy, 'w16'), exist_ok=True)
    two = write_inputs(os.path.join(npy, 'w16'), 4, (16, 32, 32))[1]
    rc, _, err = infer(tr, fixed2_model, two, os.path.join(npy, 'w16.b4.npy'))
    halves = []
    for h in (0, 1):  # each half is one call of the file's own batch
        paths = [p.replace('.all.', '.half%d.' % h) for p in two]
        for src, dst in zip(two, paths):
            np.save(dst, np.load(src)[2 * h:2 * h + 2])
        out = os.path.join(npy, 'w16.half%d.npy' % h)
        rch, _, errh = infer(tr, fixed2_model, paths, out)
        halves.append(np.load(out) if rch == 0 else None)
    same = (rc == 0 and all(h is not None for h in halves) and
            np.array_equal(np.load(os.path.join(npy, 'w16.b4.npy')), np.concatenate(halves)))
    check('fixed batch 2: batch 4 runs as 2 calls, equal to two batch-2 runs',
          same and 'runs as 2 calls' in err, err.strip()[-300:])
    three = [p.replace('.all.', '.three.') for p in two]
    for src, dst in zip(two, three):
        np.save(dst, np.load(src)[:3])
    rc, _, err = infer(tr, fixed2_model, three, os.path.join(npy, 'w16.b3.npy'))
    check('fixed batch 2: batch 3 exits 2 with one line', rc == 2 and 'multiple' in err and
          len(err.strip().splitlines()) <= 2, err.strip()[-300:])


def render_checks(tr, work, relaxed_model, baked_model):
    import numpy as np
    # $TALKRENDER_SHARED is the shared data folder (tests/audio/test_util.h).
    data = os.environ.get('TALKRENDER_SHARED') or os.path.join(SOURCE_ROOT, '..', 'shared', 'data')
    package = os.path.join(data, 'sanders')
    if not os.path.isfile(os.path.join(package, 'full_body_video.mp4')):
        print('SKIP render checks: the sample package %s is absent' % package)
        return
    features = os.path.join(work, 'aud_hu.npy')  # as Ultralight writes it: [n, 2, 1024]
    np.save(features, np.random.default_rng(7).standard_normal((FRAMES + 4, 2, 1024))
            .astype(np.float32))
    frames = {}
    for label, model, batch in (('relaxed', relaxed_model, 1), ('relaxed', relaxed_model, 4),
                                ('baked', baked_model, 4)):
        out = os.path.join(work, 'render.%s.b%d' % (label, batch))
        report = out + '.json'
        cmd = [tr, 'render', '--package', package, '--generator', model, '--features', features,
               '--frames', str(FRAMES), '--batch', str(batch), '--threads', '2', '--no-progress',
               '--overwrite', '--report-json', report, '--out', out + '/']
        rc, _, err = run(cmd)
        if rc != 0 and 'not a known mode' in err:
            print('SKIP render checks: render does not take Ultralight\'s model yet (%s)' %
                  err.strip()[-200:])
            return
        if rc != 0:
            check('render %s --batch %d' % (label, batch), False, err.strip()[-300:])
            return
        names = sorted(os.listdir(out))
        frames[(label, batch)] = [open(os.path.join(out, n), 'rb').read() for n in names]
        with open(report) as f:
            note = json.load(f).get('fixed_batch', '')
        want = {('relaxed', 1): 'made dynamic', ('relaxed', 4): 'made dynamic',
                ('baked', 4): 'B=4 runs as 4 calls of 1'}[(label, batch)]
        check('render %s --batch %d: report says "%s"' % (label, batch, want), want in note,
              repr(note))
    base = frames[('relaxed', 1)]
    check('render wrote %d frames' % FRAMES, len(base) == FRAMES, '%d' % len(base))
    for key in (('relaxed', 4), ('baked', 4)):
        same = [a == b for a, b in zip(base, frames[key])]
        check('render %s --batch 4: the same PNG bytes as --batch 1' % key[0],
              len(frames[key]) == len(base) and all(same),
              'differing frames: %s' % [i for i, s in enumerate(same) if not s])


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--talkrender', default=os.path.join(
        os.environ.get('TALKRENDER_BUILD', os.path.join(SOURCE_ROOT, 'build')), 'talkrender'))
    ap.add_argument('--work', default=os.path.join(
        os.environ.get('TALKRENDER_BUILD', os.path.join(SOURCE_ROOT, 'build')), 'tests',
        'fixed_batch'))
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    try:
        import numpy  # noqa: F401
        import onnx  # noqa: F401
        import torch  # noqa: F401
    except ImportError as e:
        print('SKIP: %s lacks torch/onnx/numpy (%s)' % (sys.executable, e))
        return SKIP
    if not os.access(args.talkrender, os.X_OK):
        print('SKIP: %s is not built' % args.talkrender)
        return SKIP
    os.makedirs(args.work, exist_ok=True)
    relaxed = export(args.work, 'ul-hubert.fixed1', 'ul-hubert',
                     ['--non-saturated', '--fixed-batch', '1', '--opset', '11'])
    fixed2 = export(args.work, 'ul-hubert.w16.fixed2', 'ul-hubert',
                    ['--non-saturated', '--fixed-batch', '2', '--opset', '11', '--widths',
                     '16,32,64,128,256'])
    if not relaxed or not fixed2:
        check('export', False)
        return 1
    baked = os.path.join(args.work, 'ul-hubert.fixed1.baked.onnx')
    bake_batch(relaxed, baked)
    infer_checks(args.talkrender, args.work, relaxed, baked, fixed2)
    render_checks(args.talkrender, args.work, relaxed, baked)
    failed = [n for n, ok in results if not ok]
    print('%d of %d checks passed' % (len(results) - len(failed), len(results)))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
