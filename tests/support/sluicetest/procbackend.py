"""A backend in its own process, for tests that SIGKILL or SIGSTOP it (chaos tests).

    be = ProcBackend("a").start()          # python3 -m sluicetest.procbackend a 127.0.0.1 0
    be.kill()                              # SIGKILL: the kernel resets/closes its sockets
    be.start()                             # again, on the same port
    be.pause(); be.resume()                # SIGSTOP / SIGCONT: connects still succeed (backlog)
    be.stop()

Every answer is `200` with `X-Backend: NAME` and a JSON body naming the backend, the method
and the length and sha256 of the request body, written with one send(), so a kill never leaves
half an answer behind (a proxy must close the client connection on a truncated answer, which
would be a right answer but a flaky test).
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading

from .backend import Backend, Response
from .util import wait_stopped

_SUPPORT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def _answer(name):
    def answer(req):
        body = json.dumps({"backend": name, "method": req.method, "path": req.path,
                           "body_len": len(req.body),
                           "body_sha256": hashlib.sha256(req.body).hexdigest()}).encode()
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nX-Backend: {name}\r\n\r\n").encode()
        return Response(raw=head + body)
    return answer


class ProcBackend:
    def __init__(self, name, host="127.0.0.1", port=0):
        self.name = name
        self.host = host
        self.port = port
        self.proc = None

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    def start(self, timeout=10.0):
        """Start the process (on the port it had before, if any) and wait until it listens."""
        env = dict(os.environ, PYTHONPATH=_SUPPORT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sluicetest.procbackend", self.name, self.host, str(self.port)],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
        line = self.proc.stdout.readline().decode().split()  # "listening PORT" once bound
        if len(line) != 2 or line[0] != "listening":
            self.proc.kill()
            raise AssertionError(f"backend {self.name} did not start: {line!r}")
        self.port = int(line[1])
        return self

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)

    def pause(self, timeout=5.0):
        """SIGSTOP, and wait until the process is really stopped."""
        self.proc.send_signal(signal.SIGSTOP)
        wait_stopped(self.proc.pid, f"backend {self.name}", timeout)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGCONT)
        self.proc.kill()
        self.proc.wait(5)


def main():
    name, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    be = Backend(name, port=port, host=host).set_default(_answer(name)).start()
    print(f"listening {be.port}", flush=True)
    threading.Event().wait()  # until killed


if __name__ == "__main__":
    main()
