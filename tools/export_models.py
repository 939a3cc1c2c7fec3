#!/usr/bin/python3
"""Export the SyncTalk_2D / Ultralight lip-sync models to ONNX the way users do, with
golden input/output .npy files computed by PyTorch (see docs/model-contract.md, 2 and 4).

Run with Debian's Python: /usr/bin/python3 tools/export_models.py --help
"""

import argparse
import copy
import json
import os
import sys
import tempfile
import time
import zlib

MODEL_NAMES = [
    'gen320-ave', 'gen320-hubert', 'gen320-wenet', 'gen160-ave', 'gen160-hubert',
    'gen160-wenet', 'ul-hubert', 'ul-wenet', 'encoder'
]

# Ultralight-Digital-Human's own model (contract, "Ultralight-Digital-Human's own model"):
# exporter name -> model_arch audio mode. Always S = 160.
ULTRALIGHT_MODELS = {'ul-hubert': 'ul-hubert', 'ul-wenet': 'ul-wenet'}
# SyncTalk_2D's wenet generators feed the features into a block at c3: default widths only.
WIDTHLESS_MODELS = ('gen320-wenet', 'gen160-wenet')
DEFAULT_WIDTHS = (32, 64, 128, 256, 512)

# Contract parameter counts (millions, with as many decimals as the contract prints). The
# contract gives figures for S = 320, Ultralight's own model (at the default widths) and the
# encoder; SyncTalk_2D's S = 160 lacks the 32->32 level and has a smaller decoder tail
# (12.16 M / 12.96 M).
EXPECTED_PARAMS_M = {
    'gen320-ave': '12.19', 'gen320-hubert': '12.19', 'gen320-wenet': '12.99',
    'ul-hubert': '12.160', 'ul-wenet': '12.796', 'encoder': '2.81'
}

# Standard deviation of the pre-sigmoid logits after --non-saturated rescaling: with 1.5,
# about 95 % of the outputs land in (0.05, 0.95).
NON_SATURATED_LOGIT_STD = 1.5

# --non-saturated: BatchNorm scale multiplier applied after calibration (see
# calibrate_batchnorm).
BN_DAMPING = 0.7

HELP_EPILOG = """\
models:
  gen320-{ave,hubert,wenet}  SyncTalk_2D "328" generator, input [B,6,320,320]
  gen160-{ave,hubert,wenet}  SyncTalk_2D-style generator at S = 160, input [B,6,160,160]
      audio: ave [B,32,16,16], hubert [B,32,32,32], wenet [B,256,16,32]; output [B,3,S,S]
  ul-{hubert,wenet}          Ultralight-Digital-Human's own unet.py Model (same parameter
                             names, so its state dicts load unchanged), input [B,6,160,160],
                             audio: hubert [B,16,32,32], wenet [B,128,16,32] (8-block window);
                             --widths picks its channel widths (default 32,64,128,256,512;
                             Ultralight's mobile setting is --widths 16,32,64,128,256)
  encoder                    ave audio encoder, mel [B,1,80,16] -> output [B,512]
  --widths also narrows the ave/hubert generators and the encoder (the demo's small model,
  tools/train_demo.py, is gen160-ave + encoder at narrow widths).

files written to --out (every file is written to a temporary name, then renamed):
  <model>.onnx                    the exported model
  <model>.json                    what was exported (params, opset, batch mode, widths,
                                  seed, ...)
  <model>.b<B>.input.npy          generator image input, values in [0, 1]     (goldens)
  <model>.b<B>.audio.npy          generator audio input                       (goldens)
  <model>.b<B>.mel.npy            encoder input, values in [-4, 4]            (goldens)
  <model>.b<B>.output.npy         PyTorch's output for those inputs           (goldens)
                                  (--golden-dtype float64: computed in float64, stored as
                                  float32; <model>.json records float32's distance from it)

weights:
  default      seeded random weights (PyTorch's default init) plus random BatchNorm
               affine parameters and running statistics, so BN folding is exercised.
               Such a generator's output is nearly flat (about 0.5 everywhere).
  --non-saturated (alias --scale-weights)
               for well-conditioned random models: (1) every BatchNorm's running
               statistics are set to the real statistics of its input on a seeded
               calibration batch, then randomly perturbed (mean +-0.1 std, var
               x0.8..1.25), and (generators) every BN scale is multiplied by %.1f (damping, so
               rounding noise decays with depth instead of growing); (2) generators only: the
               last 1x1 conv (weight and bias, per output channel) is rescaled so the
               pre-sigmoid logits on that batch have mean 0 and std %.1f. Outputs then
               spread over (0, 1) instead of sitting at one value, the output depends on
               the input, and PyTorch's own float32 output stays within ~1e-5 of the
               float64 one, so a 1e-4 golden tolerance is meaningful.
  --untrained-batchnorm
               random convs, BatchNorm left at PyTorch's defaults (weight 1, bias 0,
               mean 0, var 1), as in a freshly initialised checkpoint: the exporter then
               deduplicates the identical folded biases into Identity nodes, as real
               exports of such files have.
  --checkpoint X.pth
               a user's SyncTalk_2D / Ultralight state dict for exactly one model
               ('module.' prefixes and {'state_dict': ...} / {'model': ...} wrappers are
               handled; the encoder also accepts keys without 'audio_encoder.').

export:
  torch.onnx.export, constant folding on, opset 17 unless --opset, batch dimension
  dynamic unless --static-batch/--fixed-batch. In eval mode the exporter folds BatchNorm
  into the convs as users' exports do; --keep-batchnorm keeps BatchNormalization nodes
  instead. Ultralight's own pth2onnx.py exports opset 11 with a fixed batch of 1:
    export_models.py --models ul-hubert --fixed-batch 1 --opset 11 --out DIR

exit status: 0 ok, 2 bad input (unknown model, missing/mismatched checkpoint,
unwritable --out), 3 export failure.
""" % (BN_DAMPING, NON_SATURATED_LOGIT_STD)


