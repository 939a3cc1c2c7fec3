# The "cli" group (issue 22): what the command line promises a new user. Run in
# catalogue.py's namespace (case, render_args, write_* and the runner come from there).
#
#   * --overwrite replaces only files of the sequence we write, never anything else (a
#     folder with the user's files, the current directory, the folder of an input);
#   * the output kind comes from the --out name as ffmpeg decides it, odd names are refused;
#   * --features with --audio muxes the speech;
#   * every flag is checked before anything is loaded (in under a second);
#   * the words agree with the tool: summary line, JSON report, one-line usage errors,
#     FFmpeg's log, --help against the README.

FAST_S = 1.0  # "fails in under 1 s before loading anything"


def cli_case(name):
    """case('cli', name), with the case's check turned into a failure message when it
    raises (e.g. no JSON where a report was due), so one case cannot stop the group."""
    def register(make):
        def guarded(e, d):
            spec = make(e, d)
            check = spec.get('check')
            if check:
                def safe(res):
                    try:
                        return check(res)
                    except Exception as x:  # noqa: BLE001: any failure is the case's
                        return 'check failed: %s: %s' % (type(x).__name__, x)
                spec['check'] = safe
            return spec
        return case('cli', name)(guarded)
    return register


def _run(args, cwd=None, timeout=CASE_TIMEOUT_S):
    """The binary once more, from a check: (rc, stdout, stderr, seconds). (The runner gives
    a check the child's stdout only; checks that read stderr run the command again.)"""
    t = time.time()
    p = subprocess.run([BINARY] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       cwd=cwd, timeout=timeout)
    return (p.returncode, p.stdout.decode('utf-8', 'replace'),
            p.stderr.decode('utf-8', 'replace'), time.time() - t)


def _png(path):
    with open(path, 'rb') as f:
        return f.read(8) == b'\x89PNG\r\n\x1a\n'


def _jpeg(path):
    with open(path, 'rb') as f:
        return f.read(3) == b'\xff\xd8\xff'


def _timed(spec, limit_s=FAST_S, also=None):
    """Adds a check that the run took under limit_s beyond starting the executable (timed
    from here: the runner starts the process right after the case is made; the start-up,
    dynamic loading and the OpenMP re-exec, is measured as `talkrender --version` right
    after, since a loaded machine stretches it past a second on its own)."""
    t0 = time.time()

    def check(res):
        took = time.time() - t0
        startup = _run(['--version'])[3]
        if took - startup >= limit_s:
            return ('took %.2f s, %.2f s beyond start-up (%.2f s); expected under %.1f s '
                    '(checks before loading)' % (took, took - startup, startup, limit_s))
        return also(res) if also else None
    spec['check'] = check
    return spec


def _broken_inputs(d):
    """A generator and a package video that fail as soon as they are read: a case that
    expects a flag's error proves, by getting it, that nothing was loaded first."""
    gen = os.path.join(d, 'broken_gen.onnx')
    write_bytes(gen, b'not an onnx model\n')
    pkg = os.path.join(d, 'pkg_broken_video')
    shutil.copytree(os.path.join(FIXTURES, 'package'), pkg,
                    ignore=shutil.ignore_patterns('done'))
    write_bytes(os.path.join(pkg, 'full_body_video.mp4'), b'\x00' * 64)
    return gen, pkg


# --- overwrite: only our files ---------------------------------------------------------


