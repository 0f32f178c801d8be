"""One measurement per fresh child process, so that peak memory is its own and no cache leaks
between rows: shared by the benchmarks that compare networks (train_speed.py, peers.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys


def rss_mib() -> float:
    """This process's resident set now, in MiB (the baseline a child's peak is measured from)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def peak_rss_mib() -> float:
    """This process's peak resident set so far, in MiB (VmHWM). Not getrusage's ru_maxrss: Linux
    carries that over fork and exec, so a child would report at least its parent's size."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def run_child(script: str, spec: dict, timeout: float) -> dict:
    """Run `script --child SPEC_JSON` and return the JSON object it prints last, or {'error': why}."""
    command = [sys.executable, script, "--child", json.dumps(spec)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout:.0f} s"}
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        return {"error": ((result.stderr.strip().splitlines() or ["no output"])[-1])[:120]}
    return json.loads(lines[-1])
