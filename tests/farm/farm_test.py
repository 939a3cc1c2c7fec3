#!/usr/bin/python3
"""The render farm on Redis Streams (issue 19): `talkrender worker`, `submit`, `jobs`.

Each case starts its own redis-server on a free loopback port (in a temporary folder) and
stops it, and renders a small synthetic package (`talkrender demo --workdir`, made once per
build in build/tests/farm_fixture) for 3 frames a job, with short leases.

  crash    3 workers, 30 jobs, one worker SIGKILLed mid-job: every job done exactly once,
           one output each, each plays (ffprobe), time to recovery printed
  poison   corrupt audio -> dead letter after 3 deliveries with the render's error; bad JSON
           -> dead letter at once; the other jobs done, one of them rendering longer than
           the lease (the heartbeat keeps it); tools/farm_submit.py submits and lists
  restart  redis-server stopped and started (AOF, fsync always) mid-run: no job lost
  sigterm  SIGTERM mid-job: the job finishes and is acknowledged, the worker exits 0 and
           takes no new job; a second SIGTERM hands the job back to the next worker
  paths    avatar / out / audio names leaving their roots ('..', absolute, symlinks out) are
           dead-lettered and nothing is written outside --out-root; audio by path under
           --in-root; a farm render is byte for byte the CLI render of the same inputs

usage: farm_test.py CASE... | all   (env TALKRENDER_BUILD). Exit 77: skipped (no
redis-server, no python3-redis, no ffmpeg).
"""
import fcntl
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SKIP = 77
try:
    import redis
except ImportError:
    print("SKIP: needs Debian's python3-redis (/usr/bin/python3)")
    sys.exit(SKIP)
for tool in ("redis-server", "ffmpeg", "ffprobe"):
    if not shutil.which(tool):
        print(f"SKIP: {tool} not found (tools/install-deps.sh installs it)")
        sys.exit(SKIP)

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
BUILD = os.environ.get("TALKRENDER_BUILD", os.path.join(SRC, "build"))
BIN = os.path.join(BUILD, "talkrender")
STREAM = "talkrender:jobs"
FRAMES = 3


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def fixture():
    """build/tests/farm_fixture: avatars/demo (synthetic package, seeded 320 models) and two
    short speech clips. Made once, under a lock (ctest may run the cases in parallel)."""
    root = os.path.join(BUILD, "tests", "farm_fixture")
    os.makedirs(os.path.dirname(root), exist_ok=True)
    with open(root + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(os.path.join(root, "ok")):
            return root
        shutil.rmtree(root, ignore_errors=True)
        work = root + ".work"
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
        r = subprocess.run([BIN, "demo", "--random-weights", "--workdir", work,
                            "--avatar-frames", "8", "--frames", "1", "--out",
                            os.path.join(work, "demo.mp4"), "--overwrite"],
                           capture_output=True, text=True)
        assert r.returncode == 0, f"talkrender demo failed: {r.stderr}"
        os.makedirs(os.path.join(root, "avatars"))
        shutil.move(os.path.join(work, "package"), os.path.join(root, "avatars", "demo"))
        for name, start, dur in (("a1.wav", 0, 1.0), ("a2.wav", 1.0, 0.8)):
            subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-ss", str(start), "-t",
                            str(dur), "-i", os.path.join(work, "speech.wav"),
                            os.path.join(root, name)], check=True)
        shutil.rmtree(work, ignore_errors=True)
        open(os.path.join(root, "ok"), "w").close()
        return root


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ffprobe_frames(path):
    r = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
                        "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", path],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"ffprobe {path}: {r.stderr}"
    return int(r.stdout.strip())


