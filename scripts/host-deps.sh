#!/usr/bin/env bash
# Install what the host side of the suite needs besides Rust, when missing:
# python3 with numpy (the TAP checker; independent numerical references),
# onnxruntime (the reference the real ONNX models are compared with), npm
# (one of the packages shipping those models), Pillow (the demo's image
# preprocessing, scripts/guest-models.py) and pkg-config (libnpu's .pc
# file is checked with the real tool); then fetch the models
# (scripts/models.sh).
. "$(dirname "$0")/common.sh"
missing=()
command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-pip)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
	[ "$(id -u)" = 0 ] || die "missing ${missing[*]}: install them (or run as root)"
	stage "installing host packages: ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
	stage_done
fi
if ! python3 -c 'import numpy' 2>/dev/null; then
	stage "installing numpy (pip)"
	python3 -m pip install -q numpy 2>/dev/null || python3 -m pip install -q --break-system-packages numpy \
		|| die "cannot install numpy with pip"
	stage_done
fi
if ! python3 -c 'import onnxruntime' 2>/dev/null; then
	stage "installing onnxruntime (pip)"
	python3 -m pip install -q onnxruntime 2>/dev/null || python3 -m pip install -q --break-system-packages onnxruntime \
		|| die "cannot install onnxruntime with pip"
	stage_done
fi
if ! python3 -c 'import PIL' 2>/dev/null; then
	stage "installing Pillow (pip)"
	python3 -m pip install -q pillow 2>/dev/null || python3 -m pip install -q --break-system-packages pillow \
		|| die "cannot install Pillow with pip"
	stage_done
fi
"$NPU_TOP/scripts/models.sh" >/dev/null
