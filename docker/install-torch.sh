#!/bin/sh
# install-torch.sh WHEELDIR REQUIREMENT INDEX   (run while building the node image)
#
# A torch wheel in WHEELDIR (SSHRUN_WHEELS) that fits this interpreter and
# platform is installed as it is; otherwise REQUIREMENT comes from the package
# index, with INDEX as an extra index (the CPU-only builds). torch's own
# dependencies, and numpy (most training scripts want it), come from the index.
set -eu
dir=$1 requirement=$2 index=$3
wheel=$(python3 - "$dir" <<'PY'
import sys
from pathlib import Path
from pip._vendor.packaging.tags import sys_tags
from pip._vendor.packaging.utils import parse_wheel_filename

supported = set(sys_tags())
for path in sorted(Path(sys.argv[1]).glob("torch-*.whl")):
    try:
        tags = parse_wheel_filename(path.name)[3]
    except Exception:
        continue
    if tags & supported:
        print(path)
        break
    print(f"install-torch: {path.name} does not fit this Python/platform", file=sys.stderr)
PY
)
if [ -n "$wheel" ]; then
    echo "install-torch: from $(basename "$wheel")"
    pip install --no-deps "$wheel"
    pip install --find-links "$dir" "$requirement" numpy
else
    echo "install-torch: no fitting torch wheel in SSHRUN_WHEELS;" \
        "$requirement from the index (+ $index)"
    pip install --extra-index-url "$index" "$requirement" numpy
fi
python3 -c 'import torch; print("install-torch: torch", torch.__version__)'