class Farm:
    """A redis-server, workers and the folders they use, all in one temporary folder."""

    def __init__(self, persist=False, avatars=None):
        self.fix = fixture()
        self.tmp = tempfile.mkdtemp(prefix="farm-test-")
        self.avatars = avatars or os.path.join(self.fix, "avatars")
        self.out = os.path.join(self.tmp, "out")
        self.inroot = os.path.join(self.tmp, "in")
        os.makedirs(self.out)
        os.makedirs(self.inroot)
        self.persist = persist
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self.redis_proc = None
        self.workers = {}
        self.start_redis()
        self.r = redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True)

    def start_redis(self):
        rdir = os.path.join(self.tmp, "redis")
        os.makedirs(rdir, exist_ok=True)
        persist = (["--appendonly", "yes", "--appendfsync", "always"] if self.persist else
                   ["--appendonly", "no"])
        self.redis_proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--dir", rdir, *persist],
            stdout=open(os.path.join(self.tmp, "redis.log"), "a"), stderr=subprocess.STDOUT)
        c = redis.Redis(host="127.0.0.1", port=self.port)
        deadline = time.time() + 15
        while True:
            try:
                if c.ping():
                    return
            except (redis.ConnectionError, redis.BusyLoadingError):
                pass
            assert time.time() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def stop_redis(self):
        if self.redis_proc and self.redis_proc.poll() is None:
            self.redis_proc.terminate()  # SIGTERM: redis fsyncs the AOF and exits
            self.redis_proc.wait(timeout=20)

    def worker(self, name, lease=2.0, extra=()):
        logf = open(os.path.join(self.tmp, f"{name}.log"), "a")
        p = subprocess.Popen(
            [BIN, "worker", "--redis", self.url, "--avatars", self.avatars, "--out-root",
             self.out, "--in-root", self.inroot, "--name", name, "--lease", str(lease),
             "--block", "0.3", "--threads", "1", "--workers", "1", "--tmp-dir", self.tmp,
             *extra],
            stdout=subprocess.DEVNULL, stderr=logf)
        self.workers[name] = p
        return p

    def worker_log(self, name):
        with open(os.path.join(self.tmp, f"{name}.log")) as f:
            return f.read()

    def submit(self, job_id, out, audio="a1.wav", frames=FRAMES, extra=()):
        r = subprocess.run([BIN, "submit", "--redis", self.url, "--avatar", "demo", "--audio",
                            os.path.join(self.fix, audio), "--out", out, "--id", job_id,
                            "--frames", str(frames), *extra], capture_output=True, text=True)
        assert r.returncode == 0, f"submit {job_id}: {r.stderr}"
        assert r.stdout.strip() == job_id, r.stdout

    def results(self):
        return [f for _, f in self.r.xrange(STREAM + ":results")]

    def wait_results(self, n, timeout, on_poll=None):
        deadline = time.time() + timeout
        while True:
            res = self.results()
            if on_poll:
                on_poll(res)
            if len(res) >= n:
                return res
            if time.time() > deadline:
                logs = {w: self.worker_log(w)[-2000:] for w in self.workers}
                raise AssertionError(f"{len(res)} of {n} results after {timeout} s; logs: {logs}")
            time.sleep(0.1)

    def pending_of(self, consumer):
        return [p for p in self.r.xpending_range(STREAM, "renderers", "-", "+", 100)
                if p["consumer"] == consumer]

    def close(self):
        for p in self.workers.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        self.stop_redis()
        shutil.rmtree(self.tmp, ignore_errors=True)


def check_done_once(res, ids):
    done = [f for f in res if f["status"] == "done"]
    got = sorted(f["id"] for f in done)
    assert got == sorted(ids), f"done jobs {got} != submitted {sorted(ids)} (a job twice or lost)"


