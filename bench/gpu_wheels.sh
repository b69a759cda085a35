#!/usr/bin/env bash
# Wheels a bare GPU image lacks for bench/gpu_check.py, at the versions requirements/
# constraints.txt pins, downloaded here for CPython 3.12 on x86-64 Linux (source-only packages
# are built into wheels here: all pure Python). The device call installs them with
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
# The list: the dependency closure of lm_eval, datasets, jsonschema and transformers, less what
# the image already has (torch, numpy, pandas, pyarrow, tokenizers, huggingface-hub, ...);
# transformers travels too, for the project's version (the image's is older). About 30 MB.
set -euo pipefail
dest=${1:-.whl}
here=$(cd "$(dirname "$0")/.." && pwd)
binary=(annotated-types chardet dataproperty datasets defusedxml dill evaluate httpcore2 httpx2
  jsonschema jsonschema-specifications lm_eval mbstrdecoder more-itertools multiprocess nltk
  pathvalidate pydantic pydantic-core pytablewriter referencing rpds-py tabledata tcolorpy
  truststore typepy typing-inspection transformers)
source_only=(rouge-score sqlitedict word2number)

pinned() {  # name==version from the constraints file (names compared as pip normalises them)
  local key
  key=$(echo "$1" | tr 'A-Z_.' 'a-z--')
  awk -F'==' -v key="$key" '{n=tolower($1); gsub(/[_.]/, "-", n)} n==key {print $1"=="$2; f=1}
    END {if (!f) {print "gpu_wheels.sh: " key " is not pinned in requirements/constraints.txt" > "/dev/stderr"; exit 1}}' \
    "$here/requirements/constraints.txt"
}

mkdir -p "$dest"
specs=()
for name in "${binary[@]}"; do specs+=("$(pinned "$name")"); done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$dest" "${specs[@]}"
specs=()
for name in "${source_only[@]}"; do specs+=("$(pinned "$name")"); done
python3 -m pip wheel -q --no-deps -w "$dest" "${specs[@]}"
ls "$dest" | wc -l | xargs echo "wheels in $dest:"
du -sh "$dest"
