#!/usr/bin/env python3
"""PyTorch's side of the CUDA executor's device check (tools/device/run.sh).

  torch_bench.py bench --models gen320-ave --batches 1,4,8,32 --compile-batches 8,32
      times the generator (model_arch.Generator, random weights: the time does not depend
      on the values) in fp16: eager NCHW, eager channels_last, and
      torch.compile(mode="max-autotune") (Inductor's own CUDA graphs). Device time only,
      with CUDA events around back-to-back calls on static inputs: the median over
      --repeats of the mean over --iters calls. One "RESULT kind=torch ..." line per figure.
      --cpu: a dry run on the CPU (fp32, eager only) to test the script without a GPU.
  torch_bench.py accuracy --models gen320-ave --goldens-dir DIR --batches 1,4,32
      rebuilds the exact exported model (tools/export_models.py's seeded weights, the same
      calibration) and compares PyTorch's own fp16 (and fp32) on the GPU with the fp32
      goldens: the yardstick for our fp16 error. --cpu: fp32 on the CPU only.
  torch_bench.py table LOG
      reads the RESULT lines of a run.sh log and prints the summary table.
"""

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..'))  # tools/model_arch.py


def parse_batches(s):
    return [int(b) for b in s.split(',') if b.strip()]


def result(**kv):
    print('RESULT ' + ' '.join('%s=%s' % (k, v) for k, v in kv.items()), flush=True)


def time_fn(torch, fn, iters, repeats, device):
    if device == 'cpu':
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(iters):
                fn()
            times.append((time.perf_counter() - t0) * 1e3 / iters)
        return statistics.median(times)
    start = torch.cuda.Event(enable_timing=True)
    stop = torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(repeats):
        start.record()
        for _ in range(iters):
            fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop) / iters)
    return statistics.median(times)


def bench(args):
    import torch
    import model_arch
    device = 'cpu' if args.cpu else 'cuda'
    dtype = torch.float32 if args.cpu else torch.float16
    if not args.cpu:
        result(kind='torch_info', torch=torch.__version__,
               device='"%s"' % torch.cuda.get_device_name(0))
        torch.backends.cudnn.benchmark = True
    t_start = time.time()
    for name in args.models.split(','):
        size, mode = name[3:].split('-')
        size = int(size)
        torch.manual_seed(0)
        model = model_arch.Generator(size, mode).eval().to(device=device, dtype=dtype)
        audio_shape = model_arch.AUDIO_SHAPES[mode]
        variants = [('eager', False), ('eager_cl', True)]
        for batch in parse_batches(args.batches):
            # Random inputs, never zeros (zeros can run faster than real data).
            x = torch.rand(batch, 6, size, size, device=device, dtype=dtype)
            a = torch.rand(batch, *audio_shape, device=device, dtype=dtype)
            for variant, channels_last in variants:
                m = model.to(memory_format=torch.channels_last) if channels_last else model
                xi = x.contiguous(memory_format=torch.channels_last) if channels_last else x
                with torch.no_grad():
                    for _ in range(3):
                        m(xi, a)
                    ms = time_fn(torch, lambda: m(xi, a), args.iters, args.repeats, device)
                result(kind='torch', model=name, variant=variant, precision=str(dtype)[6:],
                       batch=batch, ms=round(ms, 4), ms_per_frame=round(ms / batch, 4))
            model = model.to(memory_format=torch.contiguous_format)
        if args.cpu:
            continue
        for batch in parse_batches(args.compile_batches):
            if time.time() - t_start > args.budget_s:
                result(kind='torch', model=name, variant='compile', precision='float16',
                       batch=batch, ms='nan', ms_per_frame='nan', note='skipped-budget')
                continue
            torch._dynamo.reset()
            compiled = torch.compile(model, mode='max-autotune', fullgraph=True, dynamic=False)
            x = torch.rand(batch, 6, size, size, device=device, dtype=dtype)
            a = torch.rand(batch, *audio_shape, device=device, dtype=dtype)
            t0 = time.time()
            try:
                with torch.no_grad():
                    for _ in range(3):  # compile + autotune, then CUDA graph recording
                        compiled(x, a)
                    torch.cuda.synchronize()
                    compile_s = time.time() - t0
                    ms = time_fn(torch, lambda: compiled(x, a), args.iters, args.repeats,
                                 device)
            except Exception as e:  # report, don't lose the rest of the table
                result(kind='torch', model=name, variant='compile', precision='float16',
                       batch=batch, ms='nan', ms_per_frame='nan',
                       note='"failed: %s"' % str(e).splitlines()[0][:120].replace('"', "'"))
                continue
            result(kind='torch', model=name, variant='compile', precision='float16',
                   batch=batch, ms=round(ms, 4), ms_per_frame=round(ms / batch, 4),
                   compile_s=round(compile_s, 1))


def exported_model(name, base_seed=1234):
    """The model tools/export_models.py exports with --non-saturated, rebuilt bit for bit
    (same seeds, same calibration steps, in the same order)."""
    import torch
    import export_models as em
    seed = em.model_seed(base_seed, name)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = em.build_model(name)
    em.randomize_batchnorm(model, gen)
    model.eval()
    em.calibrate_batchnorm(model, name, gen)
    if name != 'encoder':
        em.spread_sigmoid_outputs(model, name, gen)
    return model


