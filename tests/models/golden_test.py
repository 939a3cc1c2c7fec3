#!/usr/bin/python3
"""Model-level golden tests: export a model with tools/export_models.py (PyTorch), run it
through `talkrender infer` on each backend at each golden batch size, and compare with
PyTorch's output. Each export is first evaluated by a numpy reference evaluator
(onnx_numpy_ref.py) at the smallest golden batch, so an exporter problem is told apart
from an engine problem.

Backends: ref, cpu, and cpu-b8 / cpu-b16: the cpu backend with its activation layout forced
to nChw8c / nChw16c (TALKRENDER_CPU_BLOCK), so both layouts are checked on any CPU; cpu-bf16:
the cpu backend with --precision bf16, generators only, and only where the CPU has native
bf16 (AVX512_BF16 or AMX; skipped elsewhere, saying so). The default runs ref, cpu-b8,
cpu-b16 and cpu-bf16 (plain cpu is one of the two layouts).

Tolerances: generators max |diff| <= 1e-4 (outputs are in [0, 1]); the encoder
max |diff| <= 1e-4 * max |golden| (its outputs are unbounded ReLU features); bf16
generators PSNR >= 40 dB and max |diff| <= 0.08 (as tests/nn/cpu_generator_test.cc).

Run with Debian's Python (/usr/bin/python3: torch, onnx, numpy). Exit 0 all passed,
1 a case failed, 77 skipped (ctest SKIP_RETURN_CODE): PyTorch/onnx missing, or the
talkrender binary / its `infer` command not built yet (the export checks still
run first and must pass).
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time

SKIP = 77
SOURCE_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
EXPORTER = os.path.join(SOURCE_ROOT, 'tools', 'export_models.py')
MODEL_ARCH = os.path.join(SOURCE_ROOT, 'tools', 'model_arch.py')

GENERATORS = ['gen320-ave', 'gen320-hubert', 'gen320-wenet', 'gen160-ave', 'gen160-hubert',
              'gen160-wenet', 'ul-hubert', 'ul-wenet']

# case name -> (model, exporter flags). The main cases use --non-saturated weights:
# with PyTorch's default init a generator's output is a flat ~0.5 image that hides
# numeric errors; calibrated weights make the output depend on every layer.
CASES = {}
for _m in GENERATORS + ['encoder']:
    CASES[_m] = (_m, ['--non-saturated'])
# Export variants users produce: every opset the contract names, static and dynamic batch.
for _m in ['gen320-ave', 'encoder']:
    for _opset in (11, 13, 17):
        if _opset != 17:
            CASES['%s.opset%d' % (_m, _opset)] = (_m, ['--non-saturated', '--opset', str(_opset)])
        CASES['%s.opset%d-static' % (_m, _opset)] = (_m, [
            '--non-saturated', '--opset', str(_opset), '--static-batch', '1'])
    # BatchNormalization nodes left in the graph (the engine must fold them itself).
    CASES[_m + '.keep-bn'] = (_m, ['--non-saturated', '--keep-batchnorm'])
# Plain random weights (the contract's section 6 models) and untrained BatchNorm, whose
# export carries Identity nodes on shared initialisers.
CASES['gen320-ave.plain'] = ('gen320-ave', [])
CASES['gen320-ave.untrained-bn'] = ('gen320-ave', ['--untrained-batchnorm'])
# Ultralight's own model: the narrow widths its code offers for weak devices, and the export
# its pth2onnx.py writes (opset 11, batch fixed at 1; goldens at batch 1 and 3, since the
# runtime relaxes a batch-agnostic fixed batch of 1).
CASES['ul-hubert.w16'] = ('ul-hubert', ['--non-saturated', '--widths', '16,32,64,128,256'])
CASES['ul-wenet.w16'] = ('ul-wenet', ['--non-saturated', '--widths', '16,32,64,128,256'])
CASES['ul-hubert.opset11-fixed1'] = ('ul-hubert', ['--non-saturated', '--opset', '11',
                                                   '--fixed-batch', '1', '--golden-batch',
                                                   '1,3'])

GENERATOR_ABS_TOL = 1e-4
ENCODER_REL_TOL = 1e-4
BF16_MIN_PSNR_DB = 40.0
BF16_ABS_TOL = 0.08


def skip(message):
    print('SKIP: ' + message)
    sys.exit(SKIP)


def file_digest(*paths):
    h = hashlib.sha256()
    for p in paths:
        with open(p, 'rb') as f:
            h.update(f.read())
    return h.hexdigest()[:16]


def export_case(case, workdir, seed):
    """Exports into workdir/<case>/ unless an export with the same exporter, flags and
    seed is already there (exports cost tens of seconds on 2 cores)."""
    model, flags = CASES[case]
    out_dir = os.path.join(workdir, case)
    cmd = [sys.executable, EXPORTER, '--out', out_dir, '--models', model, '--seed',
           str(seed)] + flags
    stamp = {'cmd': cmd[2:], 'exporter': file_digest(EXPORTER, MODEL_ARCH)}
    stamp_path = os.path.join(out_dir, 'export.stamp')
    try:
        with open(stamp_path) as f:
            if json.load(f) == stamp:
                print('[%s] reusing export in %s' % (case, out_dir))
                return out_dir
    except (OSError, ValueError):
        pass
    os.makedirs(out_dir, exist_ok=True)
    print('[%s] exporting: %s' % (case, ' '.join(cmd)))
    t0 = time.monotonic()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout.splitlines():
        print('    ' + line)
    if proc.returncode != 0:
        print('FAIL [%s] exporter exited %d' % (case, proc.returncode))
        return None
    print('[%s] export took %.1f s' % (case, time.monotonic() - t0))
    tmp = stamp_path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(stamp, f)
    os.replace(tmp, stamp_path)
    return out_dir


def find_talkrender(explicit):
    """Returns (path, None) or (None, why it cannot be used)."""
    path = explicit
    if not path:
        build = os.environ.get('TALKRENDER_BUILD', os.path.join(SOURCE_ROOT, 'build'))
        path = os.path.join(build, 'talkrender')
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        return None, '%s: the talkrender binary is missing (build the talkrender target)' % path
    # The placeholder `infer` answers every call with "is not built yet".
    proc = subprocess.run([path, 'infer', '--help'], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, errors='replace')
    if 'not built yet' in proc.stdout:
        return None, '`talkrender infer` is still a placeholder (%s)' % proc.stdout.strip()
    return path, None


def check_export_with_numpy(case, model, out_dir, batch, input_names):
    """The exported graph itself, evaluated by onnx_numpy_ref (float64), must match the
    golden: this separates exporter problems from engine problems."""
    import numpy as np
    import onnx_numpy_ref
    prefix = os.path.join(out_dir, '%s.b%d' % (model, batch))
    feeds = {n: np.load('%s.%s.npy' % (prefix, n)) for n in input_names}
    label = '%s b%d numpy-ref' % (case, batch)
    t0 = time.monotonic()
    try:
        got = onnx_numpy_ref.run(os.path.join(out_dir, model + '.onnx'), feeds)
    except NotImplementedError as e:
        print('FAIL %-40s the numpy evaluator cannot run this export: %s' % (label, e))
        return (label, False)
    ok, text = compare(model, got, np.load(prefix + '.output.npy'))
    print('%s %-40s %s [%.1f s]' % ('PASS' if ok else 'FAIL', label, text,
                                     time.monotonic() - t0))
    return (label, ok)


def compare(model, got, want, bf16=False):
    """Returns (ok, one-line description)."""
    import numpy as np
    if got.shape != want.shape:
        return False, 'shape %s, expected %s' % (got.shape, want.shape)
    if got.dtype != np.float32:
        return False, 'dtype %s, expected float32' % got.dtype
    if not np.all(np.isfinite(got)):
        return False, '%d non-finite values' % int(np.sum(~np.isfinite(got)))
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    worst = np.unravel_index(int(np.argmax(diff)), diff.shape)
    max_diff = float(diff[worst])
    if model == 'encoder':
        scale = float(np.max(np.abs(want)))
        tol = ENCODER_REL_TOL * max(scale, 1e-12)
        kind = 'rel tol %.0e x max|golden| %.4g = %.3g' % (ENCODER_REL_TOL, scale, tol)
    elif bf16:
        tol = BF16_ABS_TOL
        kind = 'abs tol %.2g' % tol
    else:
        tol = GENERATOR_ABS_TOL
        kind = 'abs tol %.0e' % tol
    over = int(np.sum(diff > tol))
    mse = float(np.mean(diff * diff))
    psnr = 999.0 if mse == 0 else 10 * np.log10(1.0 / mse)
    text = ('max|diff| %.3g (%s) at %s: got %.7g want %.7g; mean|diff| %.3g; %d of %d over' %
            (max_diff, kind, tuple(int(i) for i in worst), float(got[worst]), float(want[worst]),
             float(diff.mean()), over, diff.size))
    ok = max_diff <= tol
    if bf16:
        text += '; PSNR %.1f dB (min %.0f)' % (psnr, BF16_MIN_PSNR_DB)
        ok = ok and psnr >= BF16_MIN_PSNR_DB
    return ok, text


def cpu_flags():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('flags'):
                    return set(line.split(':', 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_avx512():
    return 'avx512f' in cpu_flags()


def cpu_has_native_bf16():
    """What the runtime's --precision bf16 needs (AVX512_BF16, or AMX's bf16)."""
    flags = cpu_flags()
    return 'avx512_bf16' in flags or 'amx_bf16' in flags


def run_case(case, workdir, talkrender, backends, seed, timeout, extra_infer_args,
             numpy_check):
    import numpy as np
    model = CASES[case][0]
    out_dir = export_case(case, workdir, seed)
    if out_dir is None:
        return [('export', False)]
    with open(os.path.join(out_dir, model + '.json')) as f:
        info = json.load(f)
    input_names = list(info['inputs'].keys())
    results = []
    if numpy_check and info['golden_batches']:
        results.append(check_export_with_numpy(case, model, out_dir, min(info['golden_batches']),
                                               input_names))
    if talkrender is None:
        return results
    for batch in info['golden_batches']:
        prefix = os.path.join(out_dir, '%s.b%d' % (model, batch))
        want = np.load(prefix + '.output.npy')
        for backend in backends:
            label = '%s b%d %s' % (case, batch, backend)
            if backend == 'cpu-bf16':
                if model == 'encoder':
                    continue  # the generators' check; the encoder's tolerance is fp32's
                if not cpu_has_native_bf16():
                    print('SKIP %-40s this CPU has no native bf16 (AVX512_BF16 or AMX); the '
                          'bf16 path is checked where it has' % label)
                    continue
            # nChw16c without AVX-512 runs oneDNN's naive kernels (minutes per generator
            # frame): the smallest golden batch checks the layout, the others are skipped.
            if (backend == 'cpu-b16' and batch != min(info['golden_batches']) and
                    not cpu_has_avx512()):
                print('SKIP %-40s nChw16c on a CPU without AVX-512 runs naive kernels; '
                      'checked at batch %d only' % (label, min(info['golden_batches'])))
                continue
            got_path = '%s.%s.got.npy' % (prefix, backend)
            if os.path.exists(got_path):
                os.unlink(got_path)
            cmd = [talkrender, 'infer', '--model', os.path.join(out_dir, model + '.onnx')]
            for name in input_names:
                cmd += ['--input', '%s=%s.%s.npy' % (name, prefix, name)]
            env = dict(os.environ)
            engine = backend
            precision = []
            if backend == 'cpu-bf16':
                engine = 'cpu'
                precision = ['--precision', 'bf16']
            elif backend.startswith('cpu-b'):
                engine = 'cpu'
                env['TALKRENDER_CPU_BLOCK'] = backend[len('cpu-b'):]
            cmd += ['--out', got_path, '--backend', engine] + precision + extra_infer_args
            t0 = time.monotonic()
            try:
                proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True, errors='replace', timeout=timeout, env=env)
            except subprocess.TimeoutExpired:
                print('FAIL %-40s infer timed out after %d s: %s' % (label, timeout, ' '.join(cmd)))
                results.append((label, False))
                continue
            seconds = time.monotonic() - t0
            if proc.returncode != 0:
                print('FAIL %-40s infer exited %d: %s\n     command: %s' %
                      (label, proc.returncode, proc.stdout.strip()[-600:], ' '.join(cmd)))
                results.append((label, False))
                continue
            try:
                got = np.load(got_path, allow_pickle=False)
            except Exception as e:  # missing or malformed .npy
                print('FAIL %-40s output %s unreadable: %s' % (label, got_path, e))
                results.append((label, False))
                continue
            ok, text = compare(model, got, want, bf16=backend == 'cpu-bf16')
            print('%s %-40s %s [infer %.1f s]' % ('PASS' if ok else 'FAIL', label, text, seconds))
            if not ok:
                print('     command: ' + ' '.join(cmd))
            results.append((label, ok))
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--case', action='append', default=[],
                    help='case to run (repeatable; default: all); see --list')
    ap.add_argument('--list', action='store_true', help='print the case names and exit')
    ap.add_argument('--talkrender', help='the binary (default: $TALKRENDER_BUILD/talkrender)')
    ap.add_argument('--work', help='export directory (default: '
                    '$TALKRENDER_BUILD/tests/models)')
    ap.add_argument('--backends', default='ref,cpu-b8,cpu-b16,cpu-bf16',
                    help='comma-separated: ref, cpu, cpu-b8, cpu-b16, cpu-bf16 (default '
                    '%(default)s)')
    ap.add_argument('--seed', type=int, default=1234)
    ap.add_argument('--timeout', type=int, default=600, help='seconds per infer call')
    ap.add_argument('--no-numpy-check', action='store_true',
                    help='skip evaluating each export with the numpy reference evaluator')
    ap.add_argument('--infer-arg', action='append', default=[],
                    help='extra argument for every infer call (repeatable)')
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress shows up live under ctest
    if args.list:
        print('\n'.join(CASES))
        return 0
    cases = args.case or list(CASES)
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        print('error: unknown case(s) %s; see --list' % ', '.join(unknown))
        return 2
    try:
        import numpy  # noqa: F401
        import onnx  # noqa: F401
        import torch  # noqa: F401
    except ImportError as e:
        skip('%s lacks torch/onnx/numpy (%s); run with Debian\'s /usr/bin/python3' %
             (sys.executable, e))
    talkrender, unavailable = find_talkrender(args.talkrender)
    if unavailable:
        print('NOTE: %s; checking the exports only' % unavailable)
    workdir = args.work or os.path.join(
        os.environ.get('TALKRENDER_BUILD', os.path.join(SOURCE_ROOT, 'build')), 'tests',
        'models')
    backends = [b for b in args.backends.split(',') if b]
    results = []
    for case in cases:
        results += run_case(case, workdir, talkrender, backends, args.seed, args.timeout,
                            args.infer_arg, not args.no_numpy_check)
    failed = [label for label, ok in results if not ok]
    print('%d of %d checks passed' % (len(results) - len(failed), len(results)))
    for label in failed:
        print('  failed: ' + label)
    if failed:
        return 1
    if unavailable:
        skip(unavailable + ' (the exports themselves passed their checks)')
    return 0 if results else 1


if __name__ == '__main__':
    sys.exit(main())
