#!/usr/bin/env bash
# Run every guest test run listed in tools/selftests/runs.list (or those
# named on the command line) and report them as one TAP stream.
. "$(dirname "$0")/common.sh"

# NPU_RUNS_LIST picks another list (tools/selftests/reliability.list holds
# the long runs of `make reliability`); NPU_RUN_TIMEOUT the per-run limit.
list=${NPU_RUNS_LIST:-$NPU_TOP/tools/selftests/runs.list}
mapfile -t lines < <(grep -Ev '^\s*(#|$)' "$list")
if [ $# -gt 0 ]; then
	want=" $* "
	sel=()
	for l in "${lines[@]}"; do
		n=${l%%[[:space:]]*}
		[[ $want == *" $n "* ]] && sel+=("$l")
	done
	lines=("${sel[@]}")
fi
[ ${#lines[@]} -gt 0 ] || die "no guest runs selected"

module_for() {
	case $1 in
	no) ;;
	yes) "$NPU_TOP/scripts/module.sh" "$2" | tail -n1 ;;
	intree) "$NPU_TOP/scripts/module.sh" intree "$2" | tail -n1 ;;
	*) die "runs.list: module column must be yes, intree or no, not '$1'" ;;
	esac
}

mkdir -p "$NPU_TOP/build/runs" "$NPU_TOP/build/results"
# One TAP stream: each run is a test point, the run's own TAP (its tests and
# their test points) nested under it. Counts are over the leaf test points.
echo "TAP version 13"
echo "1..${#lines[@]}"
i=0 failed=0 passed=0 tp=0 tf=0 ts=0
for l in "${lines[@]}"; do
	i=$((i + 1))
	read -r name flavour mod devargs tests <<<"$l"
	[ "$devargs" = - ] && devargs=""
	# One column: words of the device server's arguments are joined by ';'.
	devargs=${devargs//;/ }
	args=(--name "$name" --kernel "$flavour" --timeout "${NPU_RUN_TIMEOUT:-900}")
	start=$(date +%s)
	rm -f "$NPU_TOP/build/runs/$name/counts"
	ok=1
	if ! ko=$(module_for "$mod" "$flavour"); then
		echo "    # FAIL: the module did not build against the $flavour kernel"
		ok=0
	else
		[ -n "$ko" ] && args+=(--module "$ko")
		# Tests are words; a test's own arguments are joined to it by ';'.
		read -ra tarr <<<"$tests"
		for t in "${!tarr[@]}"; do tarr[t]=${tarr[t]//;/ }; done
		if ! "$NPU_TOP/scripts/vm.sh" "${args[@]}" --device-args "$devargs" -- "${tarr[@]}" \
			2> >(tee "$NPU_TOP/build/runs/$name.stderr" >&2) | sed 's/^/    /'; then
			ok=0
		fi
	fi
	read -r p f s <"$NPU_TOP/build/runs/$name/counts" 2>/dev/null || { p=0 f=1 s=0; }
	[ "$ok" = 1 ] || [ "$f" -gt 0 ] || f=1
	tp=$((tp + p)) tf=$((tf + f)) ts=$((ts + s))
	if [ "$ok" = 1 ]; then
		echo "ok $i $name # $(( $(date +%s) - start ))s: $p passed"
		passed=$((passed + 1))
	else
		echo "not ok $i $name # $(( $(date +%s) - start ))s, logs in build/runs/$name/"
		grep -v '^==>' "$NPU_TOP/build/runs/$name.stderr" 2>/dev/null | sed 's/^/# /' | tail -20
		failed=$((failed + 1))
	fi
done
echo "$tp $tf $ts" >"$NPU_TOP/build/results/guest.counts"
echo "# guest runs: $passed passed, $failed failed; test points: $tp passed, $tf failed, $ts skipped"
[ $failed = 0 ]