def accuracy(args):
    import numpy as np
    import torch
    device = 'cpu' if args.cpu else 'cuda'
    dtypes = [torch.float32] if args.cpu else [torch.float16, torch.float32]
    for name in args.models.split(','):
        model = exported_model(name).to(device)
        for batch in parse_batches(args.batches):
            prefix = os.path.join(args.goldens_dir, '%s.b%d' % (name, batch))
            x = torch.from_numpy(np.load(prefix + '.input.npy')).to(device)
            a = torch.from_numpy(np.load(prefix + '.audio.npy')).to(device)
            want = torch.from_numpy(np.load(prefix + '.output.npy')).to(device)
            for dtype in dtypes:
                m = model.to(dtype)
                with torch.no_grad():
                    got = m(x.to(dtype), a.to(dtype)).float()
                diff = (got - want).abs()
                result(kind='torch_check', model=name, precision=str(dtype)[6:], batch=batch,
                       device=device, max_abs='%.3e' % diff.max().item(),
                       mean_abs='%.3e' % diff.mean().item())
            model = model.float()


def parse_result_line(line):
    import shlex
    kv = {}
    for tok in shlex.split(line[len('RESULT '):]):
        k, _, v = tok.partition('=')
        kv[k] = v
    return kv


def table(args):
    rows = []
    with open(args.log, errors='replace') as f:
        for line in f:
            if line.startswith('RESULT '):
                rows.append(parse_result_line(line.strip()))
    info = [r for r in rows if r.get('kind') in ('info', 'torch_info')]
    for r in info:
        print('  '.join('%s=%s' % kv for kv in r.items() if kv[0] != 'kind'))
    checks = [r for r in rows if r.get('kind') == 'check']
    for r in rows:  # PyTorch's own error against its fp32 goldens, in the same table
        if r.get('kind') == 'torch_check':
            checks.append({'model': r['model'], 'device': 'torch-' + r['device'],
                           'precision': 'fp16' if r['precision'] == 'float16' else 'fp32',
                           'batch': r['batch'], 'max_abs': r['max_abs'], 'tol': '-',
                           'ok': 'info'})
    if checks:
        print('\ncorrectness (max |ours - PyTorch fp32|)')
        print('%-16s %-6s %-5s %6s %10s %9s %s' % ('model', 'device', 'prec', 'batch',
                                                   'max_abs', 'tol', 'ok'))
        for r in checks:
            print('%-16s %-6s %-5s %6s %10s %9s %s' % (
                os.path.basename(r['model']).replace('.onnx', ''), r['device'], r['precision'],
                r['batch'], r['max_abs'], r['tol'],
                {'1': 'PASS', 'info': '(PyTorch)'}.get(r['ok'], 'FAIL')))
    ours = [r for r in rows if r.get('kind') == 'bench']
    torch_rows = [r for r in rows if r.get('kind') == 'torch']
    if ours or torch_rows:
        print('\ntiming, ms per frame (device time; ours also end to end with copies)')
        print('%-12s %5s %5s | %9s %9s | %9s %9s %9s | %7s' % (
            'model', 'prec', 'batch', 'ours', 'ours e2e', 'eager', 'eager_cl', 'compile',
            'ratio'))
        keys = []
        for r in ours:
            keys.append((os.path.basename(r['model']).replace('.onnx', ''),
                         r['precision'], int(r['batch'])))
        for r in torch_rows:
            p = 'fp16' if r['precision'] == 'float16' else 'fp32'
            k = (r['model'], p, int(r['batch']))
            if k not in keys:
                keys.append(k)

        def num(v):
            try:
                x = float(v)
                return None if x != x or x < 0 else x
            except (TypeError, ValueError):
                return None

        for model, prec, batch in keys:
            mine = [r for r in ours if os.path.basename(r['model']).replace('.onnx', '') == model
                    and r['precision'] == prec and int(r['batch']) == batch]
            t = {}
            for r in torch_rows:
                p = 'fp16' if r['precision'] == 'float16' else 'fp32'
                if r['model'] == model and p == prec and int(r['batch']) == batch:
                    t[r['variant']] = num(r['ms_per_frame'])
            comp = num(mine[0]['compute_ms_per_frame']) if mine else None
            e2e = num(mine[0]['run_ms_per_frame']) if mine else None
            best = min([v for v in t.values() if v], default=None)
            ratio = '%.2f' % ((comp or e2e) / best) if best and (comp or e2e) else '-'
            f = lambda v: '%9.4f' % v if v is not None else '%9s' % '-'
            print('%-12s %5s %5d | %s %s | %s %s %s | %7s' % (
                model, prec, batch, f(comp), f(e2e), f(t.get('eager')), f(t.get('eager_cl')),
                f(t.get('compile')), ratio))
        print('ratio: ours (device time) / the fastest PyTorch variant; accept <= 0.7 at '
              'batch 8 and 32 fp16')


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest='cmd', required=True)
    b = sub.add_parser('bench')
    b.add_argument('--models', default='gen320-ave')
    b.add_argument('--batches', default='1,4,8,32')
    b.add_argument('--compile-batches', default='8,32')
    b.add_argument('--iters', type=int, default=20)
    b.add_argument('--repeats', type=int, default=5)
    b.add_argument('--budget-s', type=float, default=360,
                   help='skip further torch.compile runs after this many seconds')
    b.add_argument('--cpu', action='store_true', help='dry run on the CPU (fp32, eager only)')
    a = sub.add_parser('accuracy')
    a.add_argument('--models', default='gen320-ave')
    a.add_argument('--goldens-dir', required=True)
    a.add_argument('--batches', default='1,4,32')
    a.add_argument('--cpu', action='store_true')
    t = sub.add_parser('table')
    t.add_argument('log')
    args = p.parse_args()
    if args.cmd == 'bench':
        bench(args)
    elif args.cmd == 'accuracy':
        accuracy(args)
    else:
        table(args)


if __name__ == '__main__':
    main()
