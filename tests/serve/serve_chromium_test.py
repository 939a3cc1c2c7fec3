#!/usr/bin/python3
"""The browser client of `talkrender serve` (GET /, src/serve/page/index.html) plays a live
session in a real browser: headless Chromium driven over the DevTools protocol.

Starts the server on a temporary avatars folder (synthetic demo avatar + models/demo), then
Chromium on about:blank; navigates to the page, picks the avatar "demo", presses Start (a
real mouse click), gives the page's file input 4 s of speech (DOM.setFileInputFiles),
presses "Stream file" and polls the page for ~9 s. Asserts:
  * the <video>'s currentTime strictly increases between polls >= 1 s apart and ends > 2 s;
  * getVideoPlaybackQuality().totalVideoFrames > 0 (dropped frames are reported);
  * the audio track plays: the SourceBuffer's mime has mp4a and
    webkitAudioDecodedByteCount > 0;
  * the page shows no error (status text, the page's data-state, video.error) and the
    WebSocket stays open; the server's "speaking" notice reached the page when it keeps one.
Keeps a screenshot at $TALKRENDER_BUILD/test-artifacts/serve_chromium.png; prints the
page's console errors on failure. SIGTERM stops the server with exit 0.

Run: tests/serve/serve_chromium_test.py (TALKRENDER_BUILD=build dir, TALKRENDER_SOURCE=source).
Exit 77 = skipped (no chromium, no speech recording, no python3-websockets).
"""
import asyncio
import base64
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serve_testlib as L  # noqa: E402

POLL_S = 9.0


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        p = shutil.which(name)
        if p:
            return p
    return None


class CDP:
    """A minimal Chrome DevTools Protocol client on one page target."""

    def __init__(self, ws):
        self.ws, self.next_id, self.pending, self.events = ws, 0, {}, []
        self.reader = asyncio.create_task(self._read())

    async def _read(self):
        async for raw in self.ws:
            msg = json.loads(raw)
            if "id" in msg and msg["id"] in self.pending:
                self.pending.pop(msg["id"]).set_result(msg)
            elif "method" in msg:
                self.events.append(msg)

    async def call(self, method, timeout=10.0, **params):
        self.next_id += 1
        fut = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = fut
        await self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        msg = await asyncio.wait_for(fut, timeout)
        if "error" in msg:
            raise AssertionError("CDP %s failed: %s" % (method, msg["error"]))
        return msg.get("result", {})

    async def js(self, expr, timeout=10.0):
        r = await self.call("Runtime.evaluate", timeout=timeout, expression=expr,
                            returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise AssertionError("page JS %r threw: %s" % (expr, r["exceptionDetails"]))
        return r["result"].get("value")

    async def wait_js(self, expr, what, timeout=15.0):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            v = await self.js(expr)
            if v:
                return v
            await asyncio.sleep(0.1)
        raise AssertionError("timed out after %.0f s waiting for %s (%s); status: %r"
                             % (timeout, what, expr, await self.js(STATUS_JS)))

    async def click(self, selector):
        """A real mouse click in the middle of the element (a user gesture)."""
        box = await self.js(
            "(() => { const e = document.querySelector(%s); e.scrollIntoView();"
            " const r = e.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2, e.disabled]; })()"
            % json.dumps(selector))
        assert not box[2], "%s is disabled" % selector
        for typ in ("mousePressed", "mouseReleased"):
            await self.call("Input.dispatchMouseEvent", type=typ, x=box[0], y=box[1],
                            button="left", clickCount=1)

    def console_errors(self):
        out = []
        for e in self.events:
            m, p = e["method"], e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning",
                                                                      "assert"):
                out.append("console.%s: %s" % (p["type"], " ".join(
                    str(a.get("value", a.get("description", ""))) for a in p.get("args", []))))
            elif m == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append("exception: %s %s" % (d.get("text", ""),
                                                 d.get("exception", {}).get("description", "")))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") in ("error",
                                                                             "warning"):
                en = p["entry"]
                out.append("log.%s [%s]: %s %s" % (en["level"], en.get("source"), en.get("text"),
                                                   en.get("url", "")))
        return out


STATUS_JS = "document.getElementById('status').textContent"

# One poll of the page's playback state.
POLL_JS = r"""(() => {
  const v = document.getElementById("video");
  const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : {};
  const st = document.getElementById("status");
  let mime = null, wsState = null, dbg = null;
  try { mime = session ? session.mime : null; } catch (e) {}
  try { wsState = ws ? ws.readyState : null; } catch (e) {}
  try { dbg = window.talkrender ? JSON.parse(JSON.stringify(window.talkrender)) : null; } catch (e) {}
  const buf = [];
  for (let i = 0; i < v.buffered.length; i++) buf.push([v.buffered.start(i), v.buffered.end(i)]);
  return {
    t: v.currentTime, paused: v.paused, readyState: v.readyState,
    error: v.error ? (v.error.code + ": " + v.error.message) : null,
    total: q.totalVideoFrames || 0, dropped: q.droppedVideoFrames || 0,
    audioBytes: v.webkitAudioDecodedByteCount || 0,
    videoBytes: v.webkitVideoDecodedByteCount || 0,
    buffered: buf, mime, wsState, status: st.textContent,
    state: st.dataset ? (st.dataset.state || null) : null, dbg,
  };
})()"""

