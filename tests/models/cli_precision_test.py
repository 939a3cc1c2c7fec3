#!/usr/bin/python3
"""`talkrender infer` / `infer-bench` on the cpu backend: precision, ISA, profile, and the truth
of infer-bench on a model exported with a fixed batch.

Checks (each prints PASS/FAIL/SKIP with the reason):
  * infer-bench on a fixed-batch-1 generator at --batch 1,4 runs batch 4 as 4 calls and says
    so (calls_per_run 4, model_batch 1), never one call divided by 4; on a fixed-batch-2
    encoder, --batch 3 exits 2 and --batch 4 runs 2 calls;
  * --json names the precision and the ISA/layout that ran; DNNL_MAX_CPU_ISA=AVX2 gives avx2
    and nChw8c, TALKRENDER_CPU_BLOCK=16 forces nChw16c;
  * --precision bf16 on a CPU without native bf16 exits 2 naming what it lacks (forced on any
    CPU with DNNL_MAX_CPU_ISA=AVX512_CORE and =AVX2); fp16 on cpu exits 2;
  * --precision bf16 / auto where the CPU has native bf16 run bf16 (skipped elsewhere);
  * --profile prints every layer's implementation and a per-op-type sum; no conv runs on a
    `ref:` kernel, and on an AVX-512 CPU none on an avx2 one.

Exit 0 all passed, 1 a check failed, 77 skipped (no torch or no binary).
"""

import argparse
import json
import os
import subprocess
import sys

SKIP = 77
SOURCE_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
EXPORTER = os.path.join(SOURCE_ROOT, 'tools', 'export_models.py')

results = []


def check(name, ok, detail=''):
    results.append((name, ok))
    print('%s %-60s %s' % ('PASS' if ok else 'FAIL', name, detail))


def run(cmd, env=None):
    full_env = dict(os.environ)
    full_env.pop('TALKRENDER_CPU_BLOCK', None)
    full_env.pop('DNNL_MAX_CPU_ISA', None)
    full_env.update(env or {})
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       errors='replace', env=full_env, timeout=900)
    return p.returncode, p.stdout, p.stderr


def export(work, name, model, batch):
    out = os.path.join(work, name)
    onnx = os.path.join(out, model + '.onnx')
    if os.path.exists(onnx):
        return onnx
    cmd = [sys.executable, EXPORTER, '--out', out, '--models', model, '--non-saturated',
           '--static-batch', str(batch), '--no-goldens']
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        print(p.stdout)
        return None
    return onnx


