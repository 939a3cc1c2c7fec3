"""Training data for the demo's small lip-sync model (tools/train_demo.py): espeak-ng speech
with its phoneme timing, the mouth shape each phoneme calls for, and that mouth drawn onto
the synthetic avatar's face.

Why phoneme events and not acoustic features: a mouth driven by loudness would teach the
model "louder = more open", which is what sync-check measures and so would prove nothing
beyond itself; visemes from libespeak-ng's own phoneme events (closed for m/b/p, rounded
for o/u, open for a) are the shape a speaker makes, timed by the synthesiser that made the
sound, so the model must learn which sounds close the lips (a loud "m" closes them).
"""
import ctypes

import numpy as np

ESPEAK_RATE = 22050  # libespeak-ng always synthesises at 22050 Hz
TARGET_RATE = 16000  # contract section 4

# Sentences the model never hears in training (the demo's own and the CI test's); the
# corpus generator refuses to produce them.
DEMO_TEXT = ("Welcome to talkrender. This mouth was drawn by a small network, trained on my "
             "own voice, that learned to move my lips from speech alone.")
TEST_TEXT = "Maybe our purple boat will float past the old mill before noon."
HELD_OUT = (DEMO_TEXT, TEST_TEXT)

# espeak-ng voices (Debian's espeak-ng-data, no mbrola) and variants, mixed in training.
VOICES = ('en-us', 'en', 'en-gb-scotland', 'en-029', 'en-gb-x-rp', 'en-us-nyc',
          'en-gb-x-gbclan', 'en-gb-x-gbcwmd')
VARIANTS = ('', '+m1', '+m3', '+m5', '+f1', '+f2', '+f3', '+f4', '+klatt')

# --- the corpus: seeded sentences from a small grammar ---------------------------------

_NAMES = ('Bob', 'Mary', 'Paul', 'Anna', 'Tom', 'Maya', 'Oscar', 'Lucy', 'Hugo', 'Ruth',
          'Peter', 'Emma', 'Arthur', 'Olivia', 'Bruno', 'Fiona')
_ADJ = ('big', 'small', 'happy', 'quiet', 'loud', 'blue', 'bright', 'warm', 'cold', 'smooth',
        'broken', 'famous', 'hungry', 'empty', 'heavy', 'open', 'yellow', 'round', 'tiny',
        'rough', 'modern', 'ancient', 'moody', 'pleasant', 'awful', 'mighty')
_NOUNS = ('apple', 'window', 'mountain', 'river', 'teacher', 'garden', 'pocket', 'boat',
          'movie', 'bottle', 'piano', 'engine', 'market', 'table', 'monkey', 'umbrella',
          'ocean', 'pumpkin', 'forest', 'bubble', 'museum', 'library', 'moon', 'ball', 'map',
          'cup', 'wolf', 'robot', 'pebble', 'mirror', 'harbour', 'balloon', 'cookie',
          'office', 'farmer', 'lamp', 'basket', 'pool', 'shoe', 'bridge', 'tower', 'voice')
_VERBS = ('found', 'moved', 'bought', 'painted', 'opened', 'watched', 'pushed', 'cooked',
          'followed', 'borrowed', 'lifted', 'wrapped', 'mopped', 'fixed', 'dropped',
          'loved', 'measured', 'played', 'grabbed', 'pulled', 'shook', 'washed')
_ADVERBS = ('slowly', 'quickly', 'happily', 'maybe', 'often', 'barely', 'always', 'early',
            'loudly', 'softly', 'today', 'yesterday', 'at noon', 'again')
_PLACES = ('near the harbour', 'by the old bridge', 'in the big market', 'under a blue moon',
           'at home', 'on top of the tower', 'behind the museum', 'along the river',
           'in my pocket', 'beside the pool', 'over the mountain', 'around the garden')
_OPENERS = ('Look,', 'Well,', 'Oh,', 'Honestly,', 'By the way,', 'Oh wow,', 'Hmm,', 'Okay,')
_NUMBERS = ('one', 'two', 'three', 'four', 'five', 'seven', 'nine', 'ten', 'twelve',
            'twenty', 'a hundred', 'ninety nine')


