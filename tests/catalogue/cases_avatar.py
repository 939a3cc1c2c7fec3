# The catalogue's "avatar" group (run in catalogue.py's namespace): avatar videos that are
# not the model's 25 fps, odd sizes, 10-bit and 4:4:4 sources (issue 20). They render; the
# output runs at the model's rate, holds the whole speech, and is checked with ffprobe.
# A video whose frame count no longer matches the rects is refused with a clear message.

AVATAR_SPEECH_S = 1.0  # the speech of the rendering cases (Env.audio: a 16 kHz sine)
MODEL_FPS = 25  # the tiny160 stand-in is an ave generator
AAC_FRAME_S = 1024 / 16000.0


def contract_frames(samples):
    """rows(P) for `samples` of 16 kHz speech (model-contract.md section 4 steps 3, 8, 11)."""
    t = 1 + samples // 200
    return (t - 16) * 25 // 80 + 2 + 2


def avatar_video(path, vf=None, extra=(), w=PKG_W, h=PKG_H, pix_fmt='yuv420p'):
    """The base package's 6 testsrc frames (25 fps), re-timed / re-sized by `vf` + `extra`."""
    args = ['ffmpeg', '-nostdin', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i',
            'testsrc=size=%dx%d:rate=25:duration=%g' % (w, h, PKG_FRAMES / 25.0)]
    if vf:
        args += ['-vf', vf]
    args += list(extra) + ['-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', pix_fmt, path]
    subprocess.run(args, check=True)