@cli_case('overwrite_folder_keeps_other_files')
def _(e, d):
    # The data loss: a folder with notes.txt and sub/, --overwrite. Both stay; the
    # old frames of our pattern are replaced, and the ones beyond the new count removed.
    out = os.path.join(d, 'out', 'mydir')
    os.makedirs(os.path.join(out, 'sub'))
    write_bytes(os.path.join(out, 'notes.txt'), b'my notes')
    write_bytes(os.path.join(out, 'sub', 'inner.txt'), b'inner')
    write_bytes(os.path.join(out, 'frame_0001.png'), b'other padding: not ours')
    for i in range(6):
        write_bytes(os.path.join(out, 'frame_%06d.png' % i), b'old frame')

    def check(res):
        names = sorted(os.listdir(out))
        want = sorted(['notes.txt', 'sub', 'frame_0001.png'] +
                      ['frame_%06d.png' % i for i in range(4)])
        if names != want:
            return 'folder holds %s, expected %s' % (names, want)
        if not all(_png(os.path.join(out, 'frame_%06d.png' % i)) for i in range(4)):
            return 'the frames were not replaced by new PNGs'
        return None
    return dict(args=render_args(e.base_pkg, out + '/', e.tiny, features=e.features(d),
                                 extra=['--overwrite']),
                rc=0, names=[], problem='', out=None, check=check,
                keep={os.path.join(out, 'notes.txt'): b'my notes',
                      os.path.join(out, 'sub', 'inner.txt'): b'inner',
                      os.path.join(out, 'frame_0001.png'): b'other padding: not ours'})


@cli_case('folder_with_other_files_needs_overwrite')
def _(e, d):
    out = os.path.join(d, 'out', 'mydir')
    os.makedirs(out)
    write_bytes(os.path.join(out, 'notes.txt'), b'my notes')
    return dict(args=render_args(e.base_pkg, out + '/', e.tiny, features=e.features(d)),
                rc=2, names=['mydir'], problem=r'not empty.*--overwrite', out=None,
                keep={os.path.join(out, 'notes.txt'): b'my notes'})


@cli_case('empty_folder_is_used')
def _(e, d):
    out = os.path.join(d, 'out', 'empty')
    os.makedirs(out)

    def check(res):
        names = sorted(os.listdir(out))
        if names != ['frame_%06d.png' % i for i in range(4)]:
            return 'expected 4 PNG frames, found %s' % names
        return None
    return dict(args=render_args(e.base_pkg, out, e.tiny, features=e.features(d)), rc=0,
                names=[], problem='', out=None, check=check)


@cli_case('current_dir_and_input_folder_keep_their_files')
def _(e, d):
    # A sandbox holding the package, the features and the user's files. Rendered into it
    # with --overwrite: once named by its path (the folder of every input), once as ./ from
    # inside it (the current directory). Only frame_*.png appear; nothing else changes.
    box = os.path.join(d, 'out', 'sandbox')
    os.makedirs(os.path.join(box, 'sub'))
    write_bytes(os.path.join(box, 'keep.txt'), b'keep me')
    write_bytes(os.path.join(box, 'sub', 'deep.txt'), b'deep')
    pkg = e.package(box)
    feat = e.features(box)
    before = set(listing(box))

    def check(res):
        rc, so, se, _ = _run(render_args('pkg', './', e.tiny, features='feat.bin',
                                         extra=['--overwrite']), cwd=box)
        if rc != 0:
            return './ --overwrite from inside: rc %d: %s' % (rc, se.strip())
        after = set(listing(box))
        frames = ['frame_%06d.png' % i for i in range(4)]
        if after != before | set(frames):
            return 'sandbox changed: gone %s, new %s' % (sorted(before - after),
                                                        sorted(after - before))
        if not all(_png(os.path.join(box, f)) for f in frames):
            return 'frames are not PNGs'
        return None
    return dict(args=render_args(pkg, box + '/', e.tiny, features=feat, extra=['--overwrite']),
                rc=0, names=[], problem='', out=None, check=check,
                keep={os.path.join(box, 'keep.txt'): b'keep me',
                      os.path.join(box, 'sub', 'deep.txt'): b'deep',
                      feat: open(feat, 'rb').read()})


@cli_case('input_named_like_a_frame_is_refused')
def _(e, d):
    # The one way --overwrite could replace an input in a folder: an input with our
    # pattern's name. Refused before anything is written.
    out = os.path.join(d, 'out', 'seq')
    os.makedirs(out)
    feat = os.path.join(out, 'f_000000.png')  # raw features (+ f_000000.json), oddly named
    write_features(feat, 4)
    before = open(feat, 'rb').read()
    return dict(args=render_args(e.base_pkg, os.path.join(out, 'f_%06d.png'), e.tiny,
                                 features=feat, extra=['--overwrite']),
                rc=2, names=['f_000000.png'], problem=r'input of this render.*named like a frame',
                out=None, keep={feat: before})


