#!/usr/bin/python3
"""Enqueue talkrender farm jobs from Python (Debian's python3-redis), as `talkrender submit`
does, list them as `talkrender jobs` does, and wait for a job's result.

A job is one entry on the stream (default talkrender:jobs): field "job" holds the JSON
(id, avatar, out, optional audio path and render options: frames, batch, crf, format,
precision), field "audio" the audio file's bytes (up to 16 MiB) when the job carries them.
Results arrive on STREAM:results (status done + report, or dead + error + exit_code), dead
letters on STREAM:dead. docs/farm.md has the whole contract.

  /usr/bin/python3 tools/farm_submit.py submit --redis redis://127.0.0.1:6379 \\
      --avatar anna --audio talk.wav --out anna/talk.mp4 --frames 250 --wait 600
  /usr/bin/python3 tools/farm_submit.py jobs --redis redis://127.0.0.1:6379

Use it as a module from a service: submit_job(r, ...) returns the job id, wait_result(r, id)
the result's fields.
"""
import argparse
import json
import os
import secrets
import sys
import time
from urllib.parse import urlparse

try:
    import redis
except ImportError:
    sys.exit("farm_submit.py: needs Debian's python3-redis (apt install python3-redis; run "
             "with /usr/bin/python3)")

MAX_INLINE_AUDIO = 16 * 1024 * 1024
MAX_QUEUE = 10000  # as `talkrender submit --max-queue`: the queue is bounded
OPTIONS = ("frames", "batch", "crf", "format", "precision")


def connect(url):
    u = urlparse(url)
    if u.scheme != "redis" or not u.hostname:
        raise SystemExit(f"farm_submit.py: bad Redis URL {url!r} (redis://HOST[:PORT][/DB])")
    db = int(u.path.lstrip("/") or 0)
    return redis.Redis(host=u.hostname, port=u.port or 6379, db=db, socket_timeout=10)


def ensure_group(r, stream, group):
    try:
        r.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise


def submit_job(r, avatar, audio, out, stream="talkrender:jobs", group="renderers",
               job_id=None, in_root=None, by_path=False, max_queue=MAX_QUEUE, **options):
    """Puts one job on the stream; returns its id. `audio` is a local file: its bytes travel
    in the job up to 16 MiB; larger (or by_path) it is referenced relative to `in_root`,
    the workers' --in-root as seen from here."""
    job = {"id": job_id or f"j{int(time.time() * 1000):x}-{secrets.token_hex(4)}",
           "avatar": avatar, "out": out}
    for k in OPTIONS:
        if options.get(k) is not None:
            job[k] = options[k]
    entry = {}
    size = os.path.getsize(audio)
    if by_path or size > MAX_INLINE_AUDIO:
        if not in_root:
            raise ValueError(f"{audio} is {size} bytes (over 16 MiB) or by_path: give in_root")
        rel = os.path.relpath(os.path.realpath(audio), os.path.realpath(in_root))
        if rel.startswith(".."):
            raise ValueError(f"{audio} is not under {in_root}")
        job["audio"] = rel
    else:
        with open(audio, "rb") as f:
            entry["audio"] = f.read()
    entry = {"job": json.dumps(job, sort_keys=True, separators=(",", ":")), **entry}
    ensure_group(r, stream, group)
    if r.xlen(stream) >= max_queue:
        raise RuntimeError(f"the queue {stream} is full ({max_queue} jobs); try later")
    r.xadd(stream, entry)
    return job["id"]


def decode(fields):
    return {k.decode(): v.decode("utf-8", "replace") for k, v in fields.items()}


def wait_result(r, job_id, stream="talkrender:jobs", timeout=600.0):
    """Blocks until the job's result is on STREAM:results (or timeout); returns its fields
    (status done with "report", or dead with "error" and "exit_code"), or None."""
    deadline, last = time.time() + timeout, "0-0"
    while time.time() < deadline:
        block = max(1, int(min(5.0, deadline - time.time()) * 1000))
        got = r.xread({stream + ":results": last}, count=100, block=block)
        for _, entries in got or []:
            for eid, fields in entries:
                last = eid
                f = decode(fields)
                if f.get("id") == job_id:
                    return f
    return None


def list_jobs(r, stream="talkrender:jobs", group="renderers", limit=50):
    out = {"pending": [], "running": [], "done": [], "dead": []}
    last = "0-0"
    try:
        for g in r.xinfo_groups(stream):
            if g["name"].decode() == group:
                last = g["last-delivered-id"].decode()
    except redis.ResponseError:
        return out  # no stream yet
    for eid, f in r.xrange(stream, min="(" + last, count=limit):
        out["pending"].append({"entry": eid.decode(), "id": json.loads(f[b"job"]).get("id")})
    for p in r.xpending_range(stream, group, "-", "+", limit):
        out["running"].append({"entry": p["message_id"].decode(),
                               "worker": p["consumer"].decode(),
                               "idle_ms": p["time_since_delivered"],
                               "deliveries": p["times_delivered"]})
    for _, fields in r.xrevrange(stream + ":results", count=limit * 2):
        f = decode(fields)
        lst = out.get(f.get("status"))
        if lst is not None and len(lst) < limit:
            f.pop("report", None)
            f.pop("job", None)
            lst.append(f)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("submit", help="put a render job on the stream, print its id")
    s.add_argument("--redis", required=True, help="redis://HOST[:PORT][/DB]")
    s.add_argument("--stream", default="talkrender:jobs")
    s.add_argument("--group", default="renderers")
    s.add_argument("--avatar", required=True, help="package name under the workers' --avatars")
    s.add_argument("--audio", required=True, help="speech audio file")
    s.add_argument("--out", required=True, help="output relative to the workers' --out-root")
    s.add_argument("--id", help="job id (default: generated)")
    s.add_argument("--in-root", help="the workers' --in-root, for audio referenced by path")
    s.add_argument("--by-path", action="store_true", help="reference the audio by path")
    s.add_argument("--frames", type=int)
    s.add_argument("--batch", type=int)
    s.add_argument("--crf", type=int)
    s.add_argument("--format", choices=["png", "jpg"])
    s.add_argument("--precision", choices=["fp32", "bf16", "fp16", "auto"])
    s.add_argument("--wait", type=float, metavar="S",
                   help="wait up to S seconds for the result and print it (exit 1 if dead)")
    j = sub.add_parser("jobs", help="list pending, running, done and dead jobs as JSON")
    j.add_argument("--redis", required=True)
    j.add_argument("--stream", default="talkrender:jobs")
    j.add_argument("--group", default="renderers")
    j.add_argument("--limit", type=int, default=50)
    a = ap.parse_args()
    r = connect(a.redis)
    if a.cmd == "jobs":
        print(json.dumps(list_jobs(r, a.stream, a.group, a.limit), indent=2))
        return 0
    job_id = submit_job(r, a.avatar, a.audio, a.out, a.stream, a.group, a.id, a.in_root,
                        a.by_path, **{k: getattr(a, k) for k in OPTIONS})
    print(job_id, flush=True)
    if a.wait is None:
        return 0
    res = wait_result(r, job_id, a.stream, a.wait)
    if res is None:
        print(f"farm_submit.py: no result for {job_id} after {a.wait} s", file=sys.stderr)
        return 3
    print(json.dumps(res, indent=2))
    return 0 if res.get("status") == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