def ffprobe_stream(path, select, entries):
    r = subprocess.run(['ffprobe', '-v', 'error', '-select_streams', select, '-count_frames',
                        '-show_entries', 'stream=' + entries, '-of', 'json', path],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    streams = json.loads(r.stdout.decode() or '{}').get('streams', [])
    return streams[0] if streams else {}


def check_model_rate_mp4(out, note=None, size=(PKG_W, PKG_H)):
    """The MP4 at `out`: 25/1 with the contract's frame count, video = frames / 25, audio =
    the whole speech (within one AAC frame); `note` appears exactly once on stderr."""
    def check(proc):
        frames = contract_frames(int(AVATAR_SPEECH_S * 16000))
        v = ffprobe_stream(out, 'v:0', 'r_frame_rate,avg_frame_rate,nb_read_frames,duration,'
                                       'width,height')
        a = ffprobe_stream(out, 'a:0', 'duration')
        if not v or not a:
            return 'no video or no audio stream in %s' % out
        problems = []
        if v['r_frame_rate'] != '25/1' or v['avg_frame_rate'] != '25/1':
            problems.append('rate %s (avg %s), wanted 25/1' % (v['r_frame_rate'],
                                                               v['avg_frame_rate']))
        if int(v['nb_read_frames']) != frames:
            problems.append('%s frames, wanted %d' % (v['nb_read_frames'], frames))
        if abs(float(v['duration']) - frames / MODEL_FPS) > 1e-3:
            problems.append('video %s s, wanted %.3f' % (v['duration'], frames / MODEL_FPS))
        if abs(float(a['duration']) - AVATAR_SPEECH_S) > AAC_FRAME_S:
            problems.append('audio %s s, the speech is %.3f s' % (a['duration'],
                                                                 AVATAR_SPEECH_S))
        if (v['width'], v['height']) != size:
            problems.append('size %dx%d, wanted %dx%d' % (v['width'], v['height']) + size)
        if note is not None and proc.stderr_text.count(note) != 1:
            problems.append('the note %r is not on stderr once: %r' % (note,
                                                                      proc.stderr_text[-300:]))
        return '; '.join(problems) or None
    return check


def avatar_render_case(e, d, vf=None, extra=(), w=PKG_W, h=PKG_H, pix_fmt='yuv420p',
                       note=None, size=(PKG_W, PKG_H)):
    pkg = e.package(d)
    avatar_video(os.path.join(pkg, 'full_body_video.mp4'), vf, extra, w, h, pix_fmt)
    out = os.path.join(d, 'out', 'video.mp4')
    return dict(args=render_args(pkg, out, e.tiny, audio=e.audio(d, AVATAR_SPEECH_S), enc=e.enc),
                rc=0, out=None, check=check_model_rate_mp4(out, note, size))


@case('avatar', 'fps30')
def _(e, d):
    return avatar_render_case(e, d, 'setpts=N/30/TB', ['-r', '30'],
                              note='the avatar video is 30 fps')


@case('avatar', 'fps29_97')
def _(e, d):
    return avatar_render_case(e, d, 'setpts=N*1001/30000/TB', ['-r', '30000/1001'],
                              note='the avatar video is 29.97 fps')


@case('avatar', 'variable_frame_rate')
def _(e, d):
    # Timestamps jittered by up to 0.4 frame (millisecond time base, no frame dropped).
    return avatar_render_case(e, d, 'settb=1/1000,setpts=(N+0.4*sin(N*2.7))/25/TB',
                              ['-fps_mode', 'passthrough', '-enc_time_base', '1/1000'],
                              note='the avatar video is')


@case('avatar', 'odd_size_mp4')
def _(e, d):
    # A 4:4:4 source may have an odd size; the output's H.264 4:2:0 needs even sizes: padded
    # by one column and row, said once.
    return avatar_render_case(e, d, w=PKG_W - 1, h=PKG_H - 1, pix_fmt='yuv444p',
                              size=(PKG_W, PKG_H),
                              note='the MP4 is %dx%d' % (PKG_W, PKG_H))


def png_size(path):
    with open(path, 'rb') as f:
        head = f.read(24)
    return struct.unpack('>II', head[16:24]) if head[:8] == b'\x89PNG\r\n\x1a\n' else None


@case('avatar', 'odd_size_png_keeps_size')
def _(e, d):
    pkg = e.package(d)
    avatar_video(os.path.join(pkg, 'full_body_video.mp4'), w=PKG_W - 1, h=PKG_H - 1,
                 pix_fmt='yuv444p')
    out = os.path.join(d, 'out', 'frames') + '/'

    def check(proc):
        sizes = {png_size(p) for p in glob.glob(os.path.join(out, '*.png'))}
        want = {(PKG_W - 1, PKG_H - 1)}
        return None if sizes == want else 'PNG sizes %s, wanted %s' % (sizes, want)
    return dict(args=render_args(pkg, out, e.tiny, features=e.features(d)), rc=0, out=None,
                check=check)


@case('avatar', 'ten_bit_source')
def _(e, d):
    return avatar_render_case(e, d, pix_fmt='yuv420p10le')


@case('avatar', 'yuv444_source')
def _(e, d):
    return avatar_render_case(e, d, pix_fmt='yuv444p')


@case('avatar', 'frame_count_differs_from_rects')
def _(e, d):
    # The rects were made on a 30 fps video, then the video was converted to 25 fps (the
    # fps filter drops frames): the rects no longer pair with the frames, so the package is
    # refused, not rendered with every face box on the wrong frame.
    pkg = e.package(d)
    video = os.path.join(pkg, 'full_body_video.mp4')
    avatar_video(video, 'setpts=N/30/TB,fps=25')
    n = int(ffprobe_stream(video, 'v:0', 'nb_read_frames').get('nb_read_frames', 0))
    if n == PKG_FRAMES:
        return dict(skip='the fps filter kept %d frames' % n)
    out = os.path.join(d, 'out', 'video.mp4')
    return dict(args=render_args(pkg, out, e.tiny, features=e.features(d)), rc=2,
                names=['crop_rectangles.json'],
                problem=r'%d rect.*%d frames|%d frames.*%d rect' % (PKG_FRAMES, n, n, PKG_FRAMES),
                out=out)
