#!/usr/bin/env bash
# Checks that includes inside src/ only point down the layers:
#   util <- memory <- tensor <- backend <- io, tokenizer <- image <- models <- profile <- planning <- pipeline
#   <- app <- cli
# A file may include its own folder and any folder of a lower rank. Prints each include that points up
# and exits 1 if there is one.
set -euo pipefail
cd "$(dirname "$0")/../src"
declare -A rank=([util]=0 [memory]=1 [tensor]=2 [backend]=3 [io]=4 [tokenizer]=4 [image]=5 [models]=6
                 [profile]=7 [planning]=8 [pipeline]=9 [app]=10 [cli]=11)
status=0
for folder in */; do
  folder=${folder%/}
  [ -n "${rank[$folder]+x}" ] || { echo "src/$folder: a folder with no layer in scripts/check_layers.sh"; status=1; continue; }
  while IFS=: read -r file line target; do
    included=${target%%/*}
    if [ -z "${rank[$included]+x}" ]; then
      echo "src/$file:$line includes $target, from no known layer"; status=1
    elif [ "$included" != "$folder" ] && [ "${rank[$included]}" -ge "${rank[$folder]}" ]; then
      echo "src/$file:$line: $folder includes $target, which is not below it"; status=1
    fi
  done < <(grep -rnoE '^#include "[a-z_]+/[^"]+"' "$folder" | sed -E 's/:#include "/:/; s/"$//')
done
[ "$status" -eq 0 ] && echo "layers: every include points down"
exit "$status"
