#!/bin/bash
# Written by kato-image: loads the container images baked into KATO-DATA.
# index.tsv lines: <tar sha256> <image id> <file> <reference>
set -euo pipefail
data=${1:-/var/lib/kato-data}
index=$data/index.tsv
# The script mounts KATO-DATA itself: a mount unit would make systemd wait 90 s for a
# device that a machine booted over iPXE never has, then fail every unit that needs it.
# blkid probes the disks directly, so it does not depend on udev's links being made yet.
if [[ ! -e $index ]]; then
  if ! device=$(blkid -L KATO-DATA 2>/dev/null) || [[ -z $device ]]; then
    echo "kato-preload: no KATO-DATA partition on this machine; units pull their images as usual"
    exit 0
  fi
  mkdir -p "$data"
  mount -t btrfs -o ro,nodev,nosuid,noexec "$device" "$data" ||
    { echo "kato-preload: cannot mount KATO-DATA ($device) on $data" >&2; exit 1; }
fi
[[ -r $index ]] || { echo "kato-preload: $index is missing" >&2; exit 1; }
failed=0
while IFS=$'	' read -r sha256 id file reference; do
  [[ -z $sha256 || $sha256 == \#* ]] && continue
  if docker image inspect "$id" >/dev/null 2>&1; then
    echo "kato-preload: $reference already loaded ($id)"
    continue
  fi
  actual=$(sha256sum "$data/$file" | cut -d' ' -f1)
  if [[ $actual != "$sha256" ]]; then
    echo "kato-preload: $file has SHA-256 $actual, not $sha256 as the index says; not loading $reference" >&2
    failed=1
    continue
  fi
  docker load --input "$data/$file"
  echo "kato-preload: loaded $reference ($id)"
done < "$index"
exit "$failed"