def bench_json(tr, model, batches, env=None, extra=()):
    rc, out, err = run([tr, 'infer-bench', '--model', model, '--batch', batches, '--threads',
                        '2', '--runs', '5', '--json'] + list(extra), env)
    rows = [json.loads(l) for l in out.splitlines() if l.startswith('{')]
    return rc, rows, err


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--talkrender', required=True)
    ap.add_argument('--work', required=True)
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    try:
        import torch  # noqa: F401
    except ImportError as e:
        print('SKIP: no torch (%s): the models cannot be exported' % e)
        return SKIP
    if not os.access(args.talkrender, os.X_OK):
        print('SKIP: %s not built' % args.talkrender)
        return SKIP
    tr = args.talkrender
    gen = export(args.work, 'gen160-static1', 'gen160-ave', 1)
    enc2 = export(args.work, 'encoder-static2', 'encoder', 2)
    if not gen or not enc2:
        check('export fixed-batch models', False)
        return 1

    # The truth of infer-bench on fixed-batch models.
    rc, rows, err = bench_json(tr, gen, '1,4')
    by_batch = {r['batch']: r for r in rows}
    check('fixed batch 1: infer-bench --batch 1,4 exits 0', rc == 0, err.strip()[-300:])
    if rc == 0:
        r4 = by_batch.get(4, {})
        check('fixed batch 1: batch 4 runs as 4 calls', r4.get('calls_per_run') == 4 and
              r4.get('model_batch') == 1, json.dumps(r4))
        check('fixed batch 1: batch 1 is 1 call', by_batch.get(1, {}).get('calls_per_run') == 1)
        # Figures, not an assertion: the old lie showed batch 4 at ~1/4 of batch 1.
        print('     ms/frame: batch 1 %.2f, batch 4 %.2f' %
              (by_batch[1]['ms_per_frame'], r4.get('ms_per_frame', float('nan'))))
    rc, out, err = run([tr, 'infer-bench', '--model', gen, '--batch', '2', '--threads', '2',
                        '--runs', '5'])
    check('fixed batch 1: the table says so', rc == 0 and 'fixed batch of 1' in out,
          out.splitlines()[1] if len(out.splitlines()) > 1 else err.strip()[-200:])
    rc, rows, err = bench_json(tr, enc2, '3')
    check('fixed batch 2: --batch 3 exits 2 with a message',
          rc == 2 and 'fixed batch of 2' in err, err.strip()[-300:])
    rc, rows, err = bench_json(tr, enc2, '4')
    check('fixed batch 2: --batch 4 runs 2 calls',
          rc == 0 and rows and rows[0]['calls_per_run'] == 2, json.dumps(rows))

    # Precision, ISA and layout.
    rc, rows, err = bench_json(tr, gen, '1')
    native = False
    if rc == 0 and rows:
        r = rows[0]
        check('--json names precision, isa and layout',
              r.get('precision') == 'fp32' and r.get('isa') not in (None, '', '-') and
              r.get('layout', '').startswith('nChw'), json.dumps(r))
        native = r['isa'] in ('avx512_core_bf16', 'avx512_core_amx')
        avx512 = r['isa'].startswith('avx512_core')
        if avx512:
            check('AVX-512 CPU: layout nChw16c', r['layout'] == 'nChw16c', r['layout'])
    else:
        check('infer-bench --json', False, err.strip()[-300:])
        avx512 = False
    rc, rows, err = bench_json(tr, gen, '1', {'DNNL_MAX_CPU_ISA': 'AVX2'})
    check('DNNL_MAX_CPU_ISA=AVX2: isa avx2, layout nChw8c',
          rc == 0 and rows and rows[0]['isa'] == 'avx2' and rows[0]['layout'] == 'nChw8c',
          json.dumps(rows) + err.strip()[-200:])
    # (The small encoder: nChw16c on an AVX2-only CPU runs slower kernels.)
    rc, rows, err = bench_json(tr, enc2, '2', {'DNNL_MAX_CPU_ISA': 'AVX2',
                                              'TALKRENDER_CPU_BLOCK': '16'})
    check('TALKRENDER_CPU_BLOCK=16 on avx2: layout nChw16c',
          rc == 0 and rows and rows[0]['layout'] == 'nChw16c', json.dumps(rows))
    inputs = []
    npy_dir = os.path.join(args.work, 'npy')
    os.makedirs(npy_dir, exist_ok=True)
    import numpy as np
    rng = np.random.default_rng(7)
    for name, shape in (('input', (1, 6, 160, 160)), ('audio', (1, 32, 16, 16))):
        path = os.path.join(npy_dir, name + '.npy')
        np.save(path, rng.random(shape, dtype=np.float32))
        inputs += ['--input', '%s=%s' % (name, path)]
    out_npy = os.path.join(npy_dir, 'out.npy')
    infer = [tr, 'infer', '--model', gen] + inputs + ['--out', out_npy, '--threads', '2']
    for isa in ('AVX512_CORE', 'AVX2'):
        rc, out, err = run(infer + ['--precision', 'bf16'], {'DNNL_MAX_CPU_ISA': isa})
        check('infer --precision bf16 with DNNL_MAX_CPU_ISA=%s exits 2' % isa,
              rc == 2 and 'AVX512_BF16' in err and 'lacks' in err, err.strip()[-300:])
        rc, out, err = run(infer + ['--precision', 'auto'], {'DNNL_MAX_CPU_ISA': isa})
        check('infer --precision auto with DNNL_MAX_CPU_ISA=%s runs (fp32)' % isa, rc == 0,
              err.strip()[-300:])
    rc, out, err = run(infer + ['--precision', 'fp16'])
    check('infer --precision fp16 on cpu exits 2', rc == 2 and 'fp16' in err,
          err.strip()[-200:])
    if native:
        rc, rows, err = bench_json(tr, gen, '1', extra=['--precision', 'bf16'])
        check('native bf16: infer-bench --precision bf16 runs bf16',
              rc == 0 and rows and rows[0]['precision'] == 'bf16', json.dumps(rows))
        # auto takes bf16 only where it was measured faster than fp32: AMX, or AMD's
        # AVX512_BF16 (Zen 4/5); Intel's AVX512_BF16 without AMX runs it slower than fp32.
        with open('/proc/cpuinfo') as f:
            amd = 'AuthenticAMD' in f.read()
        want = 'bf16' if (rows and rows[0]['isa'] == 'avx512_core_amx') or amd else 'fp32'
        rc, rows, err = bench_json(tr, gen, '1', extra=['--precision', 'auto'])
        check('native bf16: --precision auto runs %s on this %s CPU' %
              (want, 'AMD' if amd else 'non-AMD'),
              rc == 0 and rows and rows[0]['precision'] == want, json.dumps(rows))
    else:
        print('SKIP native bf16 runs: this CPU has no native bf16 (checked where it has)')

    # --profile: per layer and per op type; no slow conv kernels.
    for precision in (['fp32', 'bf16'] if native else ['fp32']):
        rc, out, err = run([tr, 'infer-bench', '--model', gen, '--batch', '1', '--threads', '2',
                            '--runs', '5', '--profile', '--precision', precision])
        ok = rc == 0 and 'by op type:' in out and 'implementation' in out
        check('--profile %s prints layers and op types' % precision, ok, err.strip()[-200:])
        conv_lines = [l for l in out.splitlines()
                      if ' Conv ' in l or ' FusedConv ' in l]
        kernels = [l.split()[-1] for l in conv_lines]
        ref = [k for k in kernels if k.startswith('ref:')]
        check('--profile %s: no conv on a ref: kernel' % precision, ok and not ref,
              ', '.join(ref[:3]))
        if avx512:
            slow = [k for k in kernels if 'avx2' in k]
            check('--profile %s: no avx2 conv kernel on AVX-512' % precision,
                  ok and not slow, ', '.join(slow[:3]))

    failed = [n for n, ok in results if not ok]
    print('%d of %d checks passed' % (len(results) - len(failed), len(results)))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
