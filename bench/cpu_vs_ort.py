#!/usr/bin/python3
"""Our cpu runtime beside ONNX Runtime (the yardstick) and, optionally, an older talkrender
binary, in one run on one machine: ms/frame per model, engine and batch, the engines
alternating round by round so that load from other work falls on all of them alike.

  /usr/bin/python3 bench/cpu_vs_ort.py --talkrender build/talkrender \\
      --ort ../shared/yardstick/ort-bench --before /path/to/old/talkrender \\
      --model gen320-ave.onnx --model gen160-hubert.onnx [--rounds 3] [--batches 1,2,4,8]

Engines: ort (ort-bench, --threads), before fp32 (the old binary, if given), fp32 and bf16
(this binary; bf16 only where the CPU has native bf16). Prints, per model and batch, the best
(min over rounds) and median ms/frame of each engine and the ratios to ORT and to before;
`uptime` before and after. Figures only; nothing is asserted.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys


def ort_run(ort, model, batches, threads):
    out = subprocess.run([ort, model, '--threads', str(threads), '--batch', batches],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=True)
    return {r['batch']: r['ms_per_frame'] for r in map(json.loads, out.stdout.split('\n')[:-1])
            if r}


def ours_run(tr, model, batches, threads, precision, runs):
    cmd = [tr, 'infer-bench', '--model', model, '--batch', batches, '--threads', str(threads),
           '--runs', str(runs), '--json']
    if precision:
        cmd += ['--precision', precision]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if out.returncode != 0:
        raise RuntimeError(' '.join(cmd) + ': ' + out.stderr.strip())
    rows = [json.loads(l) for l in out.stdout.splitlines() if l.startswith('{')]
    return {r['batch']: r['ms_per_frame'] for r in rows}, (rows[0] if rows else {})


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--talkrender', required=True)
    ap.add_argument('--ort', required=True)
    ap.add_argument('--before', help='an older talkrender binary (fp32, its default layout)')
    ap.add_argument('--model', action='append', required=True)
    ap.add_argument('--batches', default='1,2,4,8')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--runs', type=int, default=5, help='infer-bench --runs')
    ap.add_argument('--no-bf16', action='store_true')
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    print('uptime before: ' + subprocess.run(['uptime'], stdout=subprocess.PIPE,
                                             text=True).stdout.strip())
    batches = [int(b) for b in args.batches.split(',')]
    engines = ['ort'] + (['before'] if args.before else []) + ['fp32']
    _, info = ours_run(args.talkrender, args.model[0], '1', args.threads, 'fp32', 5)
    native = info.get('isa') in ('avx512_core_bf16', 'avx512_core_amx')
    if native and not args.no_bf16:
        engines.append('bf16')
    print('cpu: isa %s, layout %s (fp32); engines: %s' % (info.get('isa'), info.get('layout'),
                                                        ', '.join(engines)))
    times = {}  # (model, engine, batch) -> [ms/frame per round]
    for r in range(args.rounds):
        for model in args.model:
            for engine in engines:
                if engine == 'ort':
                    got = ort_run(args.ort, model, args.batches, args.threads)
                elif engine == 'before':
                    got, _ = ours_run(args.before, model, args.batches, args.threads, None,
                                      args.runs)
                else:
                    got, _ = ours_run(args.talkrender, model, args.batches, args.threads, engine,
                                      args.runs)
                for b, ms in got.items():
                    times.setdefault((model, engine, b), []).append(ms)
                print('  round %d %s %s: %s' % (r + 1, os.path.basename(model), engine,
                                                ' '.join('b%d %.1f' % (b, got[b]) for b in sorted(got))))
    print('uptime after: ' + subprocess.run(['uptime'], stdout=subprocess.PIPE,
                                            text=True).stdout.strip())
    print()
    print('ms/frame, best (min) / median over %d rounds, %d threads' % (args.rounds, args.threads))
    head = '| model | batch | ' + ' | '.join(engines) + ' | fp32/ort (best) |'
    if 'bf16' in engines:
        head += ' bf16/ort (best) |'
    if 'before' in engines:
        head += ' fp32/before (best) |'
    print(head)
    print('|' + '---|' * (head.count('|') - 1))
    for model in args.model:
        for b in batches:
            def best(e):
                return min(times[(model, e, b)])
            cells = ['%.1f / %.1f' % (best(e), statistics.median(times[(model, e, b)]))
                     for e in engines]
            row = '| %s | %d | %s | %.2f |' % (os.path.basename(model), b, ' | '.join(cells),
                                              best('fp32') / best('ort'))
            if 'bf16' in engines:
                row += ' %.2f |' % (best('bf16') / best('ort'))
            if 'before' in engines:
                row += ' %.2f |' % (best('fp32') / best('before'))
            print(row)
    for model in args.model:
        ort_best = min(min(times[(model, 'ort', b)]) for b in batches)
        line = '%s: best over batches: ort %.1f' % (os.path.basename(model), ort_best)
        for e in engines[1:]:
            eb = min(min(times[(model, e, b)]) for b in batches)
            line += ', %s %.1f (%.2fx ort)' % (e, eb, eb / ort_best)
        print(line)
    return 0


if __name__ == '__main__':
    sys.exit(main())
