#!/usr/bin/python3
"""Checks tools/export_models.py's command line: checkpoint loading (wrappers, 'module.'
prefixes, the encoder's bare Sequential keys), its one-line errors with exit 2, and
determinism. Uses the small encoder only, so it runs in seconds.

Exit 0 passed, 1 failed, 77 skipped (no torch in this python).
"""

import os
import subprocess
import sys
import tempfile

SOURCE_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
EXPORTER = os.path.join(SOURCE_ROOT, 'tools', 'export_models.py')

failures = []


def check(condition, what):
    print('%s %s' % ('PASS' if condition else 'FAIL', what))
    if not condition:
        failures.append(what)


def export(*args):
    proc = subprocess.run([sys.executable, EXPORTER] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    return proc.returncode, proc.stdout, proc.stderr


def expect_usage_error(args, needle, what):
    rc, _, err = export(*args)
    lines = err.strip().splitlines()
    check(rc == 2 and len(lines) == 1 and needle in err,
          '%s -> exit 2 with one line naming "%s" (got exit %d: %r)' % (what, needle, rc,
                                                                         err.strip()[-300:]))


def main():
    sys.stdout.reconfigure(line_buffering=True)
    try:
        import numpy as np
        import torch
    except ImportError as e:
        print('SKIP: %s lacks torch/numpy (%s)' % (sys.executable, e))
        return 77
    sys.path.insert(0, os.path.join(SOURCE_ROOT, 'tools'))
    import model_arch

    with tempfile.TemporaryDirectory(prefix='tr_exporter_selftest_') as tmp:
        out = os.path.join(tmp, 'out')
        # Errors: each is one line on stderr, exit 2, and names the problem.
        expect_usage_error(['--out', out, '--models', 'gen999-ave'], 'gen999-ave',
                           'unknown model')
        expect_usage_error(['--out', out, '--models', 'encoder', '--checkpoint',
                            os.path.join(tmp, 'absent.pth')], 'absent.pth', 'missing checkpoint')
        not_a_dir = os.path.join(tmp, 'file')
        open(not_a_dir, 'w').close()
        expect_usage_error(['--out', os.path.join(not_a_dir, 'sub'), '--models', 'encoder'],
                           not_a_dir, 'unwritable --out')
        garbage = os.path.join(tmp, 'garbage.pth')
        with open(garbage, 'w') as f:
            f.write('not a checkpoint\n')
        expect_usage_error(['--out', out, '--models', 'encoder', '--checkpoint', garbage],
                           'not a PyTorch checkpoint', 'unreadable checkpoint')

        # A user's encoder checkpoint: bare Sequential keys, as SyncTalk_2D saves it.
        torch.manual_seed(7)
        encoder = model_arch.AudioEncoder()
        for m in encoder.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
        encoder.eval()
        bare = {k[len('audio_encoder.'):]: v for k, v in encoder.state_dict().items()}
        ckpt = os.path.join(tmp, 'encoder.pth')
        torch.save(bare, ckpt)
        rc, _, err = export('--out', out, '--models', 'encoder', '--checkpoint', ckpt,
                            '--golden-batch', '2')
        check(rc == 0, 'encoder checkpoint with bare keys exports (exit %d %s)' %
              (rc, err.strip()[-300:]))
        if rc == 0:
            mel = np.load(os.path.join(out, 'encoder.b2.mel.npy'))
            golden = np.load(os.path.join(out, 'encoder.b2.output.npy'))
            with torch.no_grad():
                want = encoder(torch.from_numpy(mel)).numpy()
            # Not bitwise: this process may use another thread count than the exporter.
            err = float(np.abs(golden - want).max())
            check(err <= 1e-6 * float(np.abs(want).max()),
                  'golden output is the checkpoint model\'s output (max|diff| %g)' % err)

        # Wrapped and DataParallel-prefixed: {'state_dict': {'module.audio_encoder...'}}.
        wrapped = os.path.join(tmp, 'wrapped.pth')
        torch.save({'state_dict': {'module.' + k: v for k, v in encoder.state_dict().items()},
                    'epoch': 3}, wrapped)
        out2 = os.path.join(tmp, 'out2')
        rc, _, err = export('--out', out2, '--models', 'encoder', '--checkpoint', wrapped,
                            '--golden-batch', '2')
        check(rc == 0, 'wrapped module.-prefixed checkpoint exports (exit %d %s)' %
              (rc, err.strip()[-300:]))
        if rc == 0:
            same = np.array_equal(np.load(os.path.join(out, 'encoder.b2.output.npy')),
                                  np.load(os.path.join(out2, 'encoder.b2.output.npy')))
            check(same, 'both checkpoint forms give the same golden')

        # Wrong architecture: keys are listed.
        broken = dict(encoder.state_dict())
        del broken['audio_encoder.12.conv_block.0.weight']
        broken['audio_encoder.13.extra'] = torch.zeros(1)
        bad = os.path.join(tmp, 'bad.pth')
        torch.save(broken, bad)
        rc, _, err = export('--out', out, '--models', 'encoder', '--checkpoint', bad)
        check(rc == 2 and 'audio_encoder.12.conv_block.0.weight' in err and
              'audio_encoder.13.extra' in err and len(err.strip().splitlines()) == 1,
              'mismatched checkpoint -> exit 2 listing missing and unexpected keys')

        # Determinism: the same seed gives byte-identical goldens; another seed differs.
        a, b, c = (os.path.join(tmp, d) for d in ('a', 'b', 'c'))
        for d, seed in ((a, '5'), (b, '5'), (c, '6')):
            rc, _, err = export('--out', d, '--models', 'encoder', '--seed', seed,
                                '--golden-batch', '1')
            check(rc == 0, 'export --seed %s (exit %d %s)' % (seed, rc, err.strip()[-200:]))

        def read(d, f):
            with open(os.path.join(d, f), 'rb') as fh:
                return fh.read()

        try:
            check(read(a, 'encoder.b1.output.npy') == read(b, 'encoder.b1.output.npy'),
                  'same seed -> identical golden')
            check(read(a, 'encoder.b1.output.npy') != read(c, 'encoder.b1.output.npy'),
                  'different seed -> different golden')
        except OSError as e:
            check(False, 'golden files readable (%s)' % e)
        leftovers = [f for f in os.listdir(a) if f.startswith('.')]
        check(not leftovers, 'no temporary files left behind (%s)' % leftovers)

    print('%d failure(s)' % len(failures))
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