UMASK = os.umask(0)
os.umask(UMASK)


class UsageError(Exception):
    """A problem with what the user asked for: one line, exit 2."""


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog='export_models.py',
        description='Export lip-sync generator / audio-encoder models to ONNX with '
        'PyTorch golden outputs.',
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', required=True, help='output directory (created if absent)')
    parser.add_argument('--models',
                        default='gen320-ave,encoder',
                        help='comma-separated list of %s, or "all" (default: %%(default)s)' %
                        ','.join(MODEL_NAMES))
    parser.add_argument('--seed', type=int, default=1234,
                        help='base seed for weights and golden inputs (default: %(default)s)')
    parser.add_argument('--opset', type=int, default=17, choices=[11, 13, 17],
                        help='ONNX opset (default: %(default)s)')
    parser.add_argument('--static-batch', '--fixed-batch', type=int, nargs='?', const=1,
                        default=None,
                        metavar='B',
                        help='fixed batch dimension B (default 1 when given without a '
                        'value); without this option the batch dimension is dynamic')
    parser.add_argument('--widths', metavar='C0,C1,C2,C3,C4',
                        help='channel widths c0..c4 of every model but the *-wenet '
                        'generators (default %s; ul-* read them from --checkpoint; for the '
                        'encoder, its five levels before the 1x1 to 512)' %
                        ','.join(map(str, DEFAULT_WIDTHS)))
    parser.add_argument('--checkpoint', metavar='X.pth',
                        help='load this state dict instead of random weights (needs '
                        'exactly one model in --models)')
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='unpickle the checkpoint fully (it may then run code); by '
                        'default only tensors and plain containers are loaded')
    parser.add_argument('--non-saturated', '--scale-weights', dest='non_saturated',
                        action='store_true',
                        help='well-conditioned random weights whose sigmoid outputs spread '
                        'over (0,1) (calibrated BatchNorm + rescaled last conv; see below)')
    parser.add_argument('--untrained-batchnorm', action='store_true',
                        help='leave BatchNorm at PyTorch\'s defaults (like an untrained '
                        'checkpoint); the export then shares identical initialisers '
                        'through Identity nodes')
    parser.add_argument('--keep-batchnorm', action='store_true',
                        help='keep BatchNormalization nodes instead of folding them')
    parser.add_argument('--goldens', dest='goldens', action='store_true', default=True,
                        help='write golden inputs/outputs (default)')
    parser.add_argument('--no-goldens', dest='goldens', action='store_false',
                        help='write only the .onnx files')
    parser.add_argument('--golden-batch', default=None,
                        help='comma-separated batch sizes for goldens (default: 1,3; with '
                        '--static-batch B: B, or the sizes given here, since the PyTorch '
                        'model takes any batch and talkrender runs a fixed-batch file at any)')
    parser.add_argument('--golden-dtype', choices=['float32', 'float64'], default='float32',
                        help='precision PyTorch computes the golden outputs in (default: '
                        '%(default)s; float64 is ~7x slower; stored as float32 either way)')
    args = parser.parse_args(argv)

    if args.models.strip() == 'all':
        args.models = list(MODEL_NAMES)
    else:
        args.models = [m.strip() for m in args.models.split(',') if m.strip()]
        unknown = [m for m in args.models if m not in MODEL_NAMES]
        if unknown or not args.models:
            raise UsageError('unknown model(s) %s; choose from %s or "all"' %
                             (','.join(unknown) or '(none)', ','.join(MODEL_NAMES)))
    if args.golden_batch is None:
        args.golden_batch = '1,3' if args.static_batch is None else str(args.static_batch)
    try:
        args.golden_batch = [int(b) for b in args.golden_batch.split(',') if b.strip()]
    except ValueError:
        raise UsageError('--golden-batch must be a comma-separated list of integers, got %r' %
                         args.golden_batch)
    if any(b < 1 for b in args.golden_batch) or (args.static_batch is not None and
                                                  args.static_batch < 1):
        raise UsageError('batch sizes must be >= 1')
    if args.checkpoint:
        if len(args.models) != 1:
            raise UsageError('--checkpoint needs exactly one model in --models (it names '
                             'the architecture the state dict is for)')
        if not os.path.isfile(args.checkpoint):
            raise UsageError('checkpoint not found: %s' % args.checkpoint)
        if args.non_saturated or args.untrained_batchnorm:
            raise UsageError('--non-saturated and --untrained-batchnorm change weights; they '
                             'are for random weights only, not with --checkpoint')
    if args.widths is not None:
        try:
            args.widths = tuple(int(c) for c in args.widths.split(','))
        except ValueError:
            raise UsageError('--widths must be five comma-separated integers, got %r' %
                             args.widths)
        if len(args.widths) != 5 or any(c < 2 or c % 2 for c in args.widths):
            raise UsageError('--widths must be five even channel counts >= 2, got %s' %
                             ','.join(map(str, args.widths)))
        others = [m for m in args.models if m in WIDTHLESS_MODELS]
        if others:
            raise UsageError('--widths does not apply to %s (its audio input channels are '
                             'tied to the default widths)' % ','.join(others))
    if args.non_saturated and args.untrained_batchnorm:
        raise UsageError('--non-saturated and --untrained-batchnorm exclude each other')
    return args


