"""Peak memory of one file's read + parse + chunk, measured in a fresh interpreter.

    python -m tests.helpers.memory FILE MODEL_DIR [MAX_UNPACKED_BYTES]

The child loads the embedder, takes its resident memory as the baseline, runs what
Indexer._prepare runs for a file and prints JSON: peak MB above the baseline and what became of
the file. `measure` starts the child from a checkout and stops it once its RSS passes a cap,
so code that would need gigabytes fails fast instead of taking the machine down.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# The checkout: `python -m tests.helpers.memory` must run there.
REPO = Path(__file__).resolve().parents[2]


def _status_kb(key: str, pid: str = "self") -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _maxrss_kb() -> int:
    # ru_maxrss is in KiB on Linux and in bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


class PeakMeter:
    """Peak RSS growth since construction, in MB.

    Linux: VmHWM, reset to the current RSS first (clear_refs "5"), so a spike while loading
    the model is not mistaken for the baseline. Elsewhere: the growth of ru_maxrss.
    """

    def __init__(self) -> None:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.precise = _status_kb("VmHWM") is not None
        except OSError:
            self.precise = False
        self.base_kb = (_status_kb("VmRSS") if self.precise else None) or _maxrss_kb()

    def peak_mb(self) -> float:
        now = (_status_kb("VmHWM") if self.precise else None) or _maxrss_kb()
        return max(0, now - self.base_kb) / 1024


def child(path: Path, model_dir: Path, max_unpacked: int | None) -> dict[str, Any]:
    """Read, parse and chunk one file as the indexer does; peak MB and the outcome."""
    import gc

    from localrag.chunking import chunk_document
    from localrag.embedder import load_embedder
    from localrag.errors import ParseError
    from localrag.parsers import parse_file

    embedder = load_embedder(model_dir, verify=False)
    gc.collect()
    meter = PeakMeter()
    data = path.read_bytes()
    kwargs = {} if max_unpacked is None else {"max_unpacked_bytes": max_unpacked}
    try:
        parsed = parse_file(path, data, **kwargs)
        chunks = chunk_document(parsed, embedder, embedder.max_tokens, 24)
        outcome = f"{len(chunks)} chunks"
    except ParseError as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    return {"peak_mb": meter.peak_mb(), "outcome": outcome}


def measure(
    path: Path, model_dir: Path, cap_mb: float, *, max_unpacked: int | None = None
) -> dict[str, Any]:
    """Run `child` in a fresh interpreter from this checkout; stopped past cap_mb of RSS.

    A stopped child reports peak_mb = inf. The cap is on the child's whole RSS, so it is
    generous: the bound a test asserts is on peak_mb, the growth above the baseline.
    """
    args = [sys.executable, "-m", "tests.helpers.memory", str(path), str(model_dir)]
    if max_unpacked is not None:
        args.append(str(max_unpacked))
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, text=True)
    cap_kb = cap_mb * 1024
    while proc.poll() is None:
        if (_status_kb("VmRSS", str(proc.pid)) or 0) > cap_kb:
            proc.kill()  # Only this child: the old code needed gigabytes here.
            proc.wait()
            return {"peak_mb": float("inf"), "outcome": f"stopped past {cap_mb:.0f} MB RSS"}
        time.sleep(0.05)
    out = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        raise AssertionError(f"the child failed (exit {proc.returncode}): {out[-500:]}")
    return dict(json.loads(out.strip().splitlines()[-1]))


if __name__ == "__main__":
    limit = int(sys.argv[3]) if len(sys.argv) > 3 else None
    print(json.dumps(child(Path(sys.argv[1]), Path(sys.argv[2]), limit)), flush=True)
