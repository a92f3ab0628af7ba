#!/bin/sh
# Written by kato-image. Works out which member of its role this machine is, and its host
# name, then starts each template given (name@.service) as that member's instance: member 2
# starts name@2.service. In order:
#   1. the kernel command line: kato.instance=N and kato.hostname=NAME (boot.ipxe sets them
#      for each machine its role profile lists);
#   2. on EC2, the instance's tags kato:instance and kato:hostname, read over IMDSv2 (the
#      instance needs its metadata tags switched on: InstanceMetadataTags=enabled);
#   3. the trailing number of the host name (master-2 is member 2), except on EC2 and for
#      EC2-shaped names (ip-172-31-5-17): those end in an address, not a member number.
# A host name found in 1 or 2 is set before the number is chosen. With no number, nothing
# starts and the reason is one line on the console.
# `kato-instances --print` only prints what it would choose: instance=N hostname=H source=S.
# KATO_CMDLINE, KATO_IMDS (a base URL, which also forces the IMDS lookup) and KATO_RUN_DIR
# replace /proc/cmdline, http://169.254.169.254 and /run/kato, for tests.
set -eu

print_only=
if [ "${1:-}" = --print ]; then
    print_only=1
    shift
fi
cmdline=$(cat "${KATO_CMDLINE:-/proc/cmdline}")

# The last value of kernel argument $1, if any.
karg() {
    value=
    for word in $cmdline; do
        case $word in
            "$1"=*) value=${word#*=} ;;
        esac
    done
    printf '%s' "$value"
}

on_ec2() {
    [ -n "${KATO_IMDS:-}" ] && return 0
    case " $cmdline " in
        *" flatcar.oem.id=ec2 "* | *" ignition.platform.id=aws "*) return 0 ;;
    esac
    grep -qs 'Amazon EC2' /sys/class/dmi/id/sys_vendor /sys/class/dmi/id/board_vendor
}

fetch() {
    if command -v curl >/dev/null 2>&1; then
        curl -fsS --connect-timeout 2 --max-time 5 "$@"
    else
        return 1
    fi
}

# An instance tag over IMDSv2: a session token first, then the tag (404 when the tag is
# absent or metadata tags are off: no value).
imds_tag() {
    base=${KATO_IMDS:-http://169.254.169.254}
    [ -n "${imds_token:-}" ] || imds_token=$(fetch -X PUT \
        -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' "$base/latest/api/token" 2>/dev/null) || return 1
    fetch -H "X-aws-ec2-metadata-token: $imds_token" \
        "$base/latest/meta-data/tags/instance/$1" 2>/dev/null || true
}

instance=$(karg kato.instance)
name=$(karg kato.hostname)
source=kernel
if [ -z "$instance" ] && [ -z "$name" ] && on_ec2; then
    instance=$(imds_tag kato:instance || true)
    name=$(imds_tag kato:hostname || true)
    source=ec2-tags
fi
case $name in
    '' | *[!a-z0-9.-]* | -* | *-) [ -n "$name" ] && echo "kato-instances: ignoring host name '$name' (not a host name)" >&2
        name= ;;
esac
if [ -n "$name" ] && [ -z "$print_only" ]; then
    hostnamectl set-hostname "$name" 2>/dev/null || hostname "$name"
fi
host=${name:-$(hostname)}
host=${host%%.*}
if [ -z "$instance" ]; then
    # EC2 names a machine after its address (ip-10-0-1-23): its last number is no member
    # number, and trusting it would make a wrong ZooKeeper id.
    case $host in
        ip-[0-9]*-[0-9]*-[0-9]*-[0-9]*) ec2_name=1 ;;
        *) ec2_name= ;;
    esac
    if [ -n "$ec2_name" ] || on_ec2; then
        echo "kato-instances: no member number for this machine: on EC2 it comes from the kato:instance tag (or kato.instance= on the kernel command line), and the tag is missing or the instance's metadata tags are off (InstanceMetadataTags=enabled); the host name '$host' is not used; not starting: $*" >&2
        exit 1
    fi
    instance=${host##*[!0-9]}
    source=hostname
fi
case $instance in
    '' | *[!0-9]*)
        echo "kato-instances: no member number for this machine: no kato.instance= on the kernel command line, no kato:instance tag, and host name '$host' does not end in a number; not starting: $*" >&2
        exit 1 ;;
esac
# master-02 is member 2: leading zeros are padding (and would read as octal to some tools).
number=${instance#"${instance%%[!0]*}"}
if [ -z "$number" ] || [ ${#number} -gt 3 ] || [ "$number" -gt 255 ]; then
    echo "kato-instances: member number $instance (from the $source) is not 1 to 255; not starting: $*" >&2
    exit 1
fi
instance=$number
if [ -n "$print_only" ]; then
    echo "instance=$instance hostname=$host source=$source"
    exit 0
fi
run=${KATO_RUN_DIR:-/run/kato}
mkdir -p "$run"
printf 'KATO_INSTANCE="%s"\nKATO_HOSTNAME="%s"\nKATO_IDENTITY_SOURCE="%s"\n' \
    "$instance" "$host" "$source" > "$run/identity.env"
echo "kato-instances: member $instance ($host, from the $source)" >&2
for template in "$@"; do
    systemctl start --no-block "${template%%@.*}@$instance.${template##*.}"
done