def check_out_dir(path):
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise UsageError('cannot create output directory %s: %s' % (path, e.strerror))
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError('output directory is not writable: %s' % path)


# ---------------------------------------------------------------------------------------
# Everything below needs torch; imported late so --help and usage errors stay fast.


def model_seed(base_seed, name):
    # Stable across runs and Python versions (unlike hash()).
    return (base_seed * 1000003 + zlib.crc32(name.encode())) % (2**31)


def generator_spec(name):
    """(size, audio mode) of a generator name: gen320-ave -> (320, 'ave'),
    ul-hubert -> (160, 'ul-hubert')."""
    if name in ULTRALIGHT_MODELS:
        return 160, ULTRALIGHT_MODELS[name]
    size, mode = name[3:].split('-')
    return int(size), mode


def build_model(name, widths=None):
    import model_arch
    if name == 'encoder':
        return model_arch.AudioEncoder(widths or DEFAULT_WIDTHS)
    size, mode = generator_spec(name)
    return model_arch.Generator(size, mode, widths=widths or DEFAULT_WIDTHS)


def checkpoint_widths(path, trust):
    """The channel widths of an Ultralight state dict: the output channels of inc and
    down1..down4 (each block's last 1x1 conv), so a narrow model needs no --widths."""
    state = read_state_dict(path, trust)
    keys = ['inc.inconv.0.conv.6.weight'] + [
        'down%d.maxpool_conv.0.double_conv.1.conv.6.weight' % i for i in range(1, 5)]
    missing = [k for k in keys if k not in state]
    if missing:
        raise UsageError('checkpoint %s is not an Ultralight model: no tensor %s' %
                         (path, missing[0]))
    return tuple(int(state[k].shape[0]) for k in keys)