# --- the output kind comes from the name --------------------------------------------------


def _refused_name(e, d, name, problem, extra=()):
    out = os.path.join(d, 'out', name)
    return dict(args=render_args(e.base_pkg, out, e.tiny, features=e.features(d),
                                 extra=list(extra)),
                rc=2, names=[name], problem=problem, out=None if '%' in name else out)


@cli_case('out_webm_refused')
def _(e, d):
    return _refused_name(e, d, 'out.webm', r'\.webm.*not supported.*\.mp4')


@cli_case('out_mkv_refused')
def _(e, d):
    return _refused_name(e, d, 'out.mkv', r'\.mkv.*not supported.*\.mp4')


@cli_case('out_mov_refused')
def _(e, d):
    return _refused_name(e, d, 'out.mov', r'\.mov.*not supported.*\.mp4')


@cli_case('out_single_image_refused')
def _(e, d):
    return _refused_name(e, d, 'out.jpg', r'single image.*NAME/.*%06d')


@cli_case('out_without_extension_refused')
def _(e, d):
    # "frames2": the slash forgotten. Ambiguous: refused, saying how to write either kind.
    return _refused_name(e, d, 'frames2', r'ambiguous.*NAME\.mp4.*NAME/')


@cli_case('format_contradicts_mp4')
def _(e, d):
    return _refused_name(e, d, 'out.mp4', r'--format jpg.*image sequences.*out\.mp4',
                         extra=['--format', 'jpg'])


@cli_case('format_contradicts_pattern')
def _(e, d):
    return _refused_name(e, d, 'img_%05d.png', r'--format jpg contradicts',
                         extra=['--format', 'jpg'])


@cli_case('pattern_writes_numbered_images')
def _(e, d):
    # img_%03d.jpg: a JPEG sequence named by the pattern, numbered from 0.
    out_dir = os.path.join(d, 'out', 'seq')
    os.makedirs(out_dir)

    def check(res):
        names = sorted(os.listdir(out_dir))
        want = ['img_%03d.jpg' % i for i in range(4)]
        if names != want:
            return 'found %s, expected %s' % (names, want)
        if not all(_jpeg(os.path.join(out_dir, n)) for n in names):
            return 'not JPEG files'
        return None
    return dict(args=render_args(e.base_pkg, os.path.join(out_dir, 'img_%03d.jpg'), e.tiny,
                                 features=e.features(d)),
                rc=0, names=[], problem='', out=None, check=check)


@cli_case('format_jpg_folder')
def _(e, d):
    out = os.path.join(d, 'out', 'frames') + '/'

    def check(res):
        names = sorted(os.listdir(out))
        if names != ['frame_%06d.jpg' % i for i in range(4)] or not all(
                _jpeg(os.path.join(out, n)) for n in names):
            return 'expected 4 JPEG frames, found %s' % names
        return None
    return dict(args=render_args(e.base_pkg, out, e.tiny, features=e.features(d),
                                 extra=['--format', 'jpg']),
                rc=0, names=[], problem='', out=None, check=check)


# --- --features with --audio ----------------------------------------------------------------


def _features_from(e, d, audio, name='feat.npy'):
    """Features of `audio` made by the tool itself (`features` with the seeded encoder)."""
    path = os.path.join(d, name)
    rc, so, se, _ = _run(['features', '--audio', audio, '--audio-encoder', e.enc, '--out', path])
    if rc != 0:
        raise RuntimeError('features failed: ' + se)
    return path