def _sentence(rng):
    pick = lambda words: words[rng.randint(len(words))]
    kind = rng.randint(6)
    if kind == 0:
        s = '%s %s the %s %s %s' % (pick(_NAMES), pick(_VERBS), pick(_ADJ), pick(_NOUNS),
                                    pick(_PLACES))
    elif kind == 1:
        s = 'Did %s %s %s %s %ss?' % (pick(_NAMES), pick(_ADVERBS), pick(('buy', 'paint',
                                                                         'move', 'push')),
                                      pick(_NUMBERS), pick(_NOUNS))
    elif kind == 2:
        s = 'The %s %s was %s, and the %s was %s' % (pick(_ADJ), pick(_NOUNS), pick(_ADJ),
                                                      pick(_NOUNS), pick(_ADJ))
    elif kind == 3:
        s = '%s %s, %s %s a %s %s' % (pick(_OPENERS), pick(_NAMES), pick(_ADVERBS), pick(_VERBS),
                                      pick(_ADJ), pick(_NOUNS))
    elif kind == 4:
        s = 'We %s %s %ss, then %s %s them %s' % (pick(_ADVERBS), pick(_VERBS), pick(_NUMBERS),
                                                   pick(_NOUNS), pick(_VERBS), pick(_PLACES))
    else:
        s = 'My %s %s the %s %s' % (pick(_NOUNS), pick(_VERBS), pick(_NOUNS), pick(_ADVERBS))
    s = s[0].upper() + s[1:]
    return s if s[-1] in '.?!' else s + pick(('.', '.', '!', '?'))


def corpus_utterance(rng):
    """One to three sentences (their punctuation gives espeak-ng's pauses)."""
    while True:
        text = ' '.join(_sentence(rng) for _ in range(1 + rng.randint(3)))
        if not any(h in text for h in HELD_OUT):
            return text


# --- espeak-ng through its C API: samples and phoneme events ----------------------------

_EVENT_PHONEME = 7


class _Event(ctypes.Structure):
    _fields_ = [('type', ctypes.c_int), ('unique_identifier', ctypes.c_uint),
                ('text_position', ctypes.c_int), ('length', ctypes.c_int),
                ('audio_position', ctypes.c_int), ('sample', ctypes.c_int),
                ('user_data', ctypes.c_void_p), ('id', ctypes.c_char * 8)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_Event))


class Espeak:
    """libespeak-ng in synchronous mode with phoneme events (the espeak-ng command prints
    no timing, so the library is called directly)."""

    def __init__(self):
        self.lib = ctypes.CDLL('libespeak-ng.so.1')
        # AUDIO_OUTPUT_SYNCHRONOUS, espeakINITIALIZE_PHONEME_EVENTS | DONT_EXIT
        rate = self.lib.espeak_Initialize(2, 0, None, 0x0001 | 0x8000)
        if rate != ESPEAK_RATE:
            raise RuntimeError('libespeak-ng: initialisation failed (rate %d)' % rate)
        self._chunks, self._events = [], []
        self._callback = _CALLBACK(self._on_synth)  # kept alive: the library holds it
        self.lib.espeak_SetSynthCallback(self._callback)

    def _on_synth(self, wav, n, events):
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, (n, )).copy())
        i = 0
        while events[i].type != 0:
            if events[i].type == _EVENT_PHONEME:
                self._events.append((events[i].sample, events[i].id.decode('ascii', 'replace')))
            i += 1
        return 0

    def say(self, text, voice='en-us', rate=160, pitch=50, pitch_range=50):
        """-> (int16 samples at 22050 Hz, [(start sample, phoneme)])"""
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise RuntimeError('libespeak-ng: unknown voice %s' % voice)
        for param, value in ((1, rate), (3, pitch), (4, pitch_range)):
            self.lib.espeak_SetParameter(param, int(value), 0)
        self._chunks, self._events = [], []
        data = text.encode()
        # POS_CHARACTER, espeakCHARS_AUTO
        self.lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, 0, None, None)
        self.lib.espeak_Synchronize()
        samples = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return samples, list(self._events)


