#!/usr/bin/python3
"""Independent numpy reference for talkrender's audio front-end (model contract section 4).

Written from the contract text, not from the C++ code: float64 throughout, the Slaney mel
filterbank built from its formulas (librosa.filters.mel defaults: htk=False, norm="slaney"),
numpy's FFT. Resampling is not implemented: input must already be 16 kHz.

  audio_reference.py mel --audio FILE.wav --out mel.npy        # [80, T] float32
  audio_reference.py frames --mel-frames T                     # prints n and the windows
  audio_reference.py windows --features P.npy --index I --out W.npy
                                                               # generator window, [16, C]
  audio_reference.py features --encoder E.onnx (--audio FILE.wav | --mel M.npy) --out P.npy
                                                               # P [n + 2, 512] float32

The encoder graph is evaluated node by node from the ONNX file (Conv, Relu, Add, Squeeze,
Flatten, Reshape, BatchNormalization, Identity, Constant) with torch.nn.functional in float32 (as PyTorch computes the goldens).
"""
import argparse
import math
import sys
import wave

import numpy as np

SAMPLE_RATE = 16000
N_FFT = 800
HOP = 200
N_MELS = 80
FMIN = 55.0
FMAX = 7600.0
PREEMPHASIS = 0.97


def read_wav_16k_mono(path):
    """PCM 16/24/32-bit or float WAV at 16 kHz -> float64 mono (mean of channels)."""
    try:
        from scipy.io import wavfile
    except ImportError:
        wavfile = None
    if wavfile is not None:
        rate, data = wavfile.read(path)
        if data.dtype == np.int16:
            x = data.astype(np.float64) / 32768.0
        elif data.dtype == np.int32:
            x = data.astype(np.float64) / 2147483648.0
        elif data.dtype == np.uint8:
            x = (data.astype(np.float64) - 128.0) / 128.0
        else:
            x = data.astype(np.float64)
    else:
        with wave.open(path, "rb") as w:
            rate = w.getframerate()
            if w.getsampwidth() != 2:
                raise SystemExit(f"{path}: only 16-bit PCM without scipy")
            raw = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
            x = raw.reshape(-1, w.getnchannels()).astype(np.float64) / 32768.0
    if rate != SAMPLE_RATE:
        raise SystemExit(f"{path}: sample rate {rate}, the reference needs {SAMPLE_RATE}")
    if x.ndim == 2:
        x = x.mean(axis=1)
    return x


# --- Slaney mel scale (Auditory Toolbox / librosa htk=False) ---------------------------
def hz_to_mel(f):
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3.0
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    return np.where(f >= min_log_hz,
                    min_log_mel + np.log(np.maximum(f, 1e-300) / min_log_hz) / logstep,
                    f / f_sp)


def mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    f_sp = 200.0 / 3.0
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)),
                    f_sp * m)


