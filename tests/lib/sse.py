"""A small Server-Sent Events client for freshet's GET /v1/changes, over a
plain socket (HTTP/1.1, chunked transfer encoding decoded here), for the
e2e tests and the change-feed benchmark. No thread: the caller asks for the
next event with a bound on the wait."""
import select
import socket
import time


class SSE:
    def __init__(self, port, path="/v1/changes", headers=None, rcvbuf=None, host="127.0.0.1"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(30)
        self.sock.connect((host, port))
        hdrs = "".join("%s: %s\r\n" % (k, v) for k, v in (headers or {}).items())
        self.sock.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n%s\r\n" % (path, hdrs)).encode())
        self.raw = b""      # bytes received, not yet de-chunked
        self.text = b""     # de-chunked body, not yet split into events
        self.status = None
        self.headers = {}
        self.body = b""     # the body of a non-200 answer
        self.closed = False  # the server closed the connection
        self.ended = False   # the last chunk arrived (a complete answer)
        self.comments = 0
        self.backlog = []    # events parsed while waiting for a comment

    def fileno(self):
        return self.sock.fileno()

    def _recv(self, timeout):
        r, _, _ = select.select([self.sock], [], [], timeout)
        if not r:
            return False
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            data = b""
        if not data:
            self.closed = True
            return False
        self.raw += data
        return True

    def head(self, timeout=30):
        """Reads the status line and headers; returns the status."""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.raw:
            if self.closed or time.monotonic() > deadline:
                raise AssertionError("no answer head (closed=%s): %r" % (self.closed, self.raw[:200]))
            self._recv(max(0.0, deadline - time.monotonic()))
        head, self.raw = self.raw.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        for ln in lines[1:]:
            k, v = ln.split(":", 1)
            self.headers[k.strip().lower()] = v.strip()
        if self.status != 200:
            n = int(self.headers.get("content-length", "0"))
            while len(self.raw) < n and not self.closed and time.monotonic() < deadline:
                self._recv(max(0.0, deadline - time.monotonic()))
            self.body = self.raw[:n]
        return self.status

    def _dechunk(self):
        while True:
            i = self.raw.find(b"\r\n")
            if i < 0:
                return
            n = int(self.raw[:i].split(b";")[0], 16)
            if len(self.raw) < i + 2 + n + 2:
                return
            if n == 0:
                self.ended = True
                self.raw = b""
                return
            self.text += self.raw[i + 2:i + 2 + n]
            self.raw = self.raw[i + 2 + n + 2:]

    def _take(self):
        """One parsed event from self.text, or None."""
        while True:
            for sep in (b"\n\n",):
                i = self.text.find(sep)
                if i >= 0:
                    break
            if i < 0:
                return None
            block, self.text = self.text[:i].decode(), self.text[i + 2:]
            ev = {"id": None, "event": "message", "data": []}
            comment = True
            for ln in block.split("\n"):
                if ln.startswith(":"):
                    continue
                comment = False
                k, _, v = ln.partition(":")
                v = v[1:] if v.startswith(" ") else v
                if k == "data":
                    ev["data"].append(v)
                elif k in ("id", "event", "retry"):
                    ev[k] = v
            if comment:
                self.comments += 1
                continue
            if "retry" in ev and not ev["data"]:
                continue
            ev["data"] = "\n".join(ev["data"])
            return ev

    def next(self, timeout=30):
        """The next event (dict: id, event, data), or None when none came
        within timeout or the stream ended."""
        deadline = time.monotonic() + timeout
        if self.backlog:
            return self.backlog.pop(0)
        while True:
            ev = self._take()
            if ev is not None:
                return ev
            if self.closed or self.ended or time.monotonic() > deadline:
                return None
            if self._recv(max(0.0, deadline - time.monotonic())):
                self._dechunk()

    def wait_comment(self, timeout=30):
        deadline = time.monotonic() + timeout
        start = self.comments
        while self.comments == start and time.monotonic() < deadline and not self.closed:
            self._take_all_pending()
            if self.comments > start:
                break
            if self._recv(max(0.0, deadline - time.monotonic())):
                self._dechunk()
        return self.comments > start

    def _take_all_pending(self):
        while True:
            ev = self._take()
            if ev is None:
                return
            self.backlog.append(ev)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
