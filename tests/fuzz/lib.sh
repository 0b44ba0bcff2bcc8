# shellcheck shell=bash disable=SC2034
# Shared by tests/fuzz/check and tests/fuzz/explore (sourced, not run).
# fz_norand: a prefix that runs a command without address-space
# randomisation, so that libFuzzer's comparison traces (which record pointer
# values) and hence its mutations are the same on every run of a seed. Empty,
# with a notice, where the personality(2) call is not allowed (some
# container sandboxes): runs are then reproducible per input but a target
# whose code compares pointers may explore differently from run to run.
fz_norand=()
if setarch "$(uname -m)" -R true 2>/dev/null; then
  fz_norand=(setarch "$(uname -m)" -R)
else
  echo "fuzz: note: cannot disable ASLR here (setarch -R refused); fixed-seed runs of some targets may differ" >&2
fi

# fz_show_findings DIR STAMP: prints every file in DIR newer than STAMP (a
# file) as hex and base64 (first 4 KiB) with the command that replays it.
fz_show_findings() {
  local dir=$1 stamp=$2 bin=$3 f
  find "$dir" -maxdepth 1 -type f -newer "$stamp" | sort | while read -r f; do
    echo "  finding kept: $f ($(stat -c %s "$f") bytes)"
    echo "  replay: $bin $f"
    echo "  hex:    $(head -c 4096 "$f" | od -An -v -tx1 | tr -d ' \n')"
    echo "  base64: $(head -c 4096 "$f" | base64 -w0)"
  done
}
