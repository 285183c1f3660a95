"""Copy a training run's RUN_DIR/last/ into the package as the float16 ``xcodec2-demo`` checkpoint.

    python3 scripts/package_demo.py /work/demo_run/last

Writes src/xcodec/pretrained/xcodec2-demo/{config.json, preprocessor_config.json,
model.safetensors}; floating tensors are stored as float16 (half the bytes; loading casts
them back to float32 by default). The model card (README.md there) is written by hand.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from safetensors.torch import load_file, save_file

DEST = Path(__file__).resolve().parent.parent / "src" / "xcodec" / "pretrained" / "xcodec2-demo"


def main(argv: list[str]) -> int:
    source = Path(argv[0])
    DEST.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "preprocessor_config.json"):
        shutil.copyfile(source / name, DEST / name)
    state = load_file(str(source / "model.safetensors"))
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    save_file(half, str(DEST / "model.safetensors"), metadata={"format": "pt"})
    print(f"{len(half)} tensors, {(DEST / 'model.safetensors').stat().st_size / 1e6:.2f} MB -> {DEST}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
