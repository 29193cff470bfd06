"""A sandbox that runs ``nctheory.cli.main(argv)`` in-process, one case after another, in a server process
with a bounded address space; used by tests/test_fuzz_cli.py and tests/test_faults.py.

Why a server process: a case that would allocate 11 GB must fail inside the sandbox, not take the
machine's memory, and a case that hangs must be stopped. The server imports nctheory and its heavy
dependencies once, sets ``RLIMIT_AS`` (baseline address space + ``AS_HEADROOM``) so an allocation beyond it
fails at once, and then for every request (argv, working folder):

- resets the peak resident size (``/proc/self/clear_refs`` 5), redirects file descriptors 1 and 2 to
  files (so C-level output, e.g. a solver's, is captured too), runs ``main(argv)``;
- reports the exit code (a ``SystemExit`` from argparse counts as its code), stdout, stderr, the
  traceback of any exception that escaped ``main`` (that is the fuzz tests' "traceback"), the peak
  resident size during the case minus the size before it, and the seconds taken.

The client (:class:`Sandbox`) waits at most ``timeout`` seconds per case; a case that takes longer, or a
server that dies (a segfault, the kernel's OOM killer), is reported as such and the server is replaced by
a warm spare (started in the background, so a hang costs its timeout, not the imports of a new server).

Run as a script this file is the server: ``python cli_sandbox.py RESPONSE_FD``.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

AS_HEADROOM = 3 * 10**9   # address space the server may take beyond what it holds after its imports
RSS_BUDGET = 1_500 * 10**6  # peak resident growth a case may cause (the fuzz tests' "bounded memory")
REPO = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------------ server
def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _serve(resp_fd: int) -> None:  # pragma: no cover - runs in the server process
    import resource
    import traceback
    import warnings

    warnings.simplefilter("always")  # every case shows its warnings, as a fresh `nctheory` process would

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    import torch

    torch.set_num_threads(1)
    import nctheory.harness.train  # noqa: F401
    import nctheory.solvers  # noqa: F401
    from nctheory.cli import build_parser, main

    build_parser()  # imports every cmd_* module
    vm = _status("VmSize")
    resource.setrlimit(resource.RLIMIT_AS, (vm + AS_HEADROOM, resource.RLIM_INFINITY))
    resp = os.fdopen(resp_fd, "w", buffering=1)
    resp.write(json.dumps({"ready": True, "vm": vm, "rss": _status("VmRSS")}) + "\n")
    home = os.getcwd()
    for line in sys.stdin:
        req = json.loads(line)
        out_path, err_path = req["stdout"], req["stderr"]
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        fo = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        fe = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fo, 1)
        os.dup2(fe, 2)
        os.close(fo)
        os.close(fe)
        exc_text = None
        rc = None
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
        base = _status("VmRSS")
        t0 = time.time()
        try:
            os.chdir(req["cwd"])
            rc = main(req["argv"])
        except SystemExit as exc:  # argparse (usage errors exit 2, --help / --version 0)
            rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        except BaseException:  # noqa: BLE001 - the fuzz tests report it as a traceback
            exc_text = traceback.format_exc()
        seconds = time.time() - t0
        peak = _status("VmHWM")
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:  # noqa: BLE001
            pass
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
        os.chdir(home)
        try:
            import matplotlib.pyplot as plt

            plt.close("all")
        except Exception:  # noqa: BLE001
            pass
        resp.write(json.dumps({"rc": rc, "exception": exc_text, "peak_growth": max(0, peak - base),
                               "seconds": seconds}) + "\n")


# ------------------------------------------------------------------------------------------ client
@dataclass
class Result:
    argv: list
    rc: int | None
    stdout: str = ""
    stderr: str = ""
    exception: str | None = None  # the traceback of an exception that escaped main()
    peak_growth: int = 0          # bytes of resident memory the case added at its peak
    seconds: float = 0.0
    hung: bool = False            # took longer than the timeout (the server was killed)
    died: str | None = None       # the server died during the case (how)
    notes: list = field(default_factory=list)

    def problems(self, *, rss_budget: int = RSS_BUDGET) -> list[str]:
        """What makes this an unclean outcome (the fuzz tests' assertions), empty when clean."""
        out = []
        if self.hung:
            out.append(f"hung (> {self.seconds:.0f} s)")
        if self.died:
            out.append(f"the process died ({self.died})")
        if self.exception:
            last = self.exception.strip().splitlines()[-1]
            out.append(f"traceback: {last}")
        if not self.hung and not self.died and not self.exception and self.rc not in (0, 1, 2, 3):
            out.append(f"exit code {self.rc}")
        if "Traceback (most recent call last)" in self.stderr:
            out.append("traceback on stderr: " + self.stderr.strip().splitlines()[-1])
        if self.rc == 2 and not self.exception:
            lines = self.stderr.splitlines()
            if len(lines) != 1:
                out.append(f"exit 2 with {len(lines)} lines on stderr: {self.stderr[:300]!r}")
        if self.peak_growth > rss_budget:
            out.append(f"peak memory +{self.peak_growth / 1e9:.2f} GB (budget {rss_budget / 1e9:.1f} GB)")
        return out


class Sandbox:
    """Client of the sandbox server (started lazily, restarted after a hang or a death)."""

    def __init__(self, workdir: Path, env: dict | None = None, keep_spare: bool = True):
        self.workdir = Path(workdir)
        self.env = env
        self.proc = None
        self.resp = None
        self.spare = None
        self.keep_spare = keep_spare
        self.ready = None
        self.count = 0

    def _spawn(self):
        r, w = os.pipe()
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
               "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), **(self.env or {})}
        env.pop("NCTHEORY_MAX_MEMORY", None)
        proc = subprocess.Popen([sys.executable, __file__, str(w)], stdin=subprocess.PIPE, pass_fds=(w,),
                                cwd=self.workdir, env=env, text=True, start_new_session=True)
        os.close(w)
        return proc, os.fdopen(r, "r")

    def start(self) -> None:
        """Take the warm spare server if there is one, else start a server; wait until it is ready."""
        if self.spare is not None:
            self.proc, self.resp = self.spare
        else:
            self.proc, self.resp = self._spawn()
        self.spare = self._spawn() if self.keep_spare else None  # warm for the next hang or death
        line = self._readline(180)
        if line is None:
            self.stop(spare=False)
            raise RuntimeError("the sandbox server did not start")
        self.ready = json.loads(line)

    def _readline(self, timeout: float) -> str | None:
        fd = self.resp.fileno()
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            return None
        line = self.resp.readline()
        return line or None

    @staticmethod
    def _kill(proc, resp) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the server and anything it started
        except ProcessLookupError:
            pass
        proc.wait()
        resp.close()

    def stop(self, spare: bool = False) -> None:
        """Kill the server (and its children). ``spare``: start a new one in the background at once, so the
        next case does not wait for the imports (a hang or a death costs its timeout, not a restart)."""
        if self.proc is not None:
            self._kill(self.proc, self.resp)
            self.proc = self.resp = None
        if spare and self.spare is None and self.keep_spare:
            self.spare = self._spawn()
        if not spare and self.spare is not None:
            self._kill(*self.spare)
            self.spare = None

    def run(self, argv, cwd: Path, timeout: float = 30.0) -> Result:
        if self.proc is None or self.proc.poll() is not None:
            self.stop(spare=True)
            self.start()
        self.count += 1
        cwd = Path(cwd)
        out_p, err_p = cwd / f".sandbox-{self.count}.out", cwd / f".sandbox-{self.count}.err"
        req = {"argv": [str(a) for a in argv], "cwd": str(cwd), "stdout": str(out_p), "stderr": str(err_p)}
        t0 = time.time()
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self._readline(timeout)
        res = Result(list(req["argv"]), None, seconds=time.time() - t0)
        if line is None:
            if self.proc.poll() is None:
                res.hung = True
            else:
                res.died = f"exit status {self.proc.returncode}"
            self.stop(spare=True)
        else:
            d = json.loads(line)
            res.rc, res.exception = d["rc"], d["exception"]
            res.peak_growth, res.seconds = d["peak_growth"], d["seconds"]
        for p, attr in ((out_p, "stdout"), (err_p, "stderr")):
            try:
                setattr(res, attr, p.read_text(errors="replace"))
                p.unlink()
            except OSError:
                pass
        return res


if __name__ == "__main__":  # pragma: no cover
    _serve(int(sys.argv[1]))
