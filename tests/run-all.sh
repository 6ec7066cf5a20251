#!/bin/bash
# The whole test suite, as CI runs it (README's test command, after ./setup.sh):
#  - the VM tests (marker vm: the lab's box booted under libvirt, QEMU's software
#    emulation on a machine without KVM) in a process of their own, started first: they
#    spend minutes waiting on one emulated CPU, beside the rest;
#  - every other test on two pytest workers, each with labs of its own;
#  - then, alone, the test that lowers a kernel limit every lab on the machine shares.
# Exit status: the first failure's, after every part has finished; the VM tests' output
# is shown at the end (and kept in $LABKIT_VM_LOG, default vm-tests.log).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
vm_log=${LABKIT_VM_LOG:-vm-tests.log}
python3 -m pytest -q -p no:cacheprovider -m vm --durations=10 tests/vm > "$vm_log" 2>&1 &
vm_pid=$!
python3 -m pytest -q -n 2 --dist loadfile -m "not solo and not vm" --durations=30
rest=$?
solo=0
if [ $rest -eq 0 ]; then
    python3 -m pytest -q -m solo
    solo=$?
fi
wait $vm_pid
vm=$?
echo "--- the VM tests (tests/vm, in their own process) ---"
cat "$vm_log"
for code in $rest $solo $vm; do
    [ "$code" -eq 0 ] || exit "$code"
done
exit 0