def mel_filterbank():
    """[80, 401]: triangles on N_MELS + 2 points equally spaced in Slaney mel between FMIN
    and FMAX, each scaled by 2 / (upper edge - lower edge) in Hz (Slaney area norm)."""
    fft_freqs = np.arange(N_FFT // 2 + 1) * (SAMPLE_RATE / N_FFT)
    edges_hz = mel_to_hz(np.linspace(hz_to_mel(FMIN), hz_to_mel(FMAX), N_MELS + 2))
    weights = np.zeros((N_MELS, fft_freqs.size))
    for m in range(N_MELS):
        lo, centre, hi = edges_hz[m], edges_hz[m + 1], edges_hz[m + 2]
        rising = (fft_freqs - lo) / (centre - lo)
        falling = (hi - fft_freqs) / (hi - centre)
        weights[m] = np.maximum(0.0, np.minimum(rising, falling))
        weights[m] *= 2.0 / (hi - lo)
    return weights


def mel_spectrogram(x):
    """16 kHz mono samples -> normalised mel M [80, T] (float64)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.empty_like(x)
    if x.size:
        y[0] = x[0]
        y[1:] = x[1:] - PREEMPHASIS * x[:-1]
    padded = np.concatenate([np.zeros(N_FFT // 2), y, np.zeros(N_FFT // 2)])
    frames = 1 + x.size // HOP
    n = np.arange(N_FFT)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / N_FFT)  # periodic Hann
    idx = np.arange(frames)[:, None] * HOP + n[None, :]
    spectrum = np.abs(np.fft.rfft(padded[idx] * window[None, :], axis=1))  # [T, 401]
    mel = mel_filterbank() @ spectrum.T  # [80, T]
    db = 20.0 * np.log10(np.maximum(1e-5, mel)) - 20.0
    return np.clip(8.0 * (db + 100.0) / 100.0 - 4.0, -4.0, 4.0)


def frame_count(T):
    """Contract step 8, evaluated in IEEE double like the reference's Python."""
    return int(math.floor((T - 16) / 80.0 * 25.0)) + 2


def mel_window(i, T):
    s = int(math.floor(80.0 * (i / 25.0)))
    e = s + 16
    if e > T:
        e = T
        s = T - 16
    return s, e


def generator_window(P, i):
    """Rows P[i-8 .. i+8) with zero rows outside P: [16, C]."""
    out = np.zeros((16, P.shape[1]), dtype=P.dtype)
    for k in range(16):
        r = i - 8 + k
        if 0 <= r < P.shape[0]:
            out[k] = P[r]
    return out


def run_onnx_encoder(onnx_path, windows):
    """windows [B, 1, 80, 16] -> [B, 512], evaluating the graph's nodes one by one."""
    import onnx
    from onnx import numpy_helper
    import torch
    import torch.nn.functional as F
    model = onnx.load(onnx_path)
    g = model.graph
    values = {t.name: torch.from_numpy(numpy_helper.to_array(t).astype(np.float32)
                                       if numpy_helper.to_array(t).dtype.kind == "f"
                                       else numpy_helper.to_array(t).copy())
              for t in g.initializer}
    values[g.input[0].name] = torch.from_numpy(np.asarray(windows, dtype=np.float32))

    def attrs(node):
        return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}

    for node in g.node:
        a = attrs(node)
        ins = [values[i] if i else None for i in node.input]
        op = node.op_type
        if op == "Conv":
            pads = a.get("pads", [0, 0, 0, 0])
            x = F.pad(ins[0], (pads[1], pads[3], pads[0], pads[2]))
            out = F.conv2d(x, ins[1], ins[2] if len(ins) > 2 else None,
                           stride=tuple(a.get("strides", [1, 1])),
                           dilation=tuple(a.get("dilations", [1, 1])), groups=a.get("group", 1))
        elif op == "Relu":
            out = torch.relu(ins[0])
        elif op == "Add":
            out = ins[0] + ins[1]
        elif op == "Identity":
            out = ins[0]
        elif op == "Constant":
            out = torch.from_numpy(numpy_helper.to_array(a["value"]).copy())
        elif op == "Squeeze":
            axes = ins[1].tolist() if len(ins) > 1 and ins[1] is not None else a.get("axes")
            out = ins[0]
            for ax in sorted([x % out.dim() for x in axes], reverse=True):
                out = out.squeeze(ax)
        elif op == "Flatten":
            out = ins[0].reshape(ins[0].shape[0], -1)
        elif op == "Reshape":
            shape = [int(v) for v in ins[1].tolist()]
            shape = [ins[0].shape[i] if v == 0 else v for i, v in enumerate(shape)]
            out = ins[0].reshape(shape)
        elif op == "BatchNormalization":
            x, sc, b, mean, var = ins[:5]
            eps = a.get("epsilon", 1e-5)
            sh = (1, -1, 1, 1)
            out = (x - mean.view(sh)) / torch.sqrt(var.view(sh) + eps) * sc.view(sh) + b.view(sh)
        else:
            raise SystemExit(f"{onnx_path}: op {op} not supported by the reference")
        values[node.output[0]] = out
    return values[g.output[0].name].reshape(len(windows), -1).numpy()


def features(mel, onnx_path, batch=64):
    """Contract steps 8-11: [80, T] -> P [n + 2, 512]."""
    T = mel.shape[1]
    n = frame_count(T)
    windows = np.stack([mel[:, slice(*mel_window(i, T))] for i in range(n)])[:, None]
    F_rows = np.concatenate([run_onnx_encoder(onnx_path, windows[b:b + batch])
                             for b in range(0, n, batch)])
    return np.concatenate([F_rows[:1], F_rows, F_rows[-1:]])


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("mel")
    a.add_argument("--audio", required=True)
    a.add_argument("--out", required=True)
    b = sub.add_parser("frames")
    b.add_argument("--mel-frames", type=int, required=True)
    c = sub.add_parser("windows")
    c.add_argument("--features", required=True)
    c.add_argument("--index", type=int, required=True)
    c.add_argument("--out", required=True)
    d = sub.add_parser("features")
    d.add_argument("--encoder", required=True)
    d.add_argument("--audio")
    d.add_argument("--mel")
    d.add_argument("--out", required=True)
    args = ap.parse_args()
    if args.cmd == "mel":
        m = mel_spectrogram(read_wav_16k_mono(args.audio)).astype(np.float32)
        np.save(args.out, m)
        print(f"T={m.shape[1]} n={frame_count(m.shape[1])}")
    elif args.cmd == "frames":
        T = args.mel_frames
        n = frame_count(T)
        print(f"T={T} n={n}")
        for i in range(n):
            print(i, *mel_window(i, T))
    elif args.cmd == "features":
        if args.mel:
            mel = np.load(args.mel).astype(np.float64)
        elif args.audio:
            mel = mel_spectrogram(read_wav_16k_mono(args.audio))
        else:
            raise SystemExit("features: give --audio or --mel")
        P = features(mel, args.encoder).astype(np.float32)
        np.save(args.out, P)
        print(f"T={mel.shape[1]} n={P.shape[0] - 2} P={P.shape}")
    else:
        P = np.load(args.features)
        np.save(args.out, generator_window(P, args.index))
    return 0


if __name__ == "__main__":
    sys.exit(main())
