#!/usr/bin/env python3
"""Seed inputs for the `server` fuzz target that reach device 1.1's rings
and profile records (Documentation/hw/npu-hw.rst), written to
fuzz/corpus/server/ under their SHA-1 as libFuzzer names them.

The byte format is fuzz/src/server.rs's: an op selector byte (mod 10), then
that op's fields, little endian. Run from anywhere: python3 gen-server-seeds.py
"""
import hashlib
import os
import struct

RAM = 0x40000


def dma_map(flags, file_off, bus, size):
    # op 3: flags u32, offset (selector 3: u64), addr, addr (selector 0:
    # u8 << 12), then a byte whose bit 0 clear means "with the memfd".
    assert bus % 4096 == 0 and size % 4096 == 0 and bus >> 12 < 256 and size >> 12 < 256
    return bytes([3]) + struct.pack("<I", flags) + bytes([3]) + struct.pack("<Q", file_off) \
        + bytes([0, bus >> 12, 0, size >> 12, 0])


def ram(off, data):
    # op 7: offset u16 * 4, length u8, bytes.
    out = b""
    while data:
        chunk, data = data[:255], data[255:]
        assert off % 4 == 0
        out += bytes([7]) + struct.pack("<HB", off // 4, len(chunk)) + chunk
        off += len(chunk)
    return out


def reg(offset, value):
    # op 9: any BAR0 offset u16, value u32.
    return bytes([9]) + struct.pack("<HI", offset, value)


def wait():
    return bytes([8])


def reset():
    return bytes([6])


def ring_reg(n, r):
    return 0x200 + 0x20 * n + r


SQ_BASE, SQ_SIZE, DOORBELL = 0x00, 0x08, 0x14
CONTROL, IRQ_MASK, CQ_BASE_LO, CQ_SIZE, CTX_LO, SHADOW_LO = 0x20, 0x34, 0x58, 0x60, 0x70, 0x78


def entry(seqno, va, size, flags, profile, ctx=0):
    return struct.pack("<QQIHHQ", seqno, va, size, ctx, flags, profile) + bytes(32)


def page_tables():
    # Context 0: table at 0x4000 -> L2 0x5000 -> L1 0x6000 -> L0 0x7000;
    # VA 0x1000 -> the command page 0x8000 (READ).
    return (ram(0x4000, struct.pack("<QQ", 0x5000 | 1, 0))
            + ram(0x5000, struct.pack("<Q", 0x6000 | 1))
            + ram(0x6000, struct.pack("<Q", 0x7000 | 1))
            + ram(0x7008, struct.pack("<Q", 0x8000 | 3))
            # NOP, END
            + ram(0x8000, bytes(64) + struct.pack("<I", 1) + bytes(60)))


def rings(shadow=0):
    # Ring 0 at 0x1000, ring 3 at 0x2000, ring 1 at 0xa000 (2 entries
    # each), completion ring at 0x3000 (4 entries).
    return (reg(0x40, 0x1000) + reg(0x48, 2)
            + reg(ring_reg(3, SQ_BASE), 0x2000) + reg(ring_reg(3, SQ_SIZE), 2)
            + reg(ring_reg(1, SQ_BASE), 0xa000) + reg(ring_reg(1, SQ_SIZE), 2)
            + reg(CQ_BASE_LO, 0x3000) + reg(CQ_SIZE, 4) + reg(CTX_LO, 0x4000)
            + reg(SHADOW_LO, shadow) + reg(IRQ_MASK, 0x3f))


def seeds():
    rw = dma_map(3, 0, 0, RAM)
    setup = rw + page_tables() + rings()
    # A profiled job on ring 3 and a plain one on ring 0, queued before
    # ENABLE; then one more on ring 1.
    jobs = (ram(0x2000, entry(3, 0x1000, 128, 1, 0x9000))
            + ram(0x1000, entry(1, 0x1000, 128, 0, 0))
            + reg(ring_reg(3, DOORBELL), 1) + reg(0x54, 1))
    yield setup + jobs + reg(CONTROL, 1) + wait() \
        + ram(0xa000, entry(5, 0x1000, 128, 1, 0x9040)) + reg(ring_reg(1, DOORBELL), 1) + wait()
    # A profile record outside host memory: the device halts; reset.
    yield setup + ram(0x2000, entry(3, 0x1000, 128, 1, RAM)) + reg(ring_reg(3, DOORBELL), 1) \
        + reg(CONTROL, 1) + wait() + reset() + reg(CONTROL, 1) + wait()
    # Bad profile fields: misaligned, an address without PROFILE, unknown flag.
    yield setup + ram(0x2000, entry(3, 0x1000, 128, 1, 0x9008) + entry(4, 0x1000, 128, 0, 0x9000)) \
        + ram(0x1000, entry(1, 0x1000, 128, 3, 0x9000)) \
        + reg(ring_reg(3, DOORBELL), 2) + reg(0x54, 1) + reg(CONTROL, 1) + wait()
    # The record in a read-only region: bus 0..0x20000 read-write, the rest
    # read only; the record at 0x30000.
    ro = dma_map(3, 0, 0, 0x20000) + dma_map(1, 0x20000, 0x20000, 0x20000)
    yield ro + page_tables() + rings() + ram(0x2000, entry(3, 0x1000, 128, 1, 0x30000)) \
        + reg(ring_reg(3, DOORBELL), 1) + reg(CONTROL, 1) + wait()
    # Ring programming faults: ring 2 with size 3 halts ENABLE; doorbells
    # beyond the rules on every ring; a reset clears all rings.
    yield setup + reg(ring_reg(2, SQ_SIZE), 3) + reg(CONTROL, 1) + reset() \
        + reg(ring_reg(2, SQ_SIZE), 0) + reg(CONTROL, 1) \
        + reg(ring_reg(1, DOORBELL), 3) + reg(ring_reg(2, DOORBELL), 1) \
        + reg(ring_reg(3, DOORBELL), 0xffffffff) + reg(0x214, 7) + wait() + reset()
    # The shadow page at 0xb000 with ring tails in their words (ring 3's
    # at 0x28), no doorbells: the CP takes them when it looks for work.
    yield rw + page_tables() + rings(shadow=0xb000) \
        + ram(0x2000, entry(3, 0x1000, 128, 1, 0x9000)) + ram(0x1000, entry(1, 0x1000, 128, 0, 0)) \
        + ram(0xb000, struct.pack("<IIII", 1, 0, 0, 0) + bytes(0x18) + struct.pack("<II", 1, 0)) \
        + reg(CONTROL, 1) + wait() + reg(0x54, 1) + wait()


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "server")
    for s in seeds():
        name = hashlib.sha1(s).hexdigest()
        with open(os.path.join(out, name), "wb") as f:
            f.write(s)
        print(name, len(s))


if __name__ == "__main__":
    main()