def to_16k(samples_22050):
    """int16 at 22050 Hz -> float64 at 16 kHz in [-1, 1] (polyphase, 320/441)."""
    from scipy.signal import resample_poly
    return resample_poly(samples_22050.astype(np.float64) / 32768.0, 320, 441)


# --- visemes -----------------------------------------------------------------------------

# (open, round) per espeak-ng English phoneme mnemonic; open 0 = lips together.
_VISEME = {}
for _names, _shape in (
    (('p', 'b', 'm'), (0.0, 0.15)),
    (('f', 'v'), (0.08, 0.0)),
    (('u:', 'U', 'u', 'w', 'W', 'U@', 'u@'), (0.3, 1.0)),
    (('oU', 'O:', 'O', '0', 'o', 'OI', 'O@', 'o@', 'aU', 'O#'), (0.65, 0.7)),
    (('a', 'a#', 'A:', 'A@', 'aI', '{', 'V', 'a2', 'A', 'aI@', 'aI3', 'aU@'), (1.0, 0.0)),
    (('E', 'e', 'eI', '@', '3:', '3', '@L', '@2', '@5', 'e@', 'i@', 'E2', 'I2', '@-'),
     (0.55, 0.0)),
    (('i', 'i:', 'I', 'j', 'I#', 'i@3'), (0.3, 0.0)),
    (('r', 'r-', 'R'), (0.3, 0.45)),
    (('S', 'Z', 'tS', 'dZ'), (0.25, 0.5)),
):
    for _n in _names:
        _VISEME[_n] = _shape
_CONSONANT = (0.25, 0.0)  # t d n l s z k g h T D N x ...
_CLOSED = (0.0, 0.0)


def viseme(phoneme):
    p = phoneme.strip()
    if not p or p.startswith('_'):
        return _CLOSED  # a pause
    if p in _VISEME:
        return _VISEME[p]
    if p[:2] in _VISEME:
        return _VISEME[p[:2]]
    return _VISEME.get(p[0], _CONSONANT)


# Where in a phoneme its key pose sits (0 = its start, 1 = its end). Measured against
# sync-check's own analysis on 40 corpus utterances (ground-truth tracks, mean r at lags
# -1, 0, +1 frames): keys at the midpoint gave 0.70 / 0.71 / 0.55, a tie that a model's
# smoothing tips to -1 (the demo model trained with it measured -1); a quarter in gives
# 0.63 / 0.75 / 0.65, a peak centred on 0. The mouth reaching its shape early in the sound
# is also what speakers do.
KEY_POSITION = 0.25


def mouth_track(events, n_samples, frames, fps=25, lead_s=0.0, smooth_s=0.025):
    """(open, round) of video frame i = 0..frames-1: the phonemes' shapes as key poses at
    KEY_POSITION of each phoneme, linearly blended (co-articulation), smoothed by a
    Gaussian of `smooth_s`, and read at the middle of the frame's 1/fps of audio (time
    i/fps + 1/(2 fps)); `lead_s` = silence added before the speech. Closed before the first
    and after the last phoneme."""
    step = 0.005
    t = np.arange(0.0, lead_s + n_samples / ESPEAK_RATE + 1.0, step)
    keys_t, keys_v = [lead_s - 0.05], [_CLOSED]
    starts = [s for s, _ in events] + [n_samples]
    for (s, p), e in zip(events, starts[1:]):
        keys_t.append(lead_s + (s + KEY_POSITION * (max(s, e) - s)) / ESPEAK_RATE)
        keys_v.append(viseme(p))
    keys_t.append(lead_s + n_samples / ESPEAK_RATE + 0.05)
    keys_v.append(_CLOSED)
    order = np.argsort(keys_t, kind='stable')
    kt = np.asarray(keys_t)[order]
    kv = np.asarray(keys_v)[order]
    track = np.stack([np.interp(t, kt, kv[:, c]) for c in range(2)], axis=1)
    half = int(3 * smooth_s / step)
    g = np.exp(-0.5 * (np.arange(-half, half + 1) * step / smooth_s)**2)
    g /= g.sum()
    track = np.stack([np.convolve(track[:, c], g, mode='same') for c in range(2)], axis=1)
    ti = (np.arange(frames) + 0.5) / fps
    return np.stack([np.interp(ti, t, track[:, c]) for c in range(2)], axis=1)