def randomize_batchnorm(model, gen):
    """Random affine parameters and running statistics, so that folding BN into the
    convolutions (by the exporter or by the engine) changes the weights noticeably."""
    import torch
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            with torch.no_grad():
                module.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(n, generator=gen) * 0.1)
                module.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)


def make_inputs(name, batch, gen):
    """Seeded inputs with realistic ranges: images in [0,1]; ave features are ReLU
    outputs (non-negative, about half zeros); hubert/wenet features are signed; the
    encoder's normalised mel lies in [-4, 4]."""
    import torch
    import model_arch
    if name == 'encoder':
        return {'mel': torch.rand(batch, 1, 80, 16, generator=gen) * 8 - 4}
    size, mode = generator_spec(name)
    image = torch.rand(batch, 6, size, size, generator=gen)
    audio = torch.randn(batch, *model_arch.AUDIO_SHAPES[mode], generator=gen)
    if mode == 'ave':
        audio = torch.relu(audio)
    return {'input': image, 'audio': audio}


def calibrate_batchnorm(model, name, gen):
    """--non-saturated, step 1: set every BatchNorm's running statistics to the real
    statistics of its input on a seeded calibration batch, then perturb them randomly.

    With PyTorch's default init each conv shrinks the signal, so after ~90 layers the
    generator's output no longer depends on its input (a flat ~0.5 image). Calibrated
    statistics keep every layer's activations O(1); the perturbation keeps BN folding
    non-trivial."""
    import torch
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: one pass gives the batch statistics
    # The encoder's last maps are 1x1: it needs many samples for sane statistics.
    calib = make_inputs(name, 64 if name == 'encoder' else 2, gen)
    model.train()
    with torch.no_grad():
        model(*calib.values())
    model.eval()
    with torch.no_grad():
        for bn in bns:
            n = bn.num_features
            std = bn.running_var.sqrt()
            bn.running_mean.add_(torch.randn(n, generator=gen) * 0.1 * std)
            bn.running_var.mul_(torch.rand(n, generator=gen) * 0.45 + 0.8)
            # Damping: with exactly calibrated statistics a deep random net is chaotic
            # (rounding noise grows layer by layer; PyTorch's own float32 output ends up
            # ~6e-5 from the float64 one). Shrinking every BN scale makes perturbations
            # decay with depth instead, as in trained nets (float32 error ~1e-6); the
            # outc rescale restores the output spread.
            if name != 'encoder':  # 13 layers: not deep enough to need it
                bn.weight.mul_(BN_DAMPING)
            bn.momentum = 0.1


def spread_sigmoid_outputs(model, name, gen):
    """--non-saturated, step 2 (generators): rescale outc so the logits on a calibration
    batch have mean 0 and std NON_SATURATED_LOGIT_STD per output channel."""
    import torch
    calib = make_inputs(name, 2, gen)
    with torch.no_grad():
        logits = model.logits(calib['input'], calib['audio'])
        mean = logits.mean(dim=(0, 2, 3))
        std = logits.std(dim=(0, 2, 3)).clamp_min(1e-12)
        scale = NON_SATURATED_LOGIT_STD / std
        conv = model.outc.conv
        conv.weight.mul_(scale.view(-1, 1, 1, 1))
        conv.bias.copy_((conv.bias - mean) * scale)
    return scale


# What a state dict's pickle may name (anything else is refused): the containers and tensor
# rebuild functions torch.save writes.
PICKLE_GLOBALS = {
    ('collections', 'OrderedDict'), ('torch._utils', '_rebuild_tensor_v2'),
    ('torch._utils', '_rebuild_parameter'), ('torch._utils', '_rebuild_parameter_with_state'),
    ('torch', 'Size'), ('torch', 'device'),
}


