"""A headless Chromium (Debian's chromium) driven over the DevTools protocol
with python3-websocket: just what the browser tests need (navigate, evaluate
JavaScript, press keys, screenshots). Started on a free port chosen by the
browser itself (--remote-debugging-port=0, read back from DevToolsActivePort
in its own profile folder); stopped (its PID) by the harness cleanups."""
import base64
import json
import os
import shutil
import subprocess
import urllib.request

import harness as h

try:
    import websocket  # python3-websocket (deploy/packages-test.txt)
except ImportError:  # the test reports it as a failed check
    websocket = None


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


class Browser:
    def __init__(self, width=1366, height=768):
        self.width, self.height = width, height
        self.proc = None
        self.ws = None
        self.seq = 0
        self.profile = h.tmpdir("freshet-chromium-")
        h._cleanups.append(self.stop)

    def start(self):
        chromium = find_chromium()
        if chromium is None:
            raise RuntimeError("chromium is not installed (it is in deploy/packages-test.txt)")
        if websocket is None:
            raise RuntimeError("python3-websocket is not installed (it is in deploy/packages-test.txt)")
        self.log = open(os.path.join(self.profile, "chromium.log"), "wb")
        self.proc = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--no-default-browser-check", "--user-data-dir=" + self.profile,
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             "--window-size=%d,%d" % (self.width, self.height), "about:blank"],
            stdout=self.log, stderr=subprocess.STDOUT)
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        h.wait_until(lambda: os.path.exists(port_file) and open(port_file).read().count("\n") >= 1, 60,
                     interval=0.1, what="chromium's DevToolsActivePort")
        port = int(open(port_file).read().split("\n")[0])
        pages = []

        def page_listed():
            pages[:] = [t for t in json.loads(urllib.request.urlopen(
                "http://127.0.0.1:%d/json/list" % port, timeout=10).read()) if t.get("type") == "page"]
            return bool(pages)

        h.wait_until(page_listed, 30, interval=0.1, what="a chromium page target")
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                  deviceScaleFactor=1, mobile=False)
        return self

    def call(self, method, **params):
        self.seq += 1
        my = self.seq
        self.ws.send(json.dumps({"id": my, "method": method, "params": params}))
        while True:
            m = json.loads(self.ws.recv())
            if m.get("id") == my:
                if "error" in m:
                    raise RuntimeError("%s: %s" % (method, m["error"]))
                return m.get("result", {})

    def navigate(self, url):
        self.call("Page.navigate", url=url)
        h.wait_until(lambda: self.js("document.readyState") == "complete", 30, interval=0.1,
                     what="page load of " + url)

    def js(self, expr):
        """The value of a JavaScript expression (promises awaited)."""
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError("js %r: %s" % (expr[:80], r["exceptionDetails"].get("exception", {})
                                              .get("description", r["exceptionDetails"].get("text"))))
        return r.get("result", {}).get("value")

    def key(self, key, code=None, keycode=0):
        for t in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=t, key=key, code=code or key,
                      windowsVirtualKeyCode=keycode, nativeVirtualKeyCode=keycode)

    def screenshot(self, path, full=True):
        params = {"format": "png"}
        if full:
            m = self.call("Page.getLayoutMetrics")
            size = m.get("cssContentSize") or m.get("contentSize")
            params["clip"] = {"x": 0, "y": 0, "width": self.width,
                              "height": max(self.height, int(size["height"])), "scale": 1}
            params["captureBeyondViewport"] = True
        data = self.call("Page.captureScreenshot", **params)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return path

    def stop(self):
        if self.ws:
            try:
                self.ws.close()
            except Exception:
                pass
            self.ws = None
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