# --- the mouth on the avatar's face -------------------------------------------------------

# In the 160x160 model ROI of the demo avatar (talkrender demo --avatar-only, S = 160): the
# drawn face's closed mouth is centred at (80, 116), 72 x 16 pixels; lip colour as
# render/demo_package.cc draws it (BGR).
MOUTH_CENTRE = (80, 116)
LIPS = (70, 70, 170)
CAVITY = (45, 25, 60)
TEETH = (228, 232, 236)
# The rows and columns a mouth can cover (loss weighting in training).
MOUTH_BOX = (slice(88, 146), slice(36, 124))


def draw_mouth(roi, open_amount, roundness):
    """roi (uint8 BGR, 160x160, the face with its closed mouth) -> a copy with the mouth
    drawn open by `open_amount` (0..1) and rounded by `roundness` (0..1)."""
    import cv2
    img = roi.copy()
    cx, cy = MOUTH_CENTRE
    aa = cv2.LINE_AA
    # The closed mouth off, in the skin colour just above it (as decoded, not as drawn).
    skin = tuple(float(v) for v in np.median(roi[98:102, 50:110].reshape(-1, 3), axis=0))
    cv2.ellipse(img, (cx, cy), (41, 13), 0, 0, 360, skin, -1, aa)
    o = float(np.clip(open_amount, 0.0, 1.0))
    r = float(np.clip(roundness, 0.0, 1.0))
    w = 36.0 - 15.0 * r
    h = 7.0 + 19.0 * o + 3.0 * r * o
    cv2.ellipse(img, (cx, cy), (int(round(w)), int(round(h))), 0, 0, 360, LIPS, -1, aa)
    if o > 0.04:
        iw, ih = w - 6.0 - 2.0 * r, max(1.0, (h - 5.0) * min(1.0, 0.4 + 0.6 * o / 0.3))
        mask = np.zeros(img.shape[:2], np.uint8)
        cv2.ellipse(mask, (cx, cy), (int(round(iw)), int(round(ih))), 0, 0, 360, 255, -1, aa)
        a = (mask.astype(np.float32) / 255.0)[:, :, None]
        img = (img * (1 - a) + np.asarray(CAVITY, np.float32) * a)
        if o > 0.3:  # upper teeth: the top third of the opening
            teeth = np.zeros(img.shape[:2], np.uint8)
            y_top = int(round(cy - ih))
            cv2.rectangle(teeth, (0, y_top), (159, int(round(cy - ih * 0.45))), 255, -1)
            t = (np.minimum(teeth, mask).astype(np.float32) / 255.0)[:, :, None]
            img = img * (1 - t) + np.asarray(TEETH, np.float32) * t
        img = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    return img


def envelope_correlation(samples_16k, track_open, fps=25, rate=TARGET_RATE):
    """Pearson r between the open track and the per-frame loudness (dB, 45 dB floor) that
    sync-check uses: how much a perfect mouth could score."""
    win = rate // fps
    n = min(len(track_open), len(samples_16k) // win)
    ms = np.array([np.mean(samples_16k[i * win:(i + 1) * win]**2) for i in range(n)])
    db = 10 * np.log10(ms + 1e-20)
    db = np.maximum(db, db.max() - 45.0)
    x = track_open[:n]
    if n < 3 or np.std(x) == 0 or np.std(db) == 0:
        return float('nan')
    return float(np.corrcoef(x, db)[0, 1])


def lead_silence(rng, low=0.1, high=0.8):
    return float(low + (high - low) * rng.rand())

