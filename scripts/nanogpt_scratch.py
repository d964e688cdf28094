"""Make a scratch copy of the nanoGPT anchor, with its char-level tinyshakespeare data prepared.

nanoGPT (../shared/anchors/nanoGPT, MIT, see its SOURCE.md) is third-party code: it is never
copied into the project, and it runs from a scratch copy so that the anchor folder stays as
published. This script makes that copy and runs nanoGPT's own ``prepare.py`` in it, offline:
``input.txt`` comes from ../shared/data/tinyshakespeare, and when ``requests`` (which
``prepare.py`` imports but needs only to download) is not installed, a stub stands in for it.

Usage: ``python scripts/nanogpt_scratch.py DEST`` (prints DEST; a copy already prepared is
kept). The benchmarks and ``examples/nanogpt_sweep.toml`` use it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# ../shared beside the checkout (this project's layout), or shared/ inside it (a copy of both).
SHARED = next((p for p in (REPO.parent / "shared", REPO / "shared") if p.is_dir()), REPO.parent)
ANCHOR = SHARED / "anchors" / "nanoGPT"
SHAKESPEARE = SHARED / "data" / "tinyshakespeare" / "input.txt"
DATA = Path("data") / "shakespeare_char"
# The files SOURCE.md lists; nothing else of the anchor folder is needed to train.
FILES = ("LICENSE", "model.py", "train.py", "configurator.py", "config", "data")


def make_scratch(dest: str | Path, *, anchor: Path = ANCHOR, python: str = sys.executable) -> Path:
    """Copy nanoGPT to ``dest`` and prepare shakespeare_char there; return ``dest``.

    Raises
    ------
    FileNotFoundError
        The anchor or the tinyshakespeare text is missing.
    subprocess.CalledProcessError
        nanoGPT's ``prepare.py`` failed.
    """
    dest = Path(dest).resolve()
    if (dest / DATA / "meta.pkl").exists() and (dest / "train.py").exists():
        return dest
    for needed in (anchor / "train.py", SHAKESPEARE):
        if not needed.exists():
            raise FileNotFoundError(f"{needed} not found (see ../shared/anchors/nanoGPT/SOURCE.md)")
    dest.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        source = anchor / name
        if source.is_dir():
            shutil.copytree(source, dest / name, dirs_exist_ok=True)
        else:
            shutil.copy2(source, dest / name)
    shutil.copy2(SHAKESPEARE, dest / DATA / "input.txt")
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as stub:
        if importlib.util.find_spec("requests") is None:
            Path(stub, "requests.py").write_text(
                "def get(*args, **kwargs):\n"
                "    raise RuntimeError('offline: input.txt should already be in place')\n"
            )
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [stub, env.get("PYTHONPATH")]))
        subprocess.run(
            [python, "prepare.py"],
            cwd=dest / DATA,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path, help="the scratch folder (created)")
    parser.add_argument("--anchor", type=Path, default=ANCHOR, help="the nanoGPT anchor folder")
    args = parser.parse_args()
    print(make_scratch(args.dest, anchor=args.anchor))


if __name__ == "__main__":
    main()