def check_pickle_globals(path):
    """Refuses a zip checkpoint whose pickle names any global outside PICKLE_GLOBALS (and
    torch's storage types), by unpickling it once with stand-ins that run nothing.

    Why not torch.load(weights_only=True): Debian's torch 1.13 rejects floats there (pickle
    opcode BINFLOAT), and Ultralight's checkpoints carry an optimizer state full of them;
    and its torch.load ignores a custom pickle_module unless weights_only is set."""
    import collections
    import io
    import pickle
    import zipfile
    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist() if n == 'data.pkl' or n.endswith('/data.pkl')]
        if not names:
            raise pickle.UnpicklingError('no data.pkl in the zip')
        data = z.read(names[0])

    def stand_in(*args, **kwargs):
        return None

    class Checker(pickle.Unpickler):

        def find_class(self, module, name):
            if (module, name) == ('collections', 'OrderedDict'):
                return collections.OrderedDict
            if (module, name) in PICKLE_GLOBALS or (module == 'torch' and
                                                    name.endswith('Storage')):
                return stand_in
            raise pickle.UnpicklingError('global %s.%s is not allowed' % (module, name))

        def persistent_load(self, pid):
            return None

    Checker(io.BytesIO(data)).load()


def read_state_dict(path, trust):
    """The state dict in a checkpoint file, unwrapped ({'model': ...} as Ultralight's
    train.py saves it, {'state_dict': ...}, ...) and without 'module.' prefixes."""
    import torch
    try:
        if trust:
            state = torch.load(path, map_location='cpu')
        else:
            import zipfile
            if zipfile.is_zipfile(path):
                check_pickle_globals(path)  # raises before torch.load runs anything
                state = torch.load(path, map_location='cpu', weights_only=False)
            else:  # the legacy format: torch's own restricted unpickler
                state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # pickle/zip errors have many types
        detail = (str(e).splitlines() or [''])[0][:160]
        hint = '' if trust else '; if it holds more than tensors and you trust it, add ' \
            '--trust-checkpoint'
        raise UsageError('cannot read checkpoint %s: not a PyTorch checkpoint (%s: %s)%s' %
                         (path, type(e).__name__, detail, hint))
    for wrapper in ('state_dict', 'model', 'net', 'generator'):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
            break
    if not isinstance(state, dict):
        raise UsageError('checkpoint %s does not hold a state dict' % path)
    return {(k[len('module.'):] if k.startswith('module.') else k): v
            for k, v in state.items()}