def case_crash():
    farm = Farm()
    try:
        for i in range(3):
            farm.worker(f"w{i}")
        ids = [f"c{i:02d}" for i in range(30)]
        for j in ids:
            farm.submit(j, f"crash/{j}.mp4")
        log("30 jobs submitted to 3 workers")
        # Kill w0 in the middle of a render (its second job or later): it holds the entry,
        # its log's last "rendering" line names that entry and nothing is done after it.
        deadline = time.time() + 60
        while True:
            held = farm.pending_of("w0")
            lines = farm.worker_log("w0").strip().splitlines()
            at = [i for i, ln in enumerate(lines) if "rendering" in ln]
            if (held and len(at) > 1 and held[0]["message_id"] in lines[at[-1]] and
                    not any("done in" in ln for ln in lines[at[-1]:])):
                break
            assert time.time() < deadline, "w0 never took a job"
            time.sleep(0.01)
        entry = held[0]["message_id"]
        farm.workers["w0"].send_signal(signal.SIGKILL)
        t_kill = time.time()
        log(f"SIGKILL w0 while it held entry {entry}")
        seen = {}

        def poll(res):
            if "taken" not in seen:
                p = farm.r.xpending_range(STREAM, "renderers", entry, entry, 1)
                if p and p[0]["consumer"] != "w0":
                    seen["taken"] = time.time()
            for f in res:
                if f["entry"] == entry and "done" not in seen:
                    seen["done"] = time.time()

        res = farm.wait_results(30, 200, poll)
        check_done_once(res, ids)
        killed = [f for f in res if f["entry"] == entry][0]
        assert int(killed["deliveries"]) >= 2 and killed["worker"] != "w0", killed
        mp4s = sorted(n for n in os.listdir(os.path.join(farm.out, "crash")) if n.endswith(".mp4"))
        assert mp4s == sorted(f"{j}.mp4" for j in ids), mp4s
        leftovers = [n for n in os.listdir(os.path.join(farm.out, "crash"))
                     if not n.endswith(".mp4") and not n.endswith(".manifest.json")]
        assert not leftovers, f"temporaries left: {leftovers}"
        for n in mp4s:
            assert ffprobe_frames(os.path.join(farm.out, "crash", n)) == FRAMES, n
        assert farm.r.xlen(STREAM) == 0 and not farm.r.xpending_range(STREAM, "renderers", "-",
                                                                        "+", 10)
        taken = seen.get("taken", seen["done"]) - t_kill
        log(f"crash: 30/30 jobs done once, 30 outputs play ({FRAMES} frames each); killed "
            f"job {killed['id']} taken over by {killed['worker']} {taken:.2f} s after the "
            f"kill (lease 2 s), done {seen['done'] - t_kill:.2f} s after it")
        for name in ("w1", "w2"):
            farm.workers[name].send_signal(signal.SIGTERM)
            assert farm.workers[name].wait(timeout=30) == 0
    finally:
        farm.close()


