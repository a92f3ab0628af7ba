#!/bin/sh
# Written by kato-image. Starts, for each template given (name@.service), the instance named
# by the trailing number of this machine's short hostname: master-2 starts name@2.service.
set -eu
host=$(hostname)
host=${host%%.*}
n=${host##*[!0-9]}
if [ -z "$n" ]; then
    echo "kato-instances: hostname '$host' does not end in a number; cannot choose instances of: $*" >&2
    exit 1
fi
for template in "$@"; do
    systemctl start --no-block "${template%%@.*}@$n.${template##*.}"
done
