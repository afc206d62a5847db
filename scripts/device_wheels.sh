#!/usr/bin/env bash
# Download, into .whl/ (git-ignored), the wheels the device machine's Python lacks for this
# project (its image has torch, numpy, scipy, scikit-image, pandas, pyarrow, tifffile, pillow,
# matplotlib, numba...; not these). Python 3.12, x86-64 manylinux. ~50 MB: the working tree and
# .whl together must stay under the device tool's 64 MiB. Run here (PyPI reachable), then name
# .whl in the device run's `carry` and start its command with bench/gpu_session.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .whl && mkdir .whl
PY=${PYTHON:-.venv/bin/python}
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64 \
  --platform manylinux1_x86_64 -d .whl \
  pydantic==2.12.5 pydantic-core==2.41.5 annotated-types typing-inspection==0.4.5 \
  dask==2026.8.0 distributed==2026.8.0 tornado==6.6.1 tblib==3.2.2 zict==3.0.0 partd==1.4.2 locket==1.0.0 \
  zarr==3.1.6 numcodecs==0.16.6 donfig==0.8.1.post1 shapely==2.2.0 orjson==3.13.0 imagecodecs==2026.3.6 \
  openslide-python==1.4.7 openslide-bin==4.0.1.2 stardist==0.9.2 csbdeep==0.8.2
du -sh .whl
