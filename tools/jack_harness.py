"""A JACK server on its dummy backend (no sound card), shared by tests/test_live.py and
tools/live_soak.py: the same server settings, port wait and delay estimate in both."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
PERIOD = 256  # JACK frames per cycle
RTSEP_CLIENT = "PortAudio"  # the JACK client name of rtsep's process (PortAudio's)


class JackServer:
    """`jackd -d dummy` at `rate` Hz, `period` frames a cycle, with `capture` in / `playback` out system
    ports; processes started with `env` talk to it and import this repo."""

    def __init__(self, name: str, log: Path, rate: int = 16000, own_session: bool = False, capture: int = 2,
                 playback: int = 4, period: int = PERIOD) -> None:
        self.name = name
        self.rate = rate
        self.period = period
        self.log_path = log
        self.env = {**os.environ, "JACK_NO_START_SERVER": "1", "JACK_DEFAULT_SERVER": name,
                    "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self._log = open(log, "wb")
        # Long options before -d: after it the letters mean the dummy driver's options. `own_session`
        # keeps a terminal's Ctrl-C from reaching jackd, so the caller can stop things in order.
        self.proc = subprocess.Popen(["jackd", "-n", name, "--no-realtime", "--port-max", "128", "-d", "dummy",
                                      "-r", str(rate), "-p", str(period), "-C", str(capture), "-P", str(playback)],
                                     env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=own_session)
        try:
            subprocess.run(["jack_wait", "-w", "-t", "10"], env=self.env, check=True, capture_output=True, timeout=20)
        except BaseException:
            self.stop()
            raise

    def client(self, name: str):
        import jack

        # Never name a client like the server: PortAudio in later processes then finds no JACK.
        return jack.Client(name, no_start_server=True, servername=self.name)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def wait_for_ports(client, proc: subprocess.Popen, ports=(f"{RTSEP_CLIENT}:in_0", f"{RTSEP_CLIENT}:out_0"),
                   timeout: float = 90) -> None:
    """Until the live process has opened its stream (its JACK ports exist); RuntimeError otherwise."""
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        names = {p.name for p in client.get_ports(RTSEP_CLIENT + ":")}
        if all(p in names for p in ports):
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise RuntimeError(f"rtsep live exited early with status {proc.returncode}:\n{out}\n{err}")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("rtsep live never opened its JACK ports")


def find_delay(y: np.ndarray, x: np.ndarray, max_lag: int) -> int:
    """Lag L maximising sum_n x[n] y[n + L] (y at least len(x) + max_lag long)."""
    n = len(x) + max_lag
    f = np.fft.rfft(y[:n], 2 * n) * np.conj(np.fft.rfft(x, 2 * n))
    return int(np.argmax(np.fft.irfft(f, 2 * n)[: max_lag + 1]))