def load_checkpoint(model, name, path, trust):
    state = read_state_dict(path, trust)
    expected = model.state_dict()
    if name == 'encoder' and not any(k.startswith('audio_encoder.') for k in state):
        # SyncTalk_2D saves the encoder's Sequential without the attribute prefix.
        state = {'audio_encoder.' + k: v for k, v in state.items()}
    # num_batches_tracked is training bookkeeping; tolerate its absence or presence.
    missing = [k for k in expected if k not in state and not k.endswith('num_batches_tracked')]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:

        def brief(keys):
            return ', '.join(keys[:6]) + (' ... (%d in all)' % len(keys) if len(keys) > 6 else '')

        problems = []
        if missing:
            problems.append('missing keys [%s]' % brief(missing))
        if unexpected:
            problems.append('unexpected keys [%s]' % brief(unexpected))
        raise UsageError('checkpoint %s does not fit %s: %s' % (path, name, '; '.join(problems)))
    wrong = ['%s %s vs %s' % (k, tuple(state[k].shape), tuple(v.shape))
             for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if wrong:
        raise UsageError('checkpoint %s does not fit %s: shape mismatch: %s' %
                         (path, name, '; '.join(wrong[:4])))
    for k, v in expected.items():
        if k not in state:
            state[k] = v
    model.load_state_dict(state)


def save_atomic(path, writer):
    """writer(tmp_path) writes the file; it is renamed into place only when complete."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', dir=directory)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp makes 0600; give the usual permissions
    try:
        writer(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_npy(path, array):
    import numpy as np

    def write(tmp):
        with open(tmp, 'wb') as f:
            np.save(f, np.ascontiguousarray(array, dtype=np.float32))

    save_atomic(path, write)


def op_histogram(onnx_path):
    import onnx
    model = onnx.load(onnx_path)
    onnx.checker.check_model(model)
    counts = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def write_onnx(model, example, path, opset, dynamic_axes, training_mode=None):
    """torch.onnx.export as users export: inputs named as `example`'s keys, one output
    'output', constant folding on. Also used by tools/train_demo.py."""
    import inspect
    import torch
    # PyTorch >= 2.9 exports through dynamo by default, a different graph; users' files come
    # from the TorchScript exporter, so ask for it where the choice exists (tools/device/
    # exports with the GPU machine's own, newer PyTorch).
    legacy = ({'dynamo': False}
              if 'dynamo' in inspect.signature(torch.onnx.export).parameters else {})
    with torch.no_grad():
        torch.onnx.export(model,
                          tuple(example.values()),
                          path,
                          input_names=list(example.keys()),
                          output_names=['output'],
                          dynamic_axes=dynamic_axes,
                          opset_version=opset,
                          do_constant_folding=True,
                          training=training_mode or torch.onnx.TrainingMode.EVAL,
                          export_params=True,
                          **legacy)


def export_one(name, args):
    import torch
    t0 = time.time()
    seed = model_seed(args.seed, name)
    torch.manual_seed(seed)  # default conv init draws from the global generator
    gen = torch.Generator().manual_seed(seed)
    widths = args.widths
    if name in ULTRALIGHT_MODELS:
        if widths is None and args.checkpoint:
            widths = checkpoint_widths(args.checkpoint, args.trust_checkpoint)
        widths = widths or DEFAULT_WIDTHS
    model = build_model(name, widths)
    if args.checkpoint:
        load_checkpoint(model, name, args.checkpoint, args.trust_checkpoint)
        weights = 'checkpoint %s' % os.path.abspath(args.checkpoint)
    elif args.untrained_batchnorm:
        weights = 'random convs, untrained BatchNorm'
    else:
        randomize_batchnorm(model, gen)
        weights = 'random'
    model.eval()
    if args.non_saturated:
        calibrate_batchnorm(model, name, gen)
        weights += ', non-saturated (calibrated BN'
        if name != 'encoder':
            scale = spread_sigmoid_outputs(model, name, gen)
            weights += ', outc scaled x%.2f..%.2f' % (scale.min().item(), scale.max().item())
        weights += ')'

    import model_arch
    params = model_arch.count_parameters(model)
    expected = EXPECTED_PARAMS_M.get(name)
    if widths not in (None, DEFAULT_WIDTHS):
        expected = None  # the contract's figures are for the default widths
    decimals = len(expected.split('.')[1]) if expected else 0
    params_ok = expected is None or '%.*f' % (decimals, params / 1e6) == expected
    print('%-14s params %.3f M (%s)%s' %
          (name, params / 1e6, 'contract %s M' % expected if expected else
           'no contract figure for %s' % ('widths %s' % ','.join(map(str, widths)) if widths
                                          else 'S = 160'),
           '' if params_ok else '  MISMATCH'))
    if not params_ok and not args.checkpoint:
        raise RuntimeError('%s: parameter count %d does not match the contract' % (name, params))

    export_batch = args.static_batch or 1
    example = make_inputs(name, export_batch, gen)
    input_names = list(example.keys())
    dynamic_axes = None
    if args.static_batch is None:
        dynamic_axes = {n: {0: 'batch'} for n in input_names + ['output']}
    onnx_path = os.path.join(args.out, name + '.onnx')
    training_mode = (torch.onnx.TrainingMode.PRESERVE
                     if args.keep_batchnorm else torch.onnx.TrainingMode.EVAL)

    save_atomic(
        onnx_path, lambda tmp: write_onnx(model, example, tmp, args.opset, dynamic_axes,
                                          training_mode))
    t_export = time.time() - t0
    ops = op_histogram(onnx_path)
    print('%-14s exported %s (opset %d, %s batch) in %.1f s; ops: %s' %
          (name, onnx_path, args.opset, 'static %d' % export_batch if args.static_batch
           else 'dynamic', t_export, ' '.join('%s:%d' % kv for kv in sorted(ops.items()))))

    golden_batches = []
    fp32_error = {}
    if args.goldens:
        t1 = time.time()
        # --golden-dtype float64: PyTorch's float32 result is itself some 1e-6..1e-4 away
        # from the exact value on a 90-layer generator (depending on the weights), and
        # float64 goldens judge an engine against the exact value instead.
        model64 = copy.deepcopy(model).double() if args.golden_dtype == 'float64' else None
        batches = args.golden_batch
        for batch in batches:
            gen_b = torch.Generator().manual_seed(seed + 7919 * batch)
            inputs = make_inputs(name, batch, gen_b)
            with torch.no_grad():
                out32 = model(*inputs.values())
                # PyTorch must agree with itself, or the golden means nothing; once per
                # model is enough (a re-run costs as much as the golden itself).
                if not golden_batches and not torch.equal(out32, model(*inputs.values())):
                    raise RuntimeError('%s: PyTorch output is not deterministic at batch %d'
                                       % (name, batch))
                out = out32
                if model64 is not None:
                    out = model64(*[t.double() for t in inputs.values()])
                    fp32_error[batch] = (out32.double() - out).abs().max().item()
            prefix = os.path.join(args.out, '%s.b%d' % (name, batch))
            for input_name, tensor in inputs.items():
                save_npy('%s.%s.npy' % (prefix, input_name), tensor.numpy())
            save_npy(prefix + '.output.npy', out.numpy())
            golden_batches.append(batch)
            print('%-14s golden b%d (%s): output %s range [%.4f, %.4f] mean %.4f std %.4f%s' %
                  (name, batch, args.golden_dtype, tuple(out.shape), out.min().item(),
                   out.max().item(), out.mean().item(), out.std().item(),
                   '; PyTorch float32 max|diff| %.3g' % fp32_error[batch]
                   if batch in fp32_error else ''))
        print('%-14s goldens in %.1f s' % (name, time.time() - t1))

    info = {
        'model': name,
        'onnx': name + '.onnx',
        'inputs': {n: [None if args.static_batch is None else export_batch] +
                   list(t.shape[1:]) for n, t in example.items()},
        'output': 'output',
        'opset': args.opset,
        'widths': list(widths) if widths else None,
        'dynamic_batch': args.static_batch is None,
        'batchnorm_folded': not args.keep_batchnorm,
        'weights': weights,
        'seed': seed,
        'parameters': params,
        'golden_batches': golden_batches,
        'golden_dtype': args.golden_dtype,
        # How far PyTorch's own float32 forward is from the golden (the fp32 noise floor).
        'torch_fp32_max_abs_diff': {str(b): e for b, e in fp32_error.items()},
        'ops': ops,
        'torch': torch.__version__,
    }
    save_atomic(os.path.join(args.out, name + '.json'),
                lambda tmp: open(tmp, 'w').write(json.dumps(info, indent=1) + '\n'))


def main(argv):
    try:
        args = parse_args(argv)
        check_out_dir(args.out)
    except UsageError as e:
        print('export_models.py: error: %s' % e, file=sys.stderr)
        return 2
    try:
        import torch
    except ImportError:
        print('export_models.py: error: PyTorch is not installed (use /usr/bin/python3 '
              'with Debian\'s python3-torch)', file=sys.stderr)
        return 3
    torch.set_num_threads(2)
    # The exporter's shape-inference UserWarnings are noise here.
    import warnings
    warnings.filterwarnings('ignore', category=UserWarning)
    torch.use_deterministic_algorithms(True)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    t0 = time.time()
    try:
        for name in args.models:
            export_one(name, args)
    except UsageError as e:
        print('export_models.py: error: %s' % e, file=sys.stderr)
        return 2
    except OSError as e:
        print('export_models.py: error: %s: %s' % (e.filename or args.out, e.strerror),
              file=sys.stderr)
        return 2
    except Exception as e:
        print('export_models.py: error: export failed: %s' % str(e).splitlines()[0],
              file=sys.stderr)
        return 3
    print('done: %d model(s) in %.1f s' % (len(args.models), time.time() - t0))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