def _probe(path, stream, entry):
    p = subprocess.run(['ffprobe', '-v', 'error', '-select_streams', stream, '-show_entries',
                        'stream=' + entry, '-of', 'default=noprint_wrappers=1:nokey=1', path],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return p.stdout.decode().strip()


@cli_case('features_with_audio_muxes_the_speech')
def _(e, d):
    audio = os.path.join(d, 'speech.wav')
    write_wav_pcm16(audio, sine(1.0))
    feat = _features_from(e, d, audio)
    out = os.path.join(d, 'out', 'video.mp4')

    def check(res):
        if not os.path.isfile(out):
            return 'no MP4'
        if _probe(out, 'a:0', 'codec_name') != 'aac':
            return 'the MP4 has no AAC audio stream'
        dur = float(_probe(out, 'a:0', 'duration') or 0)
        if abs(dur - 1.0) > 0.1:
            return 'audio lasts %.3f s, the speech 1.0 s' % dur
        return None
    return dict(args=['render', '--package', e.base_pkg, '--generator', e.tiny, '--features',
                      feat, '--audio', audio, '--out', out, '--no-progress'],
                rc=0, names=[], problem='', out=None, check=check)


@cli_case('features_with_other_audio_refused')
def _(e, d):
    short = os.path.join(d, 'short.wav')
    write_wav_pcm16(short, sine(1.0))
    feat = _features_from(e, d, short)
    long_audio = os.path.join(d, 'long.wav')
    write_wav_pcm16(long_audio, sine(3.0))
    out = os.path.join(d, 'out', 'video.mp4')
    return dict(args=['render', '--package', e.base_pkg, '--generator', e.tiny, '--features',
                      feat, '--audio', long_audio, '--out', out, '--no-progress'],
                rc=2, names=['long.wav', 'feat.npy'], problem=r'3\.00 s.*not the same speech',
                out=out)


@cli_case('features_alone_says_silent_once')
def _(e, d):
    out = os.path.join(d, 'out', 'video.mp4')
    feat = e.features(d)
    audio = e.audio(d, seconds=0.2)  # 4 rows of features: 0.16 s of video

    def check(res):
        if _probe(out, 'a', 'codec_name'):
            return 'the MP4 has an audio stream'
        again = os.path.join(d, 'out', 'again.mp4')
        rc, _, se, _ = _run(render_args(e.base_pkg, again, e.tiny, features=feat))
        if rc != 0 or se.count('is silent') != 1:
            return 'rc %d; said "is silent" %d times, expected once: %s' % (
                rc, se.count('is silent'), se)
        rc, _, se, _ = _run(['render', '--package', e.base_pkg, '--generator', e.tiny,
                             '--features', feat, '--audio', audio, '--out',
                             os.path.join(d, 'out', 'sound.mp4'), '--no-progress'])
        if rc != 0 or 'is silent' in se:
            return 'with --audio: rc %d, stderr %s' % (rc, se)
        return None
    return dict(args=render_args(e.base_pkg, out, e.tiny, features=feat), rc=0,
                names=[], problem='', out=None, check=check)


# --- every flag checked before any work ----------------------------------------------------


def _early(e, d, extra, rc, names, problem, out_name='video.mp4'):
    gen, pkg = _broken_inputs(d)
    out = os.path.join(d, 'out', out_name)
    spec = dict(args=render_args(pkg, out, gen, features=e.features(d), extra=extra), rc=rc,
                names=names, problem=problem, out=out)
    return _timed(spec)


@cli_case('early_report_json_folder_missing')
def _(e, d):
    return _early(e, d, ['--report-json', os.path.join(d, 'nonexistent', 'r.json')], 3,
                  ['r.json'], r'No such file or directory')


@cli_case('early_preset_typo_lists_presets')
def _(e, d):
    return _early(e, d, ['--preset', 'ultrafst'], 2, ['ultrafst'],
                  r'ultrafast superfast veryfast faster fast medium slow slower veryslow placebo')


@cli_case('early_batch_zero')
def _(e, d):
    return _early(e, d, ['--batch', '0'], 2, ['--batch'], r'>= 1, got 0')


@cli_case('early_threads_negative')
def _(e, d):
    return _early(e, d, ['--threads', '-1'], 2, ['--threads'], r'>= 0.*got -1')


@cli_case('early_workers_zero')
def _(e, d):
    return _early(e, d, ['--workers', '0'], 2, ['--workers'], r'>= 1, got 0')


@cli_case('early_start_frame_beyond_avatar')
def _(e, d):
    return _early(e, d, ['--start-frame', '100000'], 2, ['crop_rectangles.json'],
                  r'--start-frame 100000.*%d frames' % PKG_FRAMES)


@cli_case('early_bad_out_name')
def _(e, d):
    return _early(e, d, [], 2, ['out.mkv'], r'not supported', out_name='out.mkv')


@cli_case('early_features_out_extension')
def _(e, d):
    # features/mel write what the extension says: .npy or .bin; anything else is refused
    # before the audio is decoded or the encoder loaded (a broken encoder proves it).
    gen, _ = _broken_inputs(d)
    out = os.path.join(d, 'out', 'f.txt')
    return _timed(dict(args=['features', '--audio', e.audio(d), '--audio-encoder', gen, '--out',
                             out], rc=2, names=['f.txt'], problem=r'\.npy.*\.bin', out=out))


@cli_case('early_mel_out_extension')
def _(e, d):
    out = os.path.join(d, 'out', 'mel.bin.txt')
    return _timed(dict(args=['mel', '--audio', e.audio(d, seconds=30.0), '--out', out], rc=2,
                       names=['mel.bin.txt'], problem=r'\.npy.*\.bin', out=out))


@cli_case('batch_capped_at_frames')
def _(e, d):
    # --batch 9999 --frames 3: the batch used is 3 (reported), not a 9999-frame batch.
    out = os.path.join(d, 'out', 'frames') + '/'

    def check(res):
        rep = json.loads(res.stdout_text)
        if rep.get('batch') != 3 or rep.get('frames') != 3:
            return 'report says batch %s, frames %s; expected 3, 3' % (rep.get('batch'),
                                                                       rep.get('frames'))
        return None
    return dict(args=render_args(e.base_pkg, out, e.tiny, features=e.features(d, rows=8),
                                 extra=['--batch', '9999', '--frames', '3', '--json']),
                rc=0, names=[], problem='', out=None, check=check)


@cli_case('features_bin_is_raw_and_renders')
def _(e, d):
    # features --out f.bin writes raw float32 + f.json (not .npy bytes), which render reads.
    audio = os.path.join(d, 'speech.wav')
    write_wav_pcm16(audio, sine(1.0))
    feat = _features_from(e, d, audio, name='f.bin')
    out = os.path.join(d, 'out', 'frames') + '/'

    def check(res):
        import numpy as np
        side = json.load(open(os.path.join(d, 'f.json')))
        rows, cols = side['shape']
        if cols != 512 or os.path.getsize(feat) != rows * cols * 4:
            return 'f.bin is %d bytes for shape %s' % (os.path.getsize(feat), side['shape'])
        ref = np.load(_features_from(e, d, audio, name='f.npy'))
        raw = np.fromfile(feat, dtype='<f4').reshape(rows, cols)
        if not np.array_equal(ref, raw):
            return 'f.bin differs from f.npy'
        return None
    return dict(args=render_args(e.base_pkg, out, e.tiny, features=feat,
                                 extra=['--frames', '2']),
                rc=0, names=[], problem='', out=None, check=check)


# --- words that agree with the tool -------------------------------------------------------


@cli_case('report_json_on_stdout_only_with_json')
def _(e, d):
    out = os.path.join(d, 'out', 'frames') + '/'
    feat = e.features(d)

    def check(res):
        rep = json.loads(res.stdout_text)
        for k in ('frames', 'wall_s', 'render_s', 'fps', 'batch', 'peak_rss_mb'):
            if k not in rep:
                return 'report lacks %s' % k
        if abs(rep['fps'] - rep['frames'] / rep['render_s']) > 1e-6 * rep['fps'] + 1e-9:
            return 'fps %s is not frames / render_s' % rep['fps']
        # The summary line (stderr) names both spans, each with its own figure; no JSON
        # there, and without --json nothing on stdout.
        rc, so, se, _ = _run(render_args(e.base_pkg, os.path.join(d, 'out', 'again') + '/',
                                         e.tiny, features=feat))
        if rc != 0 or so.strip() or '{' in se:
            return 'without --json: rc %d, stdout %r, stderr %r' % (rc, so, se)
        m = re.search(r'rendered (\d+) frames .*: ([\d.]+) s in all; rendering ([\d.]+) s '
                      r'\(first inference to last frame\) at ([\d.]+) fps', se)
        if not m:
            return 'summary line not found in: %s' % se
        # fps = frames / rendering span, within the rounding of the printed span (1 ms).
        frames, span, fps = int(m.group(1)), float(m.group(3)), float(m.group(4))
        if not frames / (span + 0.0006) - 0.01 <= fps <= frames / max(span - 0.0006, 1e-6) + 0.01:
            return 'summary: fps %s is not %d frames / %s s' % (fps, frames, span)
        if float(m.group(2)) < float(m.group(3)):
            return 'summary: the whole run is shorter than its rendering span'
        return None
    return dict(args=render_args(e.base_pkg, out, e.tiny, features=feat, extra=['--json']),
                rc=0, names=[], problem='', out=None, check=check)


@cli_case('usage_errors_are_one_line')
def _(e, d):
    # Every command: an unknown flag and a missing required flag give one line
    # "talkrender CMD: ...", exit 2.
    def check(res):
        for cmd in ('render', 'inspect', 'demo', 'bench', 'mel', 'features'):
            for args in ([cmd, '--bogus-flag'], [cmd, '--package'] if cmd != 'demo' else
                         [cmd, '--out']):
                rc, so, se, _ = _run(args)
                lines = se.strip().splitlines()
                if rc != 2 or len(lines) != 1 or not lines[0].startswith('talkrender %s: ' % cmd):
                    return '%s: rc %d, stderr %r' % (' '.join(args), rc, se)
        return None
    out = os.path.join(d, 'out', 'video.mp4')
    return dict(args=['render', '--package', e.base_pkg, '--out', out, '--bogus-flag'], rc=2,
                names=['--bogus-flag'], problem=r'^talkrender render: [^\n]*bogus[^\n]*$',
                out=out, check=check)


@cli_case('ffmpeg_log_quiet_unless_verbose')
def _(e, d):
    # An MP3 with junk in the middle makes FFmpeg's decoder complain: those lines appear
    # only with --verbose (proving the input does provoke them).
    mp3 = os.path.join(d, 'speech.mp3')
    wav = e.audio(d, seconds=2.0)
    subprocess.run(['ffmpeg', '-nostdin', '-loglevel', 'error', '-y', '-i', wav, mp3], check=True)
    data = bytearray(open(mp3, 'rb').read())
    mid = len(data) // 2
    data[mid:mid + 200] = bytes((i * 91 + 7) % 256 for i in range(200))
    write_bytes(mp3, bytes(data))

    def ffmpeg_lines(text):
        return [l for l in text.splitlines() if l.startswith('[')]

    def check(res):
        again = os.path.join(d, 'out', 'again.mp4')
        args = render_args(e.base_pkg, again, e.tiny, audio=mp3, enc=e.enc, extra=['--frames', '2'])
        rc, _, se, _ = _run(args)
        if rc != 0 or ffmpeg_lines(se):
            return 'without --verbose: rc %d, FFmpeg lines %s' % (rc, ffmpeg_lines(se)[:3])
        rc, _, se, _ = _run(args + ['--overwrite', '--verbose'])
        if rc != 0 or not ffmpeg_lines(se):
            return 'with --verbose: rc %d and no FFmpeg lines (the input provokes none?)' % rc
        return None
    out = os.path.join(d, 'out', 'video.mp4')
    return dict(args=render_args(e.base_pkg, out, e.tiny, audio=mp3, enc=e.enc,
                                 extra=['--frames', '2']),
                rc=0, names=[], problem='', out=None, check=check)


@cli_case('inspect_reports_what_render_holds')
def _(e, d):
    # inspect --decode's memory figure is the frame cache a render of the package holds
    # (its report's frame_cache_mb), YUV 4:2:0: at least 1.5 bytes a pixel, less than BGR.
    feat = e.features(d)

    def check(res):
        m = re.search(r'render holds them in ([\d.]+) MiB \(YUV.*?([\d.]+) MiB as BGR',
                      res.stdout_text)
        if not m:
            return 'no YUV memory line in: %s' % res.stdout_text
        yuv, bgr = float(m.group(1)), float(m.group(2))
        rc, so, se, _ = _run(render_args(e.base_pkg, os.path.join(d, 'out', 'f') + '/', e.tiny,
                                         features=feat, extra=['--json']))
        held = json.loads(so)['frame_cache_mb'] if rc == 0 else -1
        least = PKG_FRAMES * PKG_W * PKG_H * 1.5 / 2**20
        if abs(yuv - held) > 0.051 or not least - 0.05 <= yuv < bgr:
            return 'inspect says %.2f MiB (BGR %.2f), render held %.2f, YUV is >= %.2f' % (
                yuv, bgr, held, least)
        return None
    return dict(args=['inspect', '--package', e.base_pkg, '--decode'], rc=0, names=[],
                problem='', out=None, check=check)


@cli_case('help_lists_version')
def _(e, d):
    def check(res):
        if '--version' not in res.stdout_text:
            return '--version not in --help'
        rc, so, _, _ = _run(['--version'])
        return None if rc == 0 and so.startswith('talkrender ') else '--version: rc %d' % rc
    return dict(args=['--help'], rc=0, names=[], problem='', out=None, check=check)


@cli_case('device_flag_everywhere_backend_alias')
def _(e, d):
    # --device is the flag of every command that runs a model; --backend stays an alias.
    out = os.path.join(d, 'out', 'frames') + '/'

    def check(res):
        for cmd in ('render', 'bench', 'features', 'infer', 'infer-bench'):
            rc, so, _, _ = _run([cmd, '--help'])
            if '--device' not in so:
                return '%s --help has no --device' % cmd
        rc, so, se, _ = _run(render_args(e.base_pkg, os.path.join(d, 'out', 'b') + '/', e.tiny,
                                         features=e.features(d), extra=['--backend', 'cpu']))
        return None if rc == 0 else '--backend cpu: rc %d: %s' % (rc, se)
    return dict(args=render_args(e.base_pkg, out, e.tiny, features=e.features(d),
                                 extra=['--device', 'cpu']),
                rc=0, names=[], problem='', out=None, check=check)


def _readme_cli_rows():
    """(command, [flags]) for each row of the README's CLI reference table: the rows that
    start with one of the commands `talkrender --help` lists."""
    _, usage, _, _ = _run(['--help'])
    commands = set(re.findall(r'^  ([a-z][a-z-]+) ', usage, re.M))
    text = open(os.path.join(SOURCE, 'README.md')).read()
    section = text.split('## CLI reference', 1)[1].split('\n## ', 1)[0]
    rows = []
    for line in section.splitlines():
        m = re.match(r'\| `([a-z][a-z-]*)[ `]', line)
        if m and m.group(1) in commands:
            rows.append((m.group(1), sorted(set(re.findall(r'(--[a-z][a-z0-9-]*)', line)))))
    return rows


@cli_case('readme_flags_are_in_help')
def _(e, d):
    def check(res):
        rows = _readme_cli_rows()
        if len(rows) < 8:
            return 'README CLI table has %d rows' % len(rows)
        missing = []
        for cmd, flags in rows:
            rc, so, _, _ = _run([cmd, '--help'])
            if rc != 0:
                missing.append('%s --help: rc %d' % (cmd, rc))
            missing += ['%s %s' % (cmd, f) for f in flags if f not in so]
        return 'README flags missing from --help: %s' % missing if missing else None
    return dict(args=['--help'], rc=0, names=[], problem='', out=None, check=check)