def case_poison():
    farm = Farm()
    try:
        corrupt = os.path.join(farm.tmp, "corrupt.wav")
        with open(corrupt, "wb") as f:
            f.write(b"RIFF\x10\x00\x00\x00WAVEfmt " + random.Random(19).randbytes(3000))
        r = subprocess.run([BIN, "submit", "--redis", farm.url, "--avatar", "demo", "--audio",
                            corrupt, "--out", "p/poison.mp4", "--id", "poison"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        farm.r.xadd(STREAM, {"job": '{"id": "badjson", "avatar": '})
        good = [f"g{i}" for i in range(4)]
        # g0 renders for longer than the 3 s lease: the heartbeat must keep it from the
        # other worker (one delivery).
        a3 = os.path.join(farm.tmp, "a3.wav")  # 3 s of speech: 75 frames
        subprocess.run(["ffmpeg", "-loglevel", "error", "-i", os.path.join(farm.fix, "a1.wav"),
                        "-af", "aloop=loop=2:size=16000", "-ar", "16000", a3], check=True)
        farm.submit("g0", "p/g0.mp4", audio=a3, frames=60)
        for j in good[1:3]:
            farm.submit(j, f"p/{j}.mp4")
        # The Python producer (tools/farm_submit.py) makes the same jobs.
        r = subprocess.run(["/usr/bin/python3", os.path.join(SRC, "tools", "farm_submit.py"),
                            "submit", "--redis", farm.url, "--avatar", "demo", "--audio",
                            os.path.join(farm.fix, "a1.wav"), "--out", "p/g3.mp4", "--id", "g3",
                            "--frames", str(FRAMES)], capture_output=True, text=True)
        assert r.returncode == 0 and r.stdout.strip() == "g3", r.stderr
        farm.worker("w0", lease=3.0)
        farm.worker("w1", lease=3.0)
        res = farm.wait_results(6, 120)
        check_done_once(res, good)
        # A job that is not JSON has no id to go by: it is named by its stream entry.
        dead = {("badjson" if f["job"].startswith('{"id": "badjson"') else f["id"]): f
                for f in res if f["status"] == "dead"}
        assert set(dead) == {"poison", "badjson"}, dead
        assert dead["badjson"]["id"] == dead["badjson"]["entry"], dead
        p = dead["poison"]
        assert p["deliveries"] == "3" and p["exit_code"] == "2", p
        assert "cannot open as audio" in p["error"] and p["error"].startswith("job poison:"), p
        b = dead["badjson"]
        assert b["deliveries"] == "1" and "not valid JSON" in b["error"], b
        letters = [f for _, f in farm.r.xrange(STREAM + ":dead")]
        assert sorted(f["id"] for f in letters) == sorted([b["entry"], "poison"]), letters
        assert farm.r.hlen(STREAM + ":errors") == 0
        assert not os.path.exists(os.path.join(farm.out, "p", "poison.mp4"))
        for f in res:
            if f["status"] == "done":
                assert f["deliveries"] == "1", f  # none taken over: the heartbeat held them
                frames = json.loads(f["report"])["frames"]
                assert ffprobe_frames(os.path.join(farm.out, "p", f"{f['id']}.mp4")) == frames
        g0 = [f for f in res if f["id"] == "g0"][0]
        g0_s = json.loads(g0["report"])["wall_s"]
        log(f"heartbeat: g0 rendered for {g0_s:.1f} s with a 3 s lease, delivered once")
        for f in letters:
            log(f"dead letter: id={f['id']} deliveries={f['deliveries']} "
                f"exit_code={f['exit_code']} error={f['error']!r}")
        lst = subprocess.run([BIN, "jobs", "--redis", farm.url, "--json"], capture_output=True,
                             text=True)
        assert lst.returncode == 0, lst.stderr
        j = json.loads(lst.stdout)
        assert len(j["done"]) == 4 and len(j["dead"]) == 2 and not j["pending"], j
        py = subprocess.run(["/usr/bin/python3", os.path.join(SRC, "tools", "farm_submit.py"),
                             "jobs", "--redis", farm.url], capture_output=True, text=True)
        assert py.returncode == 0, py.stderr
        pj = json.loads(py.stdout)
        assert sorted(f["id"] for f in pj["done"]) == sorted(good) and len(pj["dead"]) == 2, pj
    finally:
        farm.close()


def case_restart():
    farm = Farm(persist=True)
    try:
        ids = [f"r{i:02d}" for i in range(12)]
        for j in ids:
            farm.submit(j, f"r/{j}.mp4")
        farm.worker("w0")
        farm.worker("w1")
        farm.wait_results(3, 120)
        farm.stop_redis()
        t_stop = time.time()
        log(f"redis-server stopped with {len(ids)} jobs submitted")
        time.sleep(2.0)
        farm.start_redis()
        log("redis-server started again (same AOF)")
        res = farm.wait_results(len(ids), 180)
        check_done_once(res, ids)
        for j in ids:
            assert ffprobe_frames(os.path.join(farm.out, "r", f"{j}.mp4")) == FRAMES
        assert "Redis unavailable" in farm.worker_log("w0") + farm.worker_log("w1")
        log(f"restart: {len(ids)}/{len(ids)} jobs done once; all done "
            f"{time.time() - t_stop:.1f} s after the stop")
    finally:
        farm.close()


def case_sigterm():
    farm = Farm()
    try:
        # Long enough (25 frames) that the signal lands mid-render.
        farm.submit("long", "s/long.mp4", frames=25)
        farm.submit("next", "s/next.mp4")
        w = farm.worker("w0")
        deadline = time.time() + 60
        while not (farm.pending_of("w0") and "rendering" in farm.worker_log("w0")):
            assert time.time() < deadline, "w0 never took the job"
            time.sleep(0.02)
        time.sleep(0.3)
        w.send_signal(signal.SIGTERM)
        rc = w.wait(timeout=120)
        assert rc == 0, f"worker exited {rc}: {farm.worker_log('w0')}"
        res = farm.results()
        assert [f["id"] for f in res] == ["long"] and res[0]["status"] == "done", res
        frames = json.loads(res[0]["report"])["frames"]  # 25, or what 1 s of speech gives
        assert frames >= 20 and ffprobe_frames(os.path.join(farm.out, "s", "long.mp4")) == frames
        assert not farm.r.xpending_range(STREAM, "renderers", "-", "+", 10)
        assert farm.r.xlen(STREAM) == 1, "the next job must stay queued"
        log("sigterm: the job in progress finished and was acknowledged, exit 0, next job "
            "left queued")
        # Second signal: the render stops, the entry goes back, another worker takes it.
        farm.submit("long2", "s/long2.mp4", frames=25)
        w = farm.worker("w1", lease=30)
        deadline = time.time() + 60
        while not ("long2" in farm.worker_log("w1") and "rendering" in farm.worker_log("w1")
                   and farm.pending_of("w1")):
            assert time.time() < deadline, "w1 never took long2"
            time.sleep(0.02)
        time.sleep(0.3)
        w.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        w.send_signal(signal.SIGTERM)
        rc = w.wait(timeout=60)
        assert rc == 0, f"worker exited {rc}: {farm.worker_log('w1')}"
        assert "handed entry" in farm.worker_log("w1"), farm.worker_log("w1")
        assert not os.path.exists(os.path.join(farm.out, "s", "long2.mp4"))
        t0 = time.time()
        farm.worker("w2", lease=30)  # lease 30 s: only the hand-back lets it take long2 now
        res = farm.wait_results(3, 90)
        check_done_once(res, ["long", "next", "long2"])
        log(f"sigterm x2: long2 handed back and finished by w2 {time.time() - t0:.1f} s later")
    finally:
        farm.close()


def link_tree(src, dst):
    """A copy of `src` made of hard links where the file system allows (the models are big)."""
    os.makedirs(dst)
    for d, _, files in os.walk(src):
        rel = os.path.relpath(d, src)
        os.makedirs(os.path.join(dst, rel), exist_ok=True)
        for f in files:
            s, t = os.path.join(d, f), os.path.join(dst, rel, f)
            try:
                os.link(s, t)
            except OSError:
                shutil.copy2(s, t)


def case_paths():
    fix = fixture()
    tmp = tempfile.mkdtemp(prefix="farm-paths-")
    avatars = os.path.join(tmp, "avatars")
    outside = os.path.join(tmp, "outside")
    link_tree(os.path.join(fix, "avatars", "demo"), os.path.join(avatars, "demo"))
    link_tree(os.path.join(fix, "avatars", "demo"), os.path.join(outside, "pkg"))
    os.symlink(os.path.join(outside, "pkg"), os.path.join(avatars, "evil"))
    farm = Farm(avatars=avatars)
    try:
        os.symlink(outside, os.path.join(farm.out, "link"))
        os.symlink(os.path.join(outside, "victim.mp4"), os.path.join(farm.out, "linkfile.mp4"))
        os.symlink(os.path.join(fix, "a1.wav"), os.path.join(farm.inroot, "outside.wav"))
        audio = open(os.path.join(fix, "a1.wav"), "rb").read()
        absolute = os.path.join(outside, "abs.mp4")
        bad = {
            "dotdot-avatar": ({"avatar": "../avatars/demo", "out": "x1.mp4"}, "not a path"),
            "symlink-avatar": ({"avatar": "evil", "out": "x2.mp4"}, "outside --avatars"),
            "dotdot-out": ({"out": "../escape.mp4"}, "leaves its root"),
            "deep-dotdot-out": ({"out": "a/../../escape.mp4"}, "leaves its root"),
            "absolute-out": ({"out": absolute}, "absolute"),
            "symlink-dir-out": ({"out": "link/x.mp4"}, "leaves --out-root"),
            "symlink-file-out": ({"out": "linkfile.mp4"}, "symlink"),
            "dotdot-audio": ({"out": "x3.mp4", "audio": "../a1.wav"}, "leaves its root"),
            "symlink-audio": ({"out": "x4.mp4", "audio": "outside.wav"}, "outside --in-root"),
        }
        for job_id, (fields, _) in bad.items():
            job = {"id": job_id, "avatar": "demo", "frames": FRAMES, **fields}
            entry = {"job": json.dumps(job)}
            if "audio" not in fields:
                entry["audio"] = audio
            farm.r.xadd(STREAM, entry)
        farm.submit("ok", "fine/ok.mp4")
        # Audio referenced by its path under --in-root (as for files over 16 MiB).
        os.makedirs(os.path.join(farm.inroot, "talks"))
        shutil.copy(os.path.join(fix, "a1.wav"), os.path.join(farm.inroot, "talks", "a1.wav"))
        r = subprocess.run([BIN, "submit", "--redis", farm.url, "--avatar", "demo", "--audio",
                            os.path.join(farm.inroot, "talks", "a1.wav"), "--by-path",
                            "--in-root", farm.inroot, "--out", "fine/bypath.mp4", "--id",
                            "bypath", "--frames", str(FRAMES)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert json.loads(farm.r.xrevrange(STREAM, count=1)[0][1]["job"])["audio"] == "talks/a1.wav"
        # The producer refuses them too, before they reach Redis.
        for args in (["--avatar", "../demo", "--out", "y.mp4"],
                     ["--avatar", "demo", "--out", "/tmp/y.mp4"],
                     ["--avatar", "demo", "--out", "../y.mp4"]):
            r = subprocess.run([BIN, "submit", "--redis", farm.url, "--audio",
                                os.path.join(fix, "a1.wav"), *args], capture_output=True,
                               text=True)
            assert r.returncode == 2 and r.stderr.count("\n") == 1, (args, r.stderr)
        farm.worker("w0")
        res = farm.wait_results(len(bad) + 2, 90)
        check_done_once(res, ["ok", "bypath"])
        dead = {f["id"]: f for f in res if f["status"] == "dead"}
        assert set(dead) == set(bad), sorted(dead)
        for job_id, (_, why) in bad.items():
            f = dead[job_id]
            assert f["deliveries"] == "1" and f["exit_code"] == "2", f
            assert why in f["error"] and job_id in f["error"], (job_id, f["error"])
            log(f"refused {job_id}: {f['error']}")
        assert sorted(os.listdir(outside)) == ["pkg"], os.listdir(outside)
        # A farm render is the CLI render of the same inputs, byte for byte.
        cli_out = os.path.join(tmp, "cli.mp4")
        r = subprocess.run([BIN, "render", "--package", os.path.join(avatars, "demo"), "--audio",
                            os.path.join(fix, "a1.wav"), "--out", cli_out, "--frames",
                            str(FRAMES), "--threads", "1", "--workers", "1", "--no-progress"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        with open(cli_out, "rb") as a, open(os.path.join(farm.out, "fine", "ok.mp4"), "rb") as b:
            assert a.read() == b.read(), "farm and CLI renders of the same job differ"
        log("the farm's ok.mp4 and `talkrender render` of the same inputs are the same bytes")
        written = []
        for d, _, files in os.walk(farm.out):
            written += [os.path.relpath(os.path.join(d, f), farm.out) for f in files
                        if not os.path.islink(os.path.join(d, f))]
        assert sorted(written) == ["fine/bypath.mp4", "fine/bypath.mp4.manifest.json",
                                   "fine/ok.mp4", "fine/ok.mp4.manifest.json"], written
    finally:
        farm.close()
        shutil.rmtree(tmp, ignore_errors=True)


CASES = {"crash": case_crash, "poison": case_poison, "restart": case_restart,
         "sigterm": case_sigterm, "paths": case_paths}


def main():
    names = sys.argv[1:] or ["all"]
    if names == ["all"]:
        names = list(CASES)
    if not os.path.exists(BIN):
        print(f"FAIL: {BIN} not built")
        return 1
    for n in names:
        t0 = time.time()
        log(f"--- {n}")
        CASES[n]()
        log(f"--- {n}: PASS ({time.time() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
