#!/bin/sh
# Flatcar's initrd prints Ignition's log when Ignition fails and reboots after a while; here
# the log goes to the console as KATO-NODE lines and the machine powers off at once (the
# initrd is built with rd.shell=0 rd.emergency=poweroff), so a test sees why and ends.
{
    systemctl --failed --no-legend --plain 2>/dev/null | while read -r unit _; do
        echo "KATO-NODE initrd-failed: $unit"
    done
    journalctl -b --no-pager -o cat -n 80 2>/dev/null | tr -d '\000-\011\013-\037\177' | while IFS= read -r line; do
        echo "KATO-NODE initrd-log: $line"
    done
    echo "KATO-NODE done: initrd-emergency"
} > /dev/console 2>&1
