#!/usr/bin/env bash
# Stage the real published models for the guest's /models: each with fixed
# inputs and onnxruntime's outputs on them (the guest test
# onpu-test-models compares the NPU's with these), and the demo's page in
# four orientations (scripts/guest-models.py). Prints the directory. Kept
# while the models and the generator are unchanged; the models come from
# the cache (scripts/models.sh), never from the repo.
. "$(dirname "$0")/common.sh"
models=$("$NPU_TOP/scripts/models.sh" | tail -n1)
gen=$NPU_TOP/scripts/guest-models.py
key=$( (sha256sum "$gen"; find "$models" -type f -printf '%P %s %T@\n' | sort) | sha256sum | cut -c1-12)
out=$NPU_TOP/build/guest-models
if [ "$(cat "$out/.key" 2>/dev/null)" != "$key" ]; then
	python3 -c 'import numpy, onnxruntime, PIL' 2>/dev/null ||
		die "the guest models need numpy, onnxruntime and Pillow on the host (scripts/host-deps.sh)"
	stage "computing onnxruntime's outputs for the guest's models"
	rm -rf "$out" "$out.tmp"
	mkdir -p "$out.tmp"
	python3 "$gen" "$models" "$models/scikit-image-0.26.0/page.png" "$out.tmp" ||
		die "scripts/guest-models.py failed"
	echo "$key" >"$out.tmp/.key"
	mv "$out.tmp" "$out"
	stage_done
fi
echo "$out"
