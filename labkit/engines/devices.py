"""The devices a lab host may use: a cgroup device program, as systemd gives a unit with
``DevicePolicy=closed`` (and systemd-nspawn a container).

A host's root keeps CAP_MKNOD, as it does under systemd-nspawn anywhere; without a device
policy it could make a node for the server's disk (``mknod /tmp/disk b 8 0``) and read
every other lab's files, or the server's. Started with ``--keep-unit --register=no`` on a
machine without systemd, nspawn installs no device policy itself, so labkit does: a small
BPF program of type ``BPF_PROG_TYPE_CGROUP_DEVICE``, attached to the lab's cgroup in the
unified (cgroup v2) hierarchy, allowing the character devices below and nothing else. It
works on a cgroup-v2 machine and on a hybrid one (where the v1 ``devices`` controller
applies too, and both must allow). The program is attached with ``BPF_F_ALLOW_MULTI`` on
the lab's cgroup, above every host's own: a host's systemd can add programs for its units
(they apply together with this one) but cannot see this one to remove it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import struct
from pathlib import Path

#: (major, minor) of the character devices a host may use, minor None for all of a major:
#: the set systemd-nspawn allows a container.
ALLOWED_CHAR_DEVICES: tuple[tuple[int, int | None], ...] = (
    (1, 3),      # /dev/null
    (1, 5),      # /dev/zero
    (1, 7),      # /dev/full
    (1, 8),      # /dev/random
    (1, 9),      # /dev/urandom
    (5, 0),      # /dev/tty
    (5, 2),      # /dev/ptmx
    (136, None),  # /dev/pts/*: the console and every terminal
    (10, 200),   # /dev/net/tun
    (10, 229),   # /dev/fuse
)

_SYS_BPF = {"x86_64": 321, "aarch64": 280}
_BPF_PROG_LOAD, _BPF_PROG_ATTACH, _BPF_PROG_QUERY = 5, 8, 16
_BPF_PROG_TYPE_CGROUP_DEVICE = 15
_BPF_CGROUP_DEVICE = 6
_BPF_F_ALLOW_MULTI = 2
_BPF_DEVCG_DEV_CHAR = 2
_ATTR_SIZE = 128


class DevicePolicyError(OSError):
    """The kernel refused to load or attach the device program."""


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


_LDX_W, _AND32_K, _MOV64_K, _JNE_K, _EXIT = 0x61, 0x54, 0xB7, 0x55, 0x95


def program(allowed: tuple[tuple[int, int | None], ...] = ALLOWED_CHAR_DEVICES) -> bytes:
    """The device program's instructions: allow (return 1) a character device in
    ``allowed``, whatever the access; refuse (return 0) everything else, every block
    device included. Its context is ``struct bpf_cgroup_dev_ctx`` (access_type, major,
    minor; the device type in access_type's low 16 bits)."""
    code = [_insn(_LDX_W, 2, 1, 0), _insn(_AND32_K, 2, imm=0xFFFF),
            _insn(_LDX_W, 4, 1, 4), _insn(_LDX_W, 5, 1, 8)]
    for major, minor in allowed:
        skip = 4 if minor is not None else 3  # to the next rule
        code += [_insn(_JNE_K, 2, off=skip, imm=_BPF_DEVCG_DEV_CHAR),
                 _insn(_JNE_K, 4, off=skip - 1, imm=major)]
        if minor is not None:
            code.append(_insn(_JNE_K, 5, off=2, imm=minor))
        code += [_insn(_MOV64_K, 0, imm=1), _insn(_EXIT)]
    code += [_insn(_MOV64_K, 0, imm=0), _insn(_EXIT)]
    return b"".join(code)


def _bpf(cmd: int, attr: bytes) -> int:
    nr = _SYS_BPF.get(platform.machine())
    if nr is None:
        raise DevicePolicyError(f"no bpf() system call number known for {platform.machine()}")
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(attr, _ATTR_SIZE)
    ret = libc.syscall(nr, cmd, buf, _ATTR_SIZE)
    if ret < 0:
        err = ctypes.get_errno()
        raise DevicePolicyError(err, f"bpf() command {cmd}: {os.strerror(err)}")
    if cmd == _BPF_PROG_QUERY:
        return struct.unpack_from("<I", buf.raw, 24)[0]  # prog_cnt
    return ret


def _load() -> int:
    code = ctypes.create_string_buffer(program())
    license_ = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(4096)
    attr = struct.pack("<IIQQIIQII16sII", _BPF_PROG_TYPE_CGROUP_DEVICE, len(code.raw) // 8,
                       ctypes.addressof(code), ctypes.addressof(license_), 1, len(log),
                       ctypes.addressof(log), 0, 0, b"labkit_devices", 0,
                       _BPF_CGROUP_DEVICE)
    try:
        return _bpf(_BPF_PROG_LOAD, attr)
    except DevicePolicyError as e:
        raise DevicePolicyError(e.errno, f"{e.strerror}\n{log.value.decode(errors='replace')}"
                                ) from None


def attached(cgroup: Path) -> int:
    """How many device programs are attached to ``cgroup`` itself."""
    fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
    try:
        # target_fd, attach_type, query_flags, attach_flags, prog_ids (NULL), prog_cnt 0
        return _bpf(_BPF_PROG_QUERY, struct.pack("<IIIIQI", fd, _BPF_CGROUP_DEVICE, 0, 0, 0, 0))
    finally:
        os.close(fd)


def confine(cgroup: Path) -> None:
    """Attach the device program to ``cgroup`` (a directory of the unified hierarchy),
    unless one is attached already: every process in it and below may then use only
    ``ALLOWED_CHAR_DEVICES``. Raises DevicePolicyError if the kernel refuses."""
    if attached(cgroup):
        return
    prog = _load()
    try:
        fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
        try:
            _bpf(_BPF_PROG_ATTACH, struct.pack("<IIII", fd, prog, _BPF_CGROUP_DEVICE,
                                               _BPF_F_ALLOW_MULTI))
        finally:
            os.close(fd)
    finally:
        with contextlib.suppress(OSError):
            os.close(prog)  # the attachment keeps the program