ERROR_WORDS = ("server error", "append:", "file:", "start:", "health:", "cannot play", "refused", "closed (",
               "\"error\"", "video:", "microphone:")


# Chromium's stderr lines that a headless container always has (no D-Bus, no ALSA).
CHROME_NOISE = ("dbus/", "alsa", "zygote_communication", "gcm/engine", "sandbox")


def page_error(p):
    if p["error"]:
        return "video element error " + p["error"]
    if p["state"] in ("error", "closed"):
        return "page state %s: %s" % (p["state"], p["status"])
    low = p["status"].lower()
    for w in ERROR_WORDS:
        if w in low:
            return "page status: %s" % p["status"]
    return None


def start_chromium(exe, tmp):
    profile = os.path.join(tmp, "profile")
    os.makedirs(profile)
    log = open(os.path.join(tmp, "chromium.log"), "w")
    proc = subprocess.Popen(
        [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
         "--user-data-dir=" + profile, "--autoplay-policy=no-user-gesture-required",
         "--mute-audio", "--no-first-run", "--no-default-browser-check",
         "--window-size=1000,1100", "about:blank"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    port_file = os.path.join(profile, "DevToolsActivePort")
    t0 = time.monotonic()
    while True:
        if proc.poll() is not None:
            log.flush()
            raise AssertionError("chromium exited with %d:\n%s"
                                 % (proc.returncode, open(log.name).read()[-3000:]))
        try:
            with open(port_file) as f:
                lines = f.read().split()
            if len(lines) >= 2:
                return proc, log, int(lines[0])
        except OSError:
            pass
        if time.monotonic() - t0 > 20:
            raise AssertionError("chromium wrote no %s in 20 s" % port_file)
        time.sleep(0.1)


def stop_chromium(proc):
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # its own process group (start_new_session)
        proc.wait(timeout=5)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


async def screenshot(cdp, shot):
    try:
        data = await cdp.call("Page.captureScreenshot", format="png")
        os.makedirs(os.path.dirname(shot), exist_ok=True)
        with open(shot, "wb") as f:
            f.write(base64.b64decode(data["data"]))
        return True
    except Exception as e:  # noqa: BLE001  (a failed screenshot must not hide the cause)
        print("screenshot failed: %s" % e)
        return False


async def drive(devtools_port, url, wav, shot, result):
    import websockets
    with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % devtools_port,
                                timeout=5) as r:
        targets = json.loads(r.read())
    pages = [t for t in targets if t.get("type") == "page"]
    assert pages, "no page target: %s" % targets
    async with websockets.connect(pages[0]["webSocketDebuggerUrl"], max_size=64 << 20,
                                  ping_interval=None) as sock:
        cdp = CDP(sock)
        shot_taken = ok = False
        try:
            for dom in ("Page", "Runtime", "Log", "DOM"):
                await cdp.call(dom + ".enable")
            await cdp.call("Page.navigate", url=url + "/")
            await cdp.wait_js("document.readyState === 'complete' && "
                              "!!document.getElementById('avatar')", "the page to load")
            await cdp.wait_js("[...document.getElementById('avatar').options]"
                              ".some(o => o.value === 'demo')",
                              "the avatar list (GET /health) to name 'demo'")
            await cdp.js("(() => { const s = document.getElementById('avatar');"
                         " s.value = 'demo'; s.dispatchEvent(new Event('change')); })()")
            await cdp.click("#start")
            # The WebSocket is open once the speech controls are enabled.
            await cdp.wait_js("!document.getElementById('send').disabled",
                              "the session's WebSocket to open (Stream file enabled)")
            doc = await cdp.call("DOM.getDocument")
            node = await cdp.call("DOM.querySelector", nodeId=doc["root"]["nodeId"],
                                  selector="#file")
            assert node.get("nodeId"), "no #file input"
            await cdp.call("DOM.setFileInputFiles", nodeId=node["nodeId"], files=[wav])
            n = await cdp.js("document.getElementById('file').files.length")
            assert n == 1, "the file input holds %s files" % n
            await cdp.click("#send")
            t_send = time.monotonic()
            polls = []
            while time.monotonic() - t_send < POLL_S:
                await asyncio.sleep(1.0)
                p = await cdp.js(POLL_JS)
                p["at"] = time.monotonic() - t_send
                polls.append(p)
                print("  %4.1f s: currentTime %6.3f  frames %4d (dropped %d)  audio %7d B  "
                      "ready %d%s  buffered %s  status %r"
                      % (p["at"], p["t"], p["total"], p["dropped"], p["audioBytes"],
                         p["readyState"], " paused" if p["paused"] else "",
                         [[round(a, 2), round(b, 2)] for a, b in p["buffered"]],
                         p["status"][:90]))
                err = page_error(p)
                assert err is None, err
                if not shot_taken and p["at"] >= 2.5:  # mid-speech: the mouth moves
                    shot_taken = await screenshot(cdp, shot)
            result["polls"] = polls
            ok = True
        finally:
            if not ok or not shot_taken:  # on failure: the page as it ended
                shot_taken = await screenshot(cdp, shot)
            if shot_taken:
                print("screenshot: %s" % shot)
            result["console"] = cdp.console_errors()
            cdp.reader.cancel()


def check(polls, console):
    assert len(polls) >= 5, "only %d polls" % len(polls)
    ts = [p["t"] for p in polls]
    for a, b in zip(polls, polls[1:]):
        assert b["t"] > a["t"], "currentTime did not advance between %.1f s and %.1f s: %.3f" \
            " -> %.3f (paused=%s, readyState=%d)" % (a["at"], b["at"], a["t"], b["t"],
                                                     b["paused"], b["readyState"])
    last = polls[-1]
    assert last["t"] > 2.0, "currentTime only %.3f s after %.1f s" % (last["t"], last["at"])
    assert last["total"] > 0, "no video frames decoded (getVideoPlaybackQuality)"
    assert last["mime"] and "mp4a" in last["mime"], "SourceBuffer mime %r has no mp4a" \
        % last["mime"]
    assert last["audioBytes"] > 0, "no audio decoded (webkitAudioDecodedByteCount = 0)"
    assert last["wsState"] == 1, "the WebSocket is not open (readyState %s)" % last["wsState"]
    print("playback: currentTime %s s; %d frames decoded, %d dropped (%.1f %%); "
          "%d B audio decoded; mime %s"
          % (" -> ".join("%.2f" % t for t in ts), last["total"], last["dropped"],
             100.0 * last["dropped"] / max(1, last["total"]), last["audioBytes"], last["mime"]))
    # The page's own state (window.talkrender, index.html): live, no errors, and the server's
    # "speaking" notice arrived while the speech played.
    dbg = last.get("dbg")
    if dbg:
        assert dbg.get("state") == "live", "page state %s" % dbg
        assert dbg.get("errors") == 0, "the page showed %s errors" % dbg.get("errors")
        spoke = [p["at"] for p in polls if p.get("dbg") and p["dbg"].get("speaking") is not None]
        assert spoke, "the page never saw a 'speaking' notice: %s" % dbg
        print("page: state %s, speaking at %s s after Stream file, %d messages"
              % (dbg["state"], ", ".join("%.0f" % a for a in spoke), dbg.get("messages", 0)))
    else:
        print("page: no window.talkrender (an older index.html): status text checks only")


def main():
    exe = find_chromium()
    if exe is None:
        L.skip("chromium is not installed")
    if importlib.util.find_spec("websockets") is None:
        L.skip("python3-websockets is not installed")
    L.require_tools()
    tmp = tempfile.mkdtemp(prefix="tr-serve-chromium-")
    shot = os.path.realpath(os.path.join(L.BUILD, "test-artifacts", "serve_chromium.png"))
    chrome = chrome_log = None
    result = {}
    t_all = time.monotonic()
    try:
        wav = L.make_speech(tmp, 4.0)
        avatars = L.make_avatars(tmp)
        with L.Server(avatars, tmp) as srv:
            chrome, chrome_log, port = start_chromium(exe, tmp)
            try:
                asyncio.run(asyncio.wait_for(drive(port, srv.url, wav, shot, result), 60))
            finally:
                stop_chromium(chrome)
        check(result["polls"], result["console"])
        if result["console"]:
            print("page console (warnings/errors, not fatal):\n  " +
                  "\n  ".join(result["console"]))
        print("ok (%.1f s)" % (time.monotonic() - t_all))
        return 0
    except BaseException:
        print("chromium: %s" % exe, file=sys.stderr)
        print("page console (warnings/errors):\n  " +
              "\n  ".join(result.get("console") or ["(none)"]), file=sys.stderr)
        if chrome_log is not None:
            chrome_log.flush()
            with open(chrome_log.name) as f:  # less the noise of a headless box
                lines = [ln for ln in f.read().splitlines()
                         if ln.strip() and not any(n in ln.lower() for n in CHROME_NOISE)]
            print("chromium log (tail):\n" + "\n".join(lines[-30:]), file=sys.stderr)
        raise
    finally:
        stop_chromium(chrome)
        if chrome_log is not None:
            chrome_log.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
