#!/usr/bin/env python3
"""badtarget.py - a small iSCSI target that misbehaves on purpose.

    badtarget.py [OPTIONS] --lun 1=/path/to/img[,bs=512][,thin][,ro][,serial=X] ...

It speaks enough of RFC 7143 for libiscsi 1.19 (and other initiators) to discover,
log in (no authentication) and do I/O, serves LUNs from backing files or memory, and
can be told to break one rule at a time (--misbehave NAME[:ARG][,SCOPE...]) so that
the tests of iscsifs can prove what a correct initiator does with a broken or hostile
target. Standard library only. tests/target/README.md documents every option and
every misbehaviour; `badtarget.py --help` lists them.

Structure (one class per concern):
    Crc32c          header digest
    Pdu             one PDU: the 48-byte header fields, the data segment, encoding
    Wire            a connection's socket: exact reads, locked writes, digests
    Backing*        where a LUN's bytes live (a file or sparse memory)
    LogicalUnit     one LUN: address, geometry, identity, thin provisioning
    Sense / Result  the outcome of a SCSI command
    ScsiExecutor    CDB -> Result for every command we implement
    Misbehaviour    one --misbehave: its name, argument and scope
    Misbehaviours   all of them, the on/off switch, the questions the target asks
    Counters        what happened, dumped as JSON for the tests
    Negotiator      login key negotiation
    Connection      one TCP connection: login, full feature phase, Data-In shaping
    NopFlood        the thread of the nop-flood misbehaviour
    Target          listening socket, signals, the counters file
"""

import argparse
import ctypes
import ctypes.util
import errno
import json
import os
import random
import signal
import socket
import struct
import sys
import threading
import time

PROG = "badtarget"


def log(msg):
    """One line on stderr, with a timestamp (the tests keep it in $T)."""
    sys.stderr.write("%s %s: %s\n" % (time.strftime("%H:%M:%S"), PROG, msg))
    sys.stderr.flush()


def parse_number(text):
    """An integer from the command line: 123, 0x7b, 2^55, 2^55-1, 2**63, 64K, 1M, 2P."""
    t = text.strip().replace("**", "^")
    suffixes = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
    if t and t[-1].upper() in suffixes and t[:-1].isdigit():
        return int(t[:-1]) * suffixes[t[-1].upper()]
    for sign in ("-", "+"):
        head, sep, tail = t.rpartition(sign)
        if sep and head and "^" in head:
            base = parse_number(head)
            return base - int(tail, 0) if sign == "-" else base + int(tail, 0)
    if "^" in t:
        base, _, exp = t.partition("^")
        return int(base, 0) ** int(exp, 0)
    return int(t, 0)


# ----------------------------------------------------------------------------- digest


class Crc32c:
    """CRC32C (Castagnoli), as iSCSI header digests use it; appended little-endian."""

    _table = None

    @classmethod
    def table(cls):
        if cls._table is None:
            t = []
            for i in range(256):
                c = i
                for _ in range(8):
                    c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
                t.append(c)
            cls._table = t
        return cls._table

    @classmethod
    def compute(cls, data):
        t = cls.table()
        crc = 0xFFFFFFFF
        for b in data:
            crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
        return crc ^ 0xFFFFFFFF


assert Crc32c.compute(b"123456789") == 0xE3069283


# -------------------------------------------------------------------------------- PDU

# Initiator opcodes
OP_NOP_OUT, OP_SCSI_CMD, OP_TMF_REQ, OP_LOGIN_REQ = 0x00, 0x01, 0x02, 0x03
OP_TEXT_REQ, OP_DATA_OUT, OP_LOGOUT_REQ, OP_SNACK = 0x04, 0x05, 0x06, 0x10
# Target opcodes
OP_NOP_IN, OP_SCSI_RSP, OP_TMF_RSP, OP_LOGIN_RSP = 0x20, 0x21, 0x22, 0x23
OP_TEXT_RSP, OP_DATA_IN, OP_LOGOUT_RSP, OP_R2T, OP_REJECT = 0x24, 0x25, 0x26, 0x31, 0x3F

RESERVED_TAG = 0xFFFFFFFF


class Pdu:
    """One iSCSI PDU: a 48-byte basic header segment (kept as a bytearray and read or
    written through named fields) and a data segment. AHS is not supported (nobody
    sends it to a disk target; a PDU with AHS is rejected)."""

    def __init__(self, header=None, data=b""):
        self.bhs = bytearray(header) if header is not None else bytearray(48)
        self.data = data

    # generic fields
    opcode = property(lambda s: s.bhs[0] & 0x3F)
    immediate = property(lambda s: bool(s.bhs[0] & 0x40))
    flags = property(lambda s: s.bhs[1])
    ahs_len = property(lambda s: s.bhs[4] * 4)
    data_len = property(lambda s: int.from_bytes(s.bhs[5:8], "big"))
    lun_bytes = property(lambda s: bytes(s.bhs[8:16]))
    itt = property(lambda s: s.u32(16))

    def u32(self, off):
        return int.from_bytes(self.bhs[off:off + 4], "big")

    def set_u32(self, off, v):
        self.bhs[off:off + 4] = (v & 0xFFFFFFFF).to_bytes(4, "big")

    def set_u16(self, off, v):
        self.bhs[off:off + 2] = (v & 0xFFFF).to_bytes(2, "big")

    @classmethod
    def new(cls, opcode, flags, itt, data=b""):
        p = cls()
        p.bhs[0] = opcode
        p.bhs[1] = flags
        p.set_u32(16, itt)
        p.data = data
        return p

    def encode(self, digest):
        """The bytes on the wire: header (+ CRC32C), data, padding to 4 bytes."""
        self.bhs[5:8] = len(self.data).to_bytes(3, "big")
        parts = [bytes(self.bhs)]
        if digest:
            parts.append(struct.pack("<I", Crc32c.compute(self.bhs)))
        if self.data:
            parts.append(bytes(self.data))
            pad = -len(self.data) % 4
            if pad:
                parts.append(b"\0" * pad)
        return b"".join(parts)


def parse_text_keys(data):
    """Login/Text data: NUL-separated key=value pairs -> list of (key, value)."""
    out = []
    for item in bytes(data).split(b"\0"):
        if not item:
            continue
        k, _, v = item.decode("utf-8", "replace").partition("=")
        out.append((k, v))
    return out


def encode_text_keys(pairs):
    return b"".join(("%s=%s" % kv).encode() + b"\0" for kv in pairs)


# ------------------------------------------------------------------------------- wire


class ConnectionClosed(Exception):
    pass


class Wire:
    """A connection's socket. The receive side is used by the connection's own thread
    only; sends come from several threads (the connection, the NOP timer, the flood)
    and go through one lock. A sender marked urgent (answers to commands) makes the
    flood thread step aside while it waits, so the flood never starves answers."""

    def __init__(self, sock):
        self.sock = sock
        self.lock = threading.Lock()
        self.urgent_lock = threading.Lock()
        self.urgent_waiting = 0  # protected by urgent_lock
        self.digest = False  # header digest, switched on after login
        self.closed = False

    def recv_exact(self, n):
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            try:
                k = self.sock.recv_into(view[got:], n - got)
            except OSError as e:
                raise ConnectionClosed("recv: %s" % e)
            if k == 0:
                raise ConnectionClosed("closed by the initiator")
            got += k
        return buf

    def read_pdu(self):
        hdr = self.recv_exact(48)
        p = Pdu(hdr)
        if p.ahs_len:
            self.recv_exact(p.ahs_len)
        if self.digest:
            crc = struct.unpack("<I", bytes(self.recv_exact(4)))[0]
            if crc != Crc32c.compute(hdr):
                raise ConnectionClosed("header digest mismatch")
        n = p.data_len
        if n:
            p.data = self.recv_exact(n + (-n % 4))[:n]
        return p

    def send(self, pdu, urgent=True):
        self.send_raw(pdu.encode(self.digest), urgent)

    def _count_urgent(self, delta):
        with self.urgent_lock:
            self.urgent_waiting += delta

    def send_raw(self, raw, urgent=True):
        """Send bytes under the lock. `urgent` senders are counted while they wait, so
        the flood thread (urgent=False) can let them go first."""
        if urgent:
            self._count_urgent(+1)
        try:
            with self.lock:
                if urgent:
                    self._count_urgent(-1)
                    urgent = False
                self.sock.sendall(raw)
        except OSError as e:
            raise ConnectionClosed("send: %s" % e)
        finally:
            if urgent:  # the lock was never taken
                self._count_urgent(-1)

    def close(self):
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


# ---------------------------------------------------------------------------- backing


class _Libc:
    """fallocate(PUNCH_HOLE) through ctypes, so UNMAP leaves holes in sparse files
    (GET LBA STATUS then reads the holes back with SEEK_DATA/SEEK_HOLE)."""

    FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 0x01, 0x02
    _fn = None

    @classmethod
    def punch(cls, fd, off, length):
        if cls._fn is None:
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
                fn = libc.fallocate
                fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
                cls._fn = fn
            except (OSError, AttributeError):
                cls._fn = False
        if cls._fn:
            flags = cls.FALLOC_FL_KEEP_SIZE | cls.FALLOC_FL_PUNCH_HOLE
            if cls._fn(fd, flags, off, length) == 0:
                return True
        return False


class BackingFile:
    """A LUN's bytes in a file (sparse files are fine). Reads past the end of the file
    return zeros (a capacity misbehaviour can report more than the file holds)."""

    def __init__(self, path, readonly):
        self.path = path
        self.fd = os.open(path, os.O_RDONLY if readonly else os.O_RDWR)
        self.size = os.fstat(self.fd).st_size

    def read(self, off, n):
        data = os.pread(self.fd, n, off) if off < self.size else b""
        if len(data) < n:
            data += bytes(n - len(data))
        return data

    def write(self, off, data):
        os.pwrite(self.fd, data, off)

    def punch(self, off, n):
        if not _Libc.punch(self.fd, off, n):
            self.write(off, bytes(n))

    def is_mapped(self, off):
        """(mapped, length of the extent from off) using SEEK_DATA/SEEK_HOLE."""
        try:
            data = os.lseek(self.fd, off, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:
                return False, self.size - off
            return True, self.size - off
        if data > off:
            return False, data - off
        hole = os.lseek(self.fd, off, os.SEEK_HOLE)
        return True, hole - off


class BackingMemory:
    """A sparse in-memory LUN (for --luns-count and tiny test LUNs): 4 KiB pages
    allocated on first write."""

    PAGE = 4096

    def __init__(self, size):
        self.size = size
        self.pages = {}

    def read(self, off, n):
        out = bytearray(n)
        pos = 0
        while pos < n:
            pno, poff = divmod(off + pos, self.PAGE)
            k = min(self.PAGE - poff, n - pos)
            page = self.pages.get(pno)
            if page is not None:
                out[pos:pos + k] = page[poff:poff + k]
            pos += k
        return bytes(out)

    def write(self, off, data):
        pos = 0
        n = len(data)
        while pos < n:
            pno, poff = divmod(off + pos, self.PAGE)
            k = min(self.PAGE - poff, n - pos)
            page = self.pages.setdefault(pno, bytearray(self.PAGE))
            page[poff:poff + k] = data[pos:pos + k]
            pos += k

    def punch(self, off, n):
        self.write(off, bytes(n))
        for pno in range((off + self.PAGE - 1) // self.PAGE, (off + n) // self.PAGE):
            self.pages.pop(pno, None)

    def is_mapped(self, off):
        pno = off // self.PAGE
        mapped = pno in self.pages
        end = pno + 1
        while end * self.PAGE < self.size and (end in self.pages) == mapped:
            end += 1
        return mapped, min(end * self.PAGE, self.size) - off


# -------------------------------------------------------------------------------- LUN


def lun_address(number):
    """The 8-byte SAM LUN field for a LUN number: peripheral device addressing below
    256, flat space addressing up to 16383 (what Linux and tgt do)."""
    if number < 256:
        return bytes([0, number]) + bytes(6)
    if number < 16384:
        return bytes([0x40 | (number >> 8), number & 0xFF]) + bytes(6)
    raise ValueError("LUN number %d too large (max 16383)" % number)


class LogicalUnit:
    """One LUN: its 8-byte address (as REPORT LUNS gives it), geometry, identity and
    thin provisioning parameters. The bytes live in a Backing*."""

    def __init__(self, address, backing, block_size=512, thin=False, readonly=False,
                 serial=None, number=None, max_unmap=0xFFFFFFFF, lbprz=True):
        self.address = bytes(address)
        self.number = number
        self.backing = backing
        self.block_size = block_size
        self.nblocks = backing.size // block_size
        self.thin = thin
        self.readonly = readonly
        self.serial = serial or "BT" + self.address.hex().upper()
        self.max_unmap = max_unmap
        self.lbprz = lbprz
        self.lock = threading.Lock()  # serialises data access across connections

    def name(self):
        if self.number is not None:
            return str(self.number)
        return self.address.hex()

    @classmethod
    def from_spec(cls, spec):
        """--lun N=PATH[,bs=B][,thin][,ro][,serial=S][,max_unmap=N][,size=SIZE]
        --lun N=mem:SIZE[,...]   (in memory)
        --lun 0xHHHHHHHHHHHHHHHH=PATH[,...]   (raw 8-byte address)"""
        key, _, rest = spec.partition("=")
        parts = rest.split(",")
        target, opts = parts[0], {}
        for o in parts[1:]:
            k, _, v = o.partition("=")
            opts[k] = v
        known = {"bs", "thin", "ro", "serial", "max_unmap", "size", "lbprz"}
        bad = set(opts) - known
        if bad:
            raise ValueError("--lun %s: unknown option(s) %s" % (spec, ", ".join(sorted(bad))))
        if key.lower().startswith("0x") and len(key) == 18:
            address, number = bytes.fromhex(key[2:]), None
        else:
            number = int(key, 0)
            address = lun_address(number)
        ro = "ro" in opts
        if target.startswith("mem:"):
            backing = BackingMemory(parse_number(target[4:]))
        else:
            backing = BackingFile(target, ro)
            if "size" in opts:
                backing.size = parse_number(opts["size"])
        return cls(address, backing, block_size=int(opts.get("bs", "512"), 0),
                   thin="thin" in opts, readonly=ro, serial=opts.get("serial"),
                   number=number,
                   max_unmap=parse_number(opts.get("max_unmap", "0xffffffff")),
                   lbprz=opts.get("lbprz", "1") != "0")

    def naa(self, serial=None):
        """A stable NAA 6 (IEEE registered extended) designator from the serial."""
        serial = serial or self.serial
        h = Crc32c.compute(serial.encode())
        h2 = Crc32c.compute(serial.encode()[::-1] + b"x")
        return bytes([0x60, 0x01, 0x40, 0x5b]) + struct.pack(">IQ", h, h2)[:12]


# ------------------------------------------------------------------------ SCSI results

GOOD, CHECK_CONDITION = 0x00, 0x02
KEY_NO_SENSE, KEY_NOT_READY, KEY_MEDIUM_ERROR, KEY_HARDWARE_ERROR = 0x0, 0x2, 0x3, 0x4
KEY_ILLEGAL_REQUEST, KEY_UNIT_ATTENTION, KEY_DATA_PROTECT = 0x5, 0x6, 0x7


class Sense:
    """Fixed-format sense data (SPC-4 4.5.3), 18 bytes."""

    @staticmethod
    def fixed(key, asc=0, ascq=0, response_code=0x70):
        s = bytearray(18)
        s[0] = response_code
        s[2] = key & 0x0F
        s[7] = 10  # additional sense length
        s[12] = asc
        s[13] = ascq
        return bytes(s)


def illegal(asc, ascq=0):
    return Result(CHECK_CONDITION, sense=Sense.fixed(KEY_ILLEGAL_REQUEST, asc, ascq))


INVALID_OPCODE = (0x20, 0x00)
INVALID_FIELD_IN_CDB = (0x24, 0x00)
INVALID_FIELD_IN_PARAMETER_LIST = (0x26, 0x00)
LBA_OUT_OF_RANGE = (0x21, 0x00)
LUN_NOT_SUPPORTED = (0x25, 0x00)
WRITE_PROTECTED = (0x27, 0x00)


class Result:
    """What a SCSI command produced: status, Data-In bytes (already cut to the
    allocation length), sense for CHECK CONDITION."""

    def __init__(self, status=GOOD, data=b"", sense=b""):
        self.status = status
        self.data = data
        self.sense = sense


# ------------------------------------------------------------------------ SCSI commands

OPCODE_NAMES = {
    0x00: "TEST UNIT READY", 0x03: "REQUEST SENSE", 0x08: "READ(6)", 0x0A: "WRITE(6)",
    0x12: "INQUIRY", 0x1A: "MODE SENSE(6)", 0x25: "READ CAPACITY(10)", 0x28: "READ(10)",
    0x2A: "WRITE(10)", 0x35: "SYNCHRONIZE CACHE(10)", 0x41: "WRITE SAME(10)", 0x42: "UNMAP",
    0x5A: "MODE SENSE(10)", 0x88: "READ(16)", 0x8A: "WRITE(16)", 0x91: "SYNCHRONIZE CACHE(16)",
    0x93: "WRITE SAME(16)", 0x9E: "SERVICE ACTION IN(16)", 0xA0: "REPORT LUNS",
    0xA8: "READ(12)", 0xAA: "WRITE(12)",
}



def command_name(cdb):
    """READ(10), READ CAPACITY(16), GET LBA STATUS, 0x4d, ..."""
    op = cdb[0]
    name = OPCODE_NAMES.get(op, "0x%02x" % op)
    if op == 0x9E:
        name = {0x10: "READ CAPACITY(16)", 0x12: "GET LBA STATUS"}.get(cdb[1] & 0x1F, name)
    return name


READ_OPS = (0x08, 0x28, 0x88, 0xA8)
WRITE_OPS = (0x0A, 0x2A, 0x8A, 0xAA)


def cdb_lba_len(cdb):
    """(lba, nblocks) of a READ/WRITE/WRITE SAME/SYNCHRONIZE CACHE CDB, else None."""
    op = cdb[0]
    if op in (0x08, 0x0A):
        n = cdb[4] or 256
        return int.from_bytes(cdb[1:4], "big") & 0x1FFFFF, n
    if op in (0x28, 0x2A, 0x35, 0x41):
        return int.from_bytes(cdb[2:6], "big"), int.from_bytes(cdb[7:9], "big")
    if op in (0xA8, 0xAA):
        return int.from_bytes(cdb[2:6], "big"), int.from_bytes(cdb[6:10], "big")
    if op in (0x88, 0x8A, 0x91, 0x93):
        return int.from_bytes(cdb[2:10], "big"), int.from_bytes(cdb[10:14], "big")
    return None


class ScsiExecutor:
    """Turns a CDB (and its Data-Out bytes) into a Result for one LUN. Capacity and
    VPD answers consult the misbehaviours (they are data, not protocol)."""

    def __init__(self, target):
        self.target = target
        self.mis = target.misbehaviours
        self.counters = target.counters

    def execute(self, lun_field, cdb, data_out, alloc):
        """Run one command. `alloc` is the initiator's expected Data-In length."""
        op = cdb[0]
        if op == 0xA0:
            return self.report_luns(cdb)
        lun = self.target.lun_by_address(lun_field)
        if lun is None:
            if op == 0x12:
                return self.inquiry_absent(cdb)
            if op == 0x03:
                return Result(data=Sense.fixed(KEY_ILLEGAL_REQUEST, *LUN_NOT_SUPPORTED)[:cdb[4]])
            return illegal(*LUN_NOT_SUPPORTED)
        handler = {
            0x00: lambda: Result(),
            0x03: lambda: Result(data=Sense.fixed(KEY_NO_SENSE)[:cdb[4]]),
            0x12: lambda: self.inquiry(lun, cdb),
            0x1A: lambda: self.mode_sense(lun, cdb, six=True),
            0x5A: lambda: self.mode_sense(lun, cdb, six=False),
            0x25: lambda: self.read_capacity10(lun),
            0x9E: lambda: self.service_action_in(lun, cdb),
            0x35: lambda: self.sync_cache(lun, cdb),
            0x91: lambda: self.sync_cache(lun, cdb),
            0x42: lambda: self.unmap(lun, cdb, data_out),
            0x93: lambda: self.write_same(lun, cdb, data_out),
            0x41: lambda: self.write_same(lun, cdb, data_out),
        }.get(op)
        if handler is not None:
            return handler()
        if op in READ_OPS:
            return self.read(lun, cdb)
        if op in WRITE_OPS:
            return self.write(lun, cdb, data_out)
        return illegal(*INVALID_OPCODE)

    # ----- discovery

    def report_luns(self, cdb):
        alloc = int.from_bytes(cdb[6:10], "big")
        entries = [lun.address for lun in self.target.luns]
        copies = self.mis.report_luns_copies()
        if copies > 1:
            entries = [a for a in entries for _ in range(copies)]
        body = b"".join(entries)
        data = struct.pack(">II", len(body), 0) + body
        return Result(data=data[:alloc])

    def inquiry_absent(self, cdb):
        if cdb[1] & 1:
            return illegal(*LUN_NOT_SUPPORTED)
        data = bytearray(36)
        data[0] = 0x7F  # qualifier 3, type 0x1f: no LUN here
        data[2], data[3], data[4] = 6, 2, 31
        return Result(data=bytes(data[:int.from_bytes(cdb[3:5], "big")]))

    def inquiry(self, lun, cdb):
        alloc = int.from_bytes(cdb[3:5], "big")
        if not cdb[1] & 1:
            if cdb[2]:
                return illegal(*INVALID_FIELD_IN_CDB)
            d = bytearray(96)
            d[0] = 0x00  # connected, direct access block device
            d[2] = 0x06  # SPC-4
            d[3] = 0x02  # response data format 2
            d[4] = len(d) - 5
            d[7] = 0x02  # CmdQue
            d[8:16] = b"BADTGT  "
            d[16:32] = b"badtarget disk  "
            d[32:36] = b"0001"
            return Result(data=bytes(d[:alloc]))
        page = cdb[2]
        pages = [0x00, 0x80, 0x83, 0xB0, 0xB2]
        serial = lun.serial
        if page in (0x80, 0x83):
            m = self.mis.pick(("serial",), cdb, lun)
            serial = m.raw_arg if m else serial
        if page == 0x00:
            body = bytes(pages)
        elif page == 0x80:
            body = serial.encode()
        elif page == 0x83:
            naa = lun.naa(serial)
            t10 = b"BADTGT  " + serial.encode()
            body = bytes([0x01, 0x03, 0, len(naa)]) + naa + bytes([0x02, 0x01, 0, len(t10)]) + t10
        elif page == 0xB0:
            b = bytearray(60)
            b[4:8] = struct.pack(">I", 0)  # max transfer length: no limit
            b[8:12] = struct.pack(">I", 128)  # optimal transfer length
            if lun.thin:
                max_unmap = self.mis.max_unmap(lun)
                b[16:20] = struct.pack(">I", max_unmap)
                b[20:24] = struct.pack(">I", 64)  # max unmap block descriptors
                b[24:28] = struct.pack(">I", 1)  # optimal unmap granularity
            b[32:40] = struct.pack(">Q", 0x10000)  # max write same length
            body = bytes(b)
        elif page == 0xB2:
            b = bytearray(4)
            if lun.thin:
                b[1] = 0x80 | 0x40 | (0x04 if lun.lbprz else 0)  # LBPU, LBPWS, LBPRZ
                b[2] = 0x02  # thin provisioned
            body = bytes(b)
        else:
            return illegal(*INVALID_FIELD_IN_CDB)
        d = bytes([0, page]) + struct.pack(">H", len(body)) + body
        return Result(data=d[:alloc])

    def mode_sense(self, lun, cdb, six):
        page = cdb[2] & 0x3F
        if page not in (0x3F, 0x08, 0x0A):
            return illegal(*INVALID_FIELD_IN_CDB)
        pages = b""
        if page in (0x3F, 0x08):
            caching = bytearray(20)
            caching[0], caching[1], caching[2] = 0x08, 18, 0x04  # WCE
            pages += caching
        if page in (0x3F, 0x0A):
            control = bytearray(12)
            control[0], control[1] = 0x0A, 10
            pages += control
        wp = 0x80 if (lun.readonly or self.mis.write_protect(lun)) else 0
        if six:
            hdr = bytes([3 + len(pages), 0, wp, 0])
            alloc = cdb[4]
        else:
            hdr = struct.pack(">HBBBBH", 6 + len(pages), 0, wp, 0, 0, 0)
            alloc = int.from_bytes(cdb[7:9], "big")
        return Result(data=(hdr + pages)[:alloc])

    def read_capacity10(self, lun):
        override = self.mis.capacity10(lun)
        last = lun.nblocks - 1 if override is None else override
        return Result(data=struct.pack(">II", min(last, 0xFFFFFFFF), lun.block_size))

    def service_action_in(self, lun, cdb):
        sa = cdb[1] & 0x1F
        alloc = int.from_bytes(cdb[10:14], "big")
        if sa == 0x10:
            if self.mis.rc16_unsupported(lun):
                return illegal(*INVALID_OPCODE)
            last, bs = lun.nblocks - 1, lun.block_size
            override = self.mis.capacity16(lun)
            if override is not None:
                last, bs = override[0], override[1] or bs
            d = bytearray(32)
            d[0:8] = struct.pack(">Q", last & 0xFFFFFFFFFFFFFFFF)
            d[8:12] = struct.pack(">I", bs)
            if lun.thin:
                d[14] = 0x80 | (0x40 if lun.lbprz else 0)
            return Result(data=bytes(d[:alloc]))
        if sa == 0x12:
            return self.get_lba_status(lun, cdb, alloc)
        return illegal(*INVALID_FIELD_IN_CDB)

    # ----- data

    def _range_ok(self, lun, lba, n):
        return lba + n <= lun.nblocks

    def read(self, lun, cdb):
        lba, n = cdb_lba_len(cdb)
        if not self._range_ok(lun, lba, n):
            return illegal(*LBA_OUT_OF_RANGE)
        with lun.lock:
            data = lun.backing.read(lba * lun.block_size, n * lun.block_size)
        self.counters.add_read(lun, len(data))
        return Result(data=data)

    def write(self, lun, cdb, data_out):
        lba, n = cdb_lba_len(cdb)
        if lun.readonly or self.mis.write_protect(lun):
            return Result(CHECK_CONDITION, sense=Sense.fixed(KEY_DATA_PROTECT, *WRITE_PROTECTED))
        if not self._range_ok(lun, lba, n):
            return illegal(*LBA_OUT_OF_RANGE)
        want = n * lun.block_size
        if len(data_out) < want:
            # the initiator sent less than the CDB says: refuse rather than guess
            return illegal(*INVALID_FIELD_IN_CDB)
        try:
            with lun.lock:
                lun.backing.write(lba * lun.block_size, bytes(data_out[:want]))
        except OSError as e:  # e.g. EFBIG past what the backing file system holds
            log("WRITE at LBA %d of LUN %s: %s: answering MEDIUM ERROR" % (lba, lun.name(), e))
            return Result(CHECK_CONDITION, sense=Sense.fixed(KEY_MEDIUM_ERROR, 0x0C, 0x00))
        self.counters.add_write(lun, want)
        return Result()

    def sync_cache(self, lun, cdb):
        lba, n = cdb_lba_len(cdb)
        if n and not self._range_ok(lun, lba, n):
            return illegal(*LBA_OUT_OF_RANGE)
        return Result()

    def unmap(self, lun, cdb, param):
        if not lun.thin:
            return illegal(*INVALID_OPCODE)
        if lun.readonly:
            return Result(CHECK_CONDITION, sense=Sense.fixed(KEY_DATA_PROTECT, *WRITE_PROTECTED))
        if len(param) < 8:
            return Result() if len(param) == 0 else illegal(*INVALID_FIELD_IN_PARAMETER_LIST)
        desc_len = int.from_bytes(param[2:4], "big")
        descs = []
        for off in range(8, min(8 + desc_len, len(param)) - 15, 16):
            lba = int.from_bytes(param[off:off + 8], "big")
            n = int.from_bytes(param[off + 8:off + 12], "big")
            if n > self.mis.max_unmap(lun) or len(descs) >= 64:
                return illegal(*INVALID_FIELD_IN_PARAMETER_LIST)
            if not self._range_ok(lun, lba, n):
                return illegal(*LBA_OUT_OF_RANGE)
            descs.append((lba, n))
        with lun.lock:
            for lba, n in descs:
                if n:
                    lun.backing.punch(lba * lun.block_size, n * lun.block_size)
        self.counters.add_unmap(lun, sum(n for _, n in descs))
        return Result()

    def write_same(self, lun, cdb, data_out):
        lba, n = cdb_lba_len(cdb)
        unmap = bool(cdb[1] & 0x08)
        if lun.readonly or self.mis.write_protect(lun):
            return Result(CHECK_CONDITION, sense=Sense.fixed(KEY_DATA_PROTECT, *WRITE_PROTECTED))
        if n == 0 or n > 0x10000 * 16:
            return illegal(*INVALID_FIELD_IN_CDB)
        if not self._range_ok(lun, lba, n):
            return illegal(*LBA_OUT_OF_RANGE)
        block = bytes(data_out[:lun.block_size])
        if len(block) < lun.block_size:
            return illegal(*INVALID_FIELD_IN_CDB)
        with lun.lock:
            if unmap and lun.thin and block == bytes(lun.block_size):
                lun.backing.punch(lba * lun.block_size, n * lun.block_size)
                self.counters.add_unmap(lun, n)
            else:
                step = max(1, (1 << 20) // lun.block_size)
                for first in range(lba, lba + n, step):
                    k = min(step, lba + n - first)
                    lun.backing.write(first * lun.block_size, block * k)
                self.counters.add_write(lun, n * lun.block_size)
        return Result()

    def get_lba_status(self, lun, cdb, alloc):
        lba = int.from_bytes(cdb[2:10], "big")
        if lba >= lun.nblocks:
            return illegal(*LBA_OUT_OF_RANGE)
        descs = b""
        pos = lba
        while pos < lun.nblocks and len(descs) < 16 * 8:
            with lun.lock:
                mapped, length = lun.backing.is_mapped(pos * lun.block_size)
            nblk = max(1, min(length // lun.block_size, lun.nblocks - pos, 0xFFFFFFFF))
            descs += struct.pack(">QIB3x", pos, nblk, 0 if mapped or not lun.thin else 1)
            pos += nblk
        data = struct.pack(">I4x", 4 + len(descs)) + descs
        return Result(data=data[:alloc])


# -------------------------------------------------------------------------- misbehaviour

# Op scopes. SERVICE ACTION IN(16) commands are told apart by service action: the
# pseudo-opcodes 0x9e10 (READ CAPACITY(16)) and 0x9e12 (GET LBA STATUS); a plain
# 0x9e means all of them.
OP_GROUPS = {
    "read": READ_OPS, "write": WRITE_OPS, "rc10": (0x25,), "rc16": (0x9E10,),
    "inquiry": (0x12,), "reportluns": (0xA0,), "tur": (0x00,), "sync": (0x35, 0x91),
    "unmap": (0x42,), "ws": (0x41, 0x93), "ws16": (0x93,), "modesense": (0x1A, 0x5A),
    "getlbastatus": (0x9E12,), "data": READ_OPS + WRITE_OPS,
}


def op_keys(cdb):
    """The scope keys a CDB matches: its opcode, and opcode<<8|service action."""
    if cdb[0] == 0x9E:
        return (0x9E, 0x9E00 | (cdb[1] & 0x1F))
    return (cdb[0],)

# name -> (default op scope or None for "any", default argument, one-line help)
MISBEHAVIOURS = {
    # section 1 of issue 9: CHECK CONDITION that must never count as success
    "nosense": ("data", None, "CHECK CONDITION, well-formed fixed sense, key NO SENSE; nothing is done"),
    "recovered": ("data", None, "CHECK CONDITION, sense key RECOVERED ERROR; nothing is done"),
    "badsense": ("data", None, "CHECK CONDITION with sense whose response code is 0 (unparseable)"),
    # section 2: Data-In that does not add up
    "datain-short": ("read", 512, "READ: Data-In carries ARG bytes fewer than asked; GOOD, no residual"),
    "datain-offset": ("read", 512, "READ: the 2nd Data-In's buffer offset is ARG too low (with the data of that lower offset)"),
    "datain-extra": ("read", 512, "READ: ARG bytes of Data-In beyond the expected length"),
    "datain-dup": ("read", None, "READ: the first Data-In PDU is sent twice (extra bytes)"),
    "datain-dup-replace": ("read", None, "READ: the first Data-In PDU is sent again instead of the last (byte count right, data wrong)"),
    "datain-datasn": ("read", 1, "READ: DataSN of Data-In after the first is ARG too high"),
    # section 5: sense that lies about its length
    "sense-short": ("data", 4, "CHECK CONDITION whose SenseLength says 18 but only ARG sense bytes follow"),
    "sense-empty": ("data", None, "CHECK CONDITION with an empty data segment (no SenseLength at all)"),
    # section 6: login answers out of range
    "login-key": (None, None, "login answer: ARG is KEY=VALUE, sent instead of our own value of KEY"),
    "login-mrdsl": (None, 0, "login answer: MaxRecvDataSegmentLength=ARG"),
    "login-maxburst": (None, 0, "login answer: MaxBurstLength=ARG"),
    "login-firstburst": (None, 1048576, "login answer: FirstBurstLength=ARG (more than MaxBurstLength)"),
    # section 7
    "nop-flood": (None, 0, "after login, unsolicited NOP-Ins (TTT=0xffffffff) as fast as the socket takes them (ARG: per second, 0 = no limit)"),
    # sections 8 and 12
    "noanswer": ("read", None, "commands in scope are never answered; NOP-Outs and the rest are"),
    "silent": (None, None, "after login nothing is answered at all (the connection stays open)"),
    "silent-login": (None, None, "the connection is accepted and nothing is ever answered, not even the login"),
    # section 9
    "unmap-max": (None, 1, "thin LUNs: VPD B0 MAXIMUM UNMAP LBA COUNT = ARG (LBPU set); larger UNMAPs are refused"),
    # section 10
    "capacity16": ("rc16", "2^64-1", "READ CAPACITY(16) returns last LBA ARG (ARG may be LBA:BLOCKSIZE)"),
    "capacity10": ("rc10", 0xFFFFFFFF, "READ CAPACITY(10) returns last LBA ARG"),
    "no-rc16": ("rc16", None, "READ CAPACITY(16) is refused with ILLEGAL REQUEST (invalid operation code)"),
    # section 11
    "reportluns-dup": ("reportluns", 3, "every REPORT LUNS entry appears ARG times"),
    # others
    "write-protect": (None, None, "MODE SENSE says write protected and WRITEs fail with DATA PROTECT"),
    "busy": ("data", None, "answer BUSY status"),
    "medium-error": ("data", None, "CHECK CONDITION MEDIUM ERROR, unrecovered read error / write fault"),
    # issue 11: a target that changes while mounted
    "unit-attention": ("read", 0x3F0E, "CHECK CONDITION UNIT ATTENTION, ASC/ASCQ ARG (0x2A09 capacity data has changed, 0x3F0E reported LUNs data has changed, 0x3F03 inquiry data has changed); the command is not carried out"),
    "serial": ("inquiry", "OTHERDISK", "VPD pages 0x80 and 0x83 name another disk: serial ARG, and the NAA designator made from it"),
}


class Misbehaviour:
    """One --misbehave NAME[:ARG][,op=OPS][,after=N][,times=N][,lba=A-B][,lun=N].

    op=     opcodes it applies to: names (read, write, rc10, rc16, ...) or hex
            opcodes, joined with '+'; 'any' for every opcode
    after=  only after N SCSI commands reached the target (counted target-wide)
    times=  at most N times, then never again
    lba=    only READ/WRITE commands touching LBAs A..B (inclusive)
    lun=    only this LUN number
    """

    def __init__(self, spec):
        head, *scopes = spec.split(",")
        name, _, arg = head.partition(":")
        if name not in MISBEHAVIOURS:
            raise ValueError("unknown misbehaviour '%s' (see --list)" % name)
        default_ops, default_arg, _ = MISBEHAVIOURS[name]
        self.name = name
        self.spec = spec
        self.raw_arg = arg if arg else (None if default_arg is None else str(default_arg))
        self.ops = None if default_ops is None else self._ops(default_ops)
        self.after = 0
        self.times = None
        self.lba = None
        self.lun = None
        self.used = 0
        for s in scopes:
            k, _, v = s.partition("=")
            if k == "op":
                self.ops = self._ops(v)
            elif k == "after":
                self.after = int(v, 0)
            elif k == "times":
                self.times = int(v, 0)
            elif k == "lba":
                a, _, b = v.partition("-")
                self.lba = (parse_number(a), parse_number(b) if b else parse_number(a))
            elif k == "lun":
                self.lun = int(v, 0)
            else:
                raise ValueError("misbehaviour %s: unknown scope '%s'" % (name, s))

    @staticmethod
    def _ops(text):
        if text == "any":
            return None
        ops = set()
        for word in text.split("+"):
            if word in OP_GROUPS:
                ops.update(OP_GROUPS[word])
            else:
                ops.add(int(word, 16) if not word.lower().startswith("0x") else int(word, 0))
        return ops

    def arg_int(self):
        return parse_number(self.raw_arg)

    def matches(self, cdb, lun, commands_seen):
        """Does this misbehaviour apply to a command (cdb may be None: not a command)?"""
        if commands_seen < self.after:
            return False
        if self.times is not None and self.used >= self.times:
            return False
        if cdb is not None:
            if self.ops is not None and not any(k in self.ops for k in op_keys(cdb)):
                return False
            if self.lba is not None:
                r = cdb_lba_len(cdb)
                if r is None or r[0] > self.lba[1] or r[0] + max(r[1], 1) - 1 < self.lba[0]:
                    return False
        if self.lun is not None and (lun is None or lun.number != self.lun):
            return False
        return True


class Misbehaviours:
    """Every --misbehave of this run, the global on/off switch (SIGUSR1, --control
    FILE, --start-off), and the questions the rest of the target asks them."""

    def __init__(self, specs, enabled, counters):
        self.items = [Misbehaviour(s) for s in specs]
        self.enabled = enabled
        self.counters = counters
        self.lock = threading.Lock()
        self.commands_seen = 0

    def set_enabled(self, on, why):
        with self.lock:
            changed = self.enabled != on
            self.enabled = on
        if changed:
            log("misbehaviour %s (%s)" % ("ON" if on else "OFF", why))
        return changed

    def command_arrived(self):
        with self.lock:
            self.commands_seen += 1

    def pick(self, names, cdb=None, lun=None, consume=True):
        """The first active misbehaviour among `names` that applies, counted as used."""
        if not self.enabled:
            return None
        with self.lock:
            for m in self.items:
                if m.name in names and m.matches(cdb, lun, self.commands_seen):
                    if consume:
                        m.used += 1
                        self.counters.misbehaved(m.name)
                        if m.used <= 3 or m.used % 1000 == 0:
                            what = "" if cdb is None else " to " + command_name(cdb)
                            log("misbehaving: %s%s (time %d)" % (m.spec, what, m.used))
                    return m
        return None

    # questions from the SCSI executor (data answers)
    def report_luns_copies(self):
        m = self.pick(("reportluns-dup",), bytes([0xA0]))
        return m.arg_int() if m else 1

    def max_unmap(self, lun):
        m = self.pick(("unmap-max",), None, lun, consume=False)
        return m.arg_int() if m else lun.max_unmap

    def capacity16(self, lun):
        m = self.pick(("capacity16",), bytes([0x9E, 0x10]), lun)
        if not m:
            return None
        lba, _, bs = m.raw_arg.partition(":")
        return parse_number(lba), (parse_number(bs) if bs else 0)

    def capacity10(self, lun):
        m = self.pick(("capacity10",), bytes([0x25]), lun)
        return m.arg_int() if m else None

    def rc16_unsupported(self, lun):
        return self.pick(("no-rc16",), bytes([0x9E, 0x10]), lun) is not None

    def write_protect(self, lun):
        return self.pick(("write-protect",), None, lun, consume=False) is not None

    def login_overrides(self):
        """KEY -> VALUE for the login answer."""
        out = {}
        if not self.enabled:
            return out
        for m in self.items:
            if m.name == "login-key":
                k, _, v = m.raw_arg.partition("=")
                out[k] = v
            elif m.name == "login-mrdsl":
                out["MaxRecvDataSegmentLength"] = m.raw_arg
            elif m.name == "login-maxburst":
                out["MaxBurstLength"] = m.raw_arg
            elif m.name == "login-firstburst":
                out["FirstBurstLength"] = m.raw_arg
        for k in out:
            self.counters.misbehaved("login-key " + k)
        return out

    def describe(self):
        return ", ".join(m.spec for m in self.items) or "none"


# ------------------------------------------------------------------------------ counters


class Counters:
    """What happened, for the tests: commands per opcode, bytes read/written/unmapped
    per LUN, NOP-Ins sent (replies, pings, flood), NOP-Outs received, logins,
    misbehaviours applied. Dumped as JSON (atomically: write + rename) with a
    sequence number that grows with every dump."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.seq = 0
        self.c = {
            "commands": {}, "commands_by_name": {}, "bytes_written": {}, "bytes_read": {},
            "blocks_unmapped": {}, "unmap_commands": 0, "nop_in_sent": 0,
            "nop_in_flood": 0, "nop_in_ping": 0, "nop_out_received": 0, "logins": 0,
            "discovery_logins": 0, "connections": 0, "misbehaved": {}, "unanswered": 0,
            "logouts": 0, "tmf": 0, "rejects": 0,
        }

    def _inc(self, key, sub=None, n=1):
        with self.lock:
            if sub is None:
                self.c[key] += n
            else:
                self.c[key][sub] = self.c[key].get(sub, 0) + n

    def command(self, cdb):
        self._inc("commands", "0x%02x" % cdb[0])
        self._inc("commands_by_name", command_name(cdb))

    def add_write(self, lun, n):
        self._inc("bytes_written", lun.name(), n)

    def add_read(self, lun, n):
        self._inc("bytes_read", lun.name(), n)

    def add_unmap(self, lun, nblocks):
        self._inc("blocks_unmapped", lun.name(), nblocks)
        self._inc("unmap_commands")

    def misbehaved(self, name):
        self._inc("misbehaved", name)

    def inc(self, key, n=1):
        self._inc(key, None, n)

    def dump(self, extra):
        if not self.path:
            return
        with self.lock:
            self.seq += 1
            doc = dict(self.c, seq=self.seq, **extra)
            text = json.dumps(doc, indent=1, sort_keys=True)
        tmp = "%s.%d.tmp" % (self.path, os.getpid())
        with open(tmp, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, self.path)


# ------------------------------------------------------------------------------ login


class LoginFailed(Exception):
    def __init__(self, status_class, detail, why):
        super().__init__(why)
        self.status_class = status_class
        self.detail = detail


class Negotiator:
    """Login key negotiation (RFC 7143 section 13). Answers every key the initiator
    offers, remembers the results the data path needs, and lets the login
    misbehaviours replace what we declare."""

    def __init__(self, opts, overrides):
        self.opts = opts
        self.overrides = overrides
        # results (what the target itself honours)
        self.session_type = "Normal"
        self.target_name = None
        self.initiator_name = None
        self.header_digest = False
        self.initiator_mrdsl = 8192  # RFC default when the initiator does not declare
        self.max_burst = 262144
        self.first_burst = 65536
        self.immediate_data = True
        self.initial_r2t = True
        self.sent_declarations = False

    def answer(self, pairs, final_stage):
        """Answer one login PDU's keys; returns the (key, value) list to send."""
        out = []
        o = self.opts
        for k, v in pairs:
            if k == "InitiatorName":
                self.initiator_name = v
            elif k == "TargetName":
                self.target_name = v
            elif k == "SessionType":
                self.session_type = v
            elif k == "InitiatorAlias":
                pass
            elif k == "AuthMethod":
                if "None" not in v.split(","):
                    raise LoginFailed(2, 1, "initiator wants authentication (%s); we only do None" % v)
                out.append((k, "None"))
            elif k == "HeaderDigest":
                offered = v.split(",")
                use = "CRC32C" if o.header_digest == "crc32c" and "CRC32C" in offered else "None"
                if use not in offered:
                    use = offered[0]
                self.header_digest = use == "CRC32C"
                out.append((k, use))
            elif k == "DataDigest":
                out.append((k, "None" if "None" in v.split(",") else "Reject"))
            elif k == "MaxRecvDataSegmentLength":
                self.initiator_mrdsl = int(v)
            elif k == "MaxBurstLength":
                self.max_burst = min(int(v), o.max_burst)
                out.append((k, str(self.max_burst)))
            elif k == "FirstBurstLength":
                self.first_burst = min(int(v), o.first_burst)
                out.append((k, str(self.first_burst)))
            elif k == "ImmediateData":
                self.immediate_data = v == "Yes" and o.immediate_data
                out.append((k, "Yes" if self.immediate_data else "No"))
            elif k == "InitialR2T":
                self.initial_r2t = v == "Yes" or o.initial_r2t
                out.append((k, "Yes" if self.initial_r2t else "No"))
            elif k == "MaxOutstandingR2T":
                out.append((k, "1"))
            elif k in ("DataPDUInOrder", "DataSequenceInOrder"):
                out.append((k, "Yes"))
            elif k == "ErrorRecoveryLevel":
                out.append((k, "0"))
            elif k == "DefaultTime2Wait":
                out.append((k, str(max(int(v), 2))))
            elif k == "DefaultTime2Retain":
                out.append((k, str(min(int(v), 20))))
            elif k == "MaxConnections":
                out.append((k, "1"))
            elif k in ("IFMarker", "OFMarker"):
                out.append((k, "No"))
            elif k in ("IFMarkInt", "OFMarkInt"):
                out.append((k, "Irrelevant"))
            elif k == "TaskReporting":
                out.append((k, "RFC3720"))
            elif k.startswith("X-") or k.startswith("X#"):
                out.append((k, "NotUnderstood"))
            else:
                out.append((k, "NotUnderstood"))
        if final_stage and not self.sent_declarations:
            self.sent_declarations = True
            out.append(("MaxRecvDataSegmentLength", str(o.mrdsl)))
            if self.session_type != "Discovery":
                have = {k for k, _ in out}
                # Always state the results our data path relies on.
                if "InitialR2T" not in have:
                    out.append(("InitialR2T", "Yes" if self.initial_r2t else "No"))
                if "ImmediateData" not in have:
                    out.append(("ImmediateData", "Yes" if self.immediate_data else "No"))
        if final_stage:
            out = self._apply_overrides(out)
        return out

    def _apply_overrides(self, out):
        if not self.overrides:
            return out
        result, seen = [], set()
        for k, v in out:
            if k in self.overrides:
                v = self.overrides[k]
                seen.add(k)
            result.append((k, v))
        for k, v in self.overrides.items():
            if k not in seen:
                result.append((k, v))
        return result


# ------------------------------------------------------------------------- connection


class Task:
    """A SCSI command waiting for its Data-Out (writes) or being executed."""

    def __init__(self, pdu):
        self.itt = pdu.itt
        self.lun_field = pdu.lun_bytes
        self.cdb = bytes(pdu.bhs[32:48])
        self.edtl = pdu.u32(20)
        self.read = bool(pdu.flags & 0x40)
        self.write = bool(pdu.flags & 0x20)
        self.data = bytearray(self.edtl if self.write else 0)
        self.received = 0
        self.unsolicited_done = bool(pdu.flags & 0x80)
        self.r2t_offset = None  # offset of the outstanding R2T's burst
        self.r2t_end = None
        self.r2t_sn = 0
        self.ttt = None

    def put(self, offset, data):
        end = min(offset + len(data), self.edtl)
        if offset < end:
            self.data[offset:end] = data[:end - offset]
        self.received += len(data)


class Connection:
    """One TCP connection from an initiator: login, then the full feature phase.

    Thread model: the connection's thread reads PDUs and answers them in order; the
    NOP-In ping timer and the nop-flood run in their own threads and only send
    (through Wire's lock). Commands are executed in arrival order, writes once all
    their data arrived (immediate, unsolicited, then one R2T at a time)."""

    _tsih = 0
    _tsih_lock = threading.Lock()

    def __init__(self, target, sock, peer):
        self.target = target
        self.opts = target.opts
        self.mis = target.misbehaviours
        self.counters = target.counters
        self.wire = Wire(sock)
        self.peer = peer
        self.stat_sn = random.randint(1, 1 << 20)
        self.exp_cmd_sn = 0
        self.tasks = {}
        self.next_ttt = 1
        self.neg = None
        self.logged_in = False
        self.stop = threading.Event()
        self.executor = target.executor

    # ----- sequence numbers

    def max_cmd_sn(self):
        return (self.exp_cmd_sn + self.opts.cmd_window - 1) & 0xFFFFFFFF

    def note_cmd_sn(self, pdu):
        """Advance ExpCmdSN past a non-immediate request (RFC 7143 4.2.2.1)."""
        cmd_sn = pdu.u32(24)
        if not pdu.immediate:
            nxt = (cmd_sn + 1) & 0xFFFFFFFF
            if ((nxt - self.exp_cmd_sn) & 0xFFFFFFFF) < 0x80000000:
                self.exp_cmd_sn = nxt

    def fill_sn(self, p, advance_stat=True):
        """StatSN, ExpCmdSN, MaxCmdSN of a response; StatSN advances unless told not to."""
        p.set_u32(24, self.stat_sn)
        if advance_stat:
            self.stat_sn = (self.stat_sn + 1) & 0xFFFFFFFF
        p.set_u32(28, self.exp_cmd_sn)
        p.set_u32(32, self.max_cmd_sn())

    def send(self, p):
        self.wire.send(p)

    # ----- main loop

    def run(self):
        self.counters.inc("connections")
        try:
            if self.mis.pick(("silent-login",)):
                log("%s: silent-login: never answering this connection" % self.peer)
                while not self.stop.is_set():
                    self.wire.read_pdu()
            self.login()
            self.wire.sock.settimeout(None)
            if self.opts.nop_interval > 0:
                threading.Thread(target=self.ping_loop, daemon=True).start()
            if any(m.name == "nop-flood" for m in self.mis.items):
                NopFlood(self).start()
            while not self.stop.is_set():
                p = self.wire.read_pdu()
                self.dispatch(p)
        except ConnectionClosed as e:
            log("%s: connection ends: %s" % (self.peer, e))
        except LoginFailed as e:
            log("%s: login refused: %s" % (self.peer, e))
        except Exception as e:  # a bug in the target: say so loudly, drop the connection
            log("%s: INTERNAL ERROR %s: %r" % (self.peer, type(e).__name__, e))
            import traceback
            traceback.print_exc()
        finally:
            self.stop.set()
            self.wire.close()
            self.target.forget(self)

    # ----- login

    def login(self):
        self.neg = Negotiator(self.opts, self.mis.login_overrides())
        first = first_answer = True
        while True:
            p = self.wire.read_pdu()
            if p.opcode != OP_LOGIN_REQ:
                raise ConnectionClosed("PDU 0x%02x before login completed" % p.opcode)
            if first:
                self.exp_cmd_sn = p.u32(24)
                first = False
            transit = bool(p.flags & 0x80)
            csg = (p.flags >> 2) & 3
            nsg = p.flags & 3
            keys = parse_text_keys(p.data)
            if self.opts.verbose:
                log("%s: login CSG %d NSG %d T %d: %s" % (self.peer, csg, nsg, transit, keys))
            try:
                final = transit and nsg == 3
                reply = self.neg.answer(keys, final or (transit and csg == 1))
                if self.neg.session_type == "Normal":
                    if self.neg.target_name is None:
                        raise LoginFailed(2, 7, "no TargetName")
                    if self.neg.target_name != self.opts.iqn:
                        raise LoginFailed(2, 3, "unknown target %s" % self.neg.target_name)
                if first_answer and self.neg.session_type == "Normal":
                    reply.append(("TargetPortalGroupTag", "1"))
                first_answer = False
            except LoginFailed as e:
                self.login_reject(p, e)
                raise
            r = Pdu.new(OP_LOGIN_RSP, 0, p.itt, encode_text_keys(reply))
            flags = (csg << 2)
            if transit:
                flags |= 0x80 | nsg
            r.bhs[1] = flags
            r.bhs[2] = 0x00
            r.bhs[3] = 0x00
            r.bhs[8:14] = p.bhs[8:14]  # ISID
            tsih = int.from_bytes(p.bhs[14:16], "big")
            if transit and nsg == 3 and tsih == 0:
                with Connection._tsih_lock:
                    Connection._tsih = Connection._tsih % 0xFFFF + 1
                    tsih = Connection._tsih
            r.set_u16(14, tsih)
            self.fill_sn(r)
            self.send(r)
            if transit and nsg == 3:
                self.logged_in = True
                self.wire.digest = self.neg.header_digest
                if self.neg.session_type == "Discovery":
                    self.counters.inc("discovery_logins")
                else:
                    self.counters.inc("logins")
                log("%s: %s login of %s (ISID %s, TSIH %d, initiator MRDSL %d, burst %d/%d,"
                    " ImmediateData %s, InitialR2T %s, digest %s)%s" % (
                        self.peer, self.neg.session_type.lower(), self.neg.initiator_name,
                        p.bhs[8:14].hex(), tsih, self.neg.initiator_mrdsl,
                        self.neg.first_burst, self.neg.max_burst, self.neg.immediate_data,
                        self.neg.initial_r2t, "CRC32C" if self.neg.header_digest else "None",
                        " with overrides %s" % self.neg.overrides if self.neg.overrides else ""))
                return

    def login_reject(self, p, e):
        r = Pdu.new(OP_LOGIN_RSP, 0, p.itt)
        r.bhs[8:14] = p.bhs[8:14]
        self.fill_sn(r)
        r.bhs[36] = e.status_class
        r.bhs[37] = e.detail
        try:
            self.send(r)
        except ConnectionClosed:
            pass

    # ----- full feature phase

    def dispatch(self, p):
        op = p.opcode
        if self.opts.verbose:
            log("%s: PDU 0x%02x ITT 0x%08x flags 0x%02x dsl %d" % (
                self.peer, op, p.itt, p.flags, p.data_len))
        if op != OP_DATA_OUT:
            self.note_cmd_sn(p)
        if self.mis.pick(("silent",), None, None):
            if op == OP_SCSI_CMD:
                self.counters.command(p.bhs[32:48])
                self.mis.command_arrived()
            self.counters.inc("unanswered")
            return
        if op == OP_SCSI_CMD:
            self.scsi_command(p)
        elif op == OP_DATA_OUT:
            self.data_out(p)
        elif op == OP_NOP_OUT:
            self.nop_out(p)
        elif op == OP_TEXT_REQ:
            self.text(p)
        elif op == OP_LOGOUT_REQ:
            self.logout(p)
        elif op == OP_TMF_REQ:
            self.task_management(p)
        else:
            self.reject(p, 0x04)  # protocol error (SNACK with ERL 0, unknown opcodes)

    def nop_out(self, p):
        self.counters.inc("nop_out_received")
        if p.itt == RESERVED_TAG:
            return  # an answer to our ping, or a ping that wants no answer
        r = Pdu.new(OP_NOP_IN, 0x80, p.itt, bytes(p.data))
        r.bhs[8:16] = p.bhs[8:16]
        r.set_u32(20, RESERVED_TAG)
        self.fill_sn(r)
        self.send(r)
        self.counters.inc("nop_in_sent")

    def ping_loop(self):
        """Target-initiated NOP-In pings (--nop-interval): the initiator must answer."""
        while not self.stop.wait(self.opts.nop_interval):
            r = Pdu.new(OP_NOP_IN, 0x80, RESERVED_TAG)
            r.set_u32(20, 0x7000_0000 | (self.next_ttt & 0xFFFF))
            self.next_ttt += 1
            self.fill_sn(r, advance_stat=False)
            try:
                self.send(r)
            except ConnectionClosed:
                return
            self.counters.inc("nop_in_sent")
            self.counters.inc("nop_in_ping")

    def text(self, p):
        keys = parse_text_keys(p.data)
        reply = []
        for k, v in keys:
            if k == "SendTargets":
                if v in ("All", "", self.opts.iqn):
                    host, port = self.target.portal()
                    if ":" in host:
                        host = "[%s]" % host
                    reply.append(("TargetName", self.opts.iqn))
                    reply.append(("TargetAddress", "%s:%d,1" % (host, port)))
            else:
                reply.append((k, "NotUnderstood"))
        r = Pdu.new(OP_TEXT_RSP, 0x80, p.itt, encode_text_keys(reply))
        r.set_u32(20, RESERVED_TAG)
        self.fill_sn(r)
        self.send(r)

    def logout(self, p):
        self.counters.inc("logouts")
        r = Pdu.new(OP_LOGOUT_RSP, 0x80, p.itt)
        self.fill_sn(r)
        self.send(r)
        self.stop.set()

    def task_management(self, p):
        self.counters.inc("tmf")
        ref = p.u32(20)
        self.tasks.pop(ref, None)
        r = Pdu.new(OP_TMF_RSP, 0x80, p.itt)
        r.bhs[2] = 0x00  # function complete
        self.fill_sn(r)
        self.send(r)

    def reject(self, p, reason):
        self.counters.inc("rejects")
        r = Pdu.new(OP_REJECT, 0x80, RESERVED_TAG, bytes(p.bhs))
        r.bhs[2] = reason
        self.fill_sn(r)
        self.send(r)

    # ----- SCSI commands and their data

    def scsi_command(self, p):
        t = Task(p)
        if self.opts.verbose:
            r = cdb_lba_len(t.cdb)
            log("%s: %s%s, %d bytes" % (self.peer, command_name(t.cdb),
                                         " LBA %d+%d" % r if r else "", t.edtl))
        self.counters.command(t.cdb)
        self.mis.command_arrived()
        if t.write:
            if p.data:
                t.put(0, p.data)
            self.tasks[t.itt] = t
            self.continue_write(t)
        else:
            self.execute(t)

    def data_out(self, p):
        t = self.tasks.get(p.itt)
        if t is None:
            log("%s: Data-Out for unknown ITT 0x%08x ignored" % (self.peer, p.itt))
            return
        t.put(p.u32(40), p.data)
        if not p.flags & 0x80:
            return
        if p.u32(20) == RESERVED_TAG:
            t.unsolicited_done = True
        else:
            t.r2t_offset = None
        self.continue_write(t)

    def continue_write(self, t):
        """Ask for the rest of a write's data with one R2T at a time, or run it."""
        if not t.unsolicited_done or t.r2t_offset is not None:
            return
        if t.received >= t.edtl:
            del self.tasks[t.itt]
            self.execute(t)
            return
        off = t.received
        n = min(t.edtl - off, self.neg.max_burst or self.opts.max_burst)
        t.r2t_offset, t.r2t_end = off, off + n
        t.ttt = self.next_ttt
        self.next_ttt = (self.next_ttt + 1) & 0x7FFFFFFF
        r = Pdu.new(OP_R2T, 0x80, t.itt)
        r.bhs[8:16] = t.lun_field
        r.set_u32(20, t.ttt)
        self.fill_sn(r, advance_stat=False)
        r.set_u32(36, t.r2t_sn)
        t.r2t_sn += 1
        r.set_u32(40, off)
        r.set_u32(44, n)
        self.send(r)

    def execute(self, t):
        lun = self.target.lun_by_address(t.lun_field)
        mis = self.mis.pick(("noanswer",), t.cdb, lun)
        if mis:
            self.counters.inc("unanswered")
            return
        m = self.mis.pick(("nosense", "recovered", "badsense", "sense-short", "sense-empty",
                           "busy", "medium-error", "unit-attention"), t.cdb, lun)
        if m:
            self.answer_misbehaving_status(t, m)
            return
        result = self.executor.execute(t.lun_field, t.cdb, t.data, t.edtl)
        if result.status != GOOD:
            self.scsi_response(t, result.status, sense=result.sense)
        elif t.read and result.data:
            self.data_in(t, result.data, lun)
        else:
            # GOOD without data; a read that returned nothing has a residual
            self.scsi_response(t, GOOD, residual=t.edtl if t.read else 0)

    def answer_misbehaving_status(self, t, m):
        name = m.name
        if name == "busy":
            self.scsi_response(t, 0x08)
        elif name == "medium-error":
            asc = (0x11, 0x00) if t.read else (0x03, 0x00)
            self.scsi_response(t, CHECK_CONDITION, sense=Sense.fixed(KEY_MEDIUM_ERROR, *asc))
        elif name == "unit-attention":
            code = m.arg_int()
            self.scsi_response(t, CHECK_CONDITION,
                               sense=Sense.fixed(KEY_UNIT_ATTENTION, code >> 8, code & 0xFF))
        elif name == "nosense":
            self.scsi_response(t, CHECK_CONDITION, sense=Sense.fixed(KEY_NO_SENSE))
        elif name == "recovered":
            self.scsi_response(t, CHECK_CONDITION, sense=Sense.fixed(0x1, 0x17, 0x00))
        elif name == "badsense":
            s = bytearray(Sense.fixed(KEY_HARDWARE_ERROR, 0x44, 0x00))
            s[0] = 0x00  # response code 0: not sense data at all
            self.scsi_response(t, CHECK_CONDITION, sense=bytes(s))
        elif name == "sense-short":
            full = Sense.fixed(KEY_MEDIUM_ERROR, 0x11, 0x00)
            keep = max(0, min(m.arg_int(), len(full)))
            payload = struct.pack(">H", len(full)) + full[:keep]
            self.scsi_response(t, CHECK_CONDITION, raw_data=payload)
        elif name == "sense-empty":
            self.scsi_response(t, CHECK_CONDITION, raw_data=b"")

    def scsi_response(self, t, status, sense=b"", residual=0, raw_data=None):
        """A SCSI Response PDU. `raw_data` replaces the SenseLength+sense segment."""
        if raw_data is None:
            raw_data = struct.pack(">H", len(sense)) + sense if sense else b""
        r = Pdu.new(OP_SCSI_RSP, 0x80, t.itt, raw_data)
        r.bhs[2] = 0x00  # command completed at target
        r.bhs[3] = status
        if residual > 0:
            r.bhs[1] |= 0x02  # underflow
            r.set_u32(44, residual)
        elif residual < 0:
            r.bhs[1] |= 0x04  # overflow
            r.set_u32(44, -residual)
        self.fill_sn(r)
        self.send(r)

    def data_in(self, t, data, lun):
        """Send a read's data in Data-In PDUs (each at most the initiator's
        MaxRecvDataSegmentLength and --datain-max), status in the last one (or a
        separate SCSI Response with --separate-status), then let the Data-In
        misbehaviours reshape the sequence."""
        edtl = t.edtl
        residual = 0
        if len(data) > edtl:
            residual = -(len(data) - edtl)
            data = data[:edtl]
        elif len(data) < edtl:
            residual = edtl - len(data)
        limit = min(self.neg.initiator_mrdsl, self.opts.datain_max)
        m = self.mis.pick(("datain-short", "datain-offset", "datain-extra", "datain-dup",
                           "datain-dup-replace", "datain-datasn"),
                          t.cdb, lun, consume=False)
        if m and m.name in ("datain-offset", "datain-dup", "datain-dup-replace",
                            "datain-datasn") and len(data) <= limit and len(data) >= 1024:
            limit = (len(data) // 2 + 511) // 512 * 512  # at least two PDUs
        segs = [[off, data[off:off + limit]] for off in range(0, len(data), limit)] or [[0, b""]]
        separate = self.opts.separate_status
        datasn_skew = 0
        if m and (m.name not in ("datain-offset", "datain-dup", "datain-dup-replace",
                                 "datain-datasn") or len(segs) >= 2):
            m = self.mis.pick((m.name,), t.cdb, lun)  # count it as used
        else:
            m = None
        if m:
            arg = m.arg_int() if m.raw_arg is not None else 0
            if m.name == "datain-short":
                cut = min(arg, len(data))
                remaining = len(data) - cut
                kept = []
                for off, d in segs:
                    if off < remaining:
                        kept.append([off, d[:remaining - off]])
                segs = kept or [[0, b""]]
            elif m.name == "datain-offset":
                off1 = segs[1][0]
                low = max(0, off1 - arg)
                segs[1] = [low, data[low:low + len(segs[1][1])]]
            elif m.name == "datain-extra":
                last = segs[-1]
                extra = bytes((0xEE,)) * arg
                if len(last[1]) + arg <= self.neg.initiator_mrdsl:
                    last[1] = last[1] + extra
                else:
                    segs.append([len(data), extra])
            elif m.name == "datain-dup":
                segs.insert(1, list(segs[0]))
            elif m.name == "datain-dup-replace":
                segs[-1] = list(segs[0])
            elif m.name == "datain-datasn":
                datasn_skew = arg
        for i, (off, d) in enumerate(segs):
            last = i == len(segs) - 1
            r = Pdu.new(OP_DATA_IN, 0, t.itt, d)
            r.bhs[8:16] = t.lun_field
            r.set_u32(20, RESERVED_TAG)
            r.set_u32(36, i + (datasn_skew if i > 0 else 0))
            r.set_u32(40, off)
            if last and not separate:
                r.bhs[1] = 0x80 | 0x01  # F, S
                r.bhs[3] = GOOD
                if residual > 0:
                    r.bhs[1] |= 0x02
                    r.set_u32(44, residual)
                elif residual < 0:
                    r.bhs[1] |= 0x04
                    r.set_u32(44, -residual)
                self.fill_sn(r)
            else:
                if last:
                    r.bhs[1] = 0x80
                r.set_u32(28, self.exp_cmd_sn)
                r.set_u32(32, self.max_cmd_sn())
            self.send(r)
        if separate:
            self.scsi_response(t, GOOD, residual=residual)


class NopFlood:
    """The nop-flood misbehaviour: unsolicited NOP-Ins (ITT and TTT 0xffffffff, so no
    answer is due) as fast as the socket takes them, from a thread of its own, until
    the connection ends or the misbehaviour is switched off (it resumes when switched
    on again). It steps aside whenever an answer is waiting to be sent."""

    BATCH = 256

    def __init__(self, conn):
        self.conn = conn

    def start(self):
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        c = self.conn
        announced = False
        rate = 0
        while not c.stop.is_set():
            m = c.mis.pick(("nop-flood",), None, None, consume=False)
            if not m:
                time.sleep(0.05)
                continue
            rate = m.arg_int()
            if not announced:
                log("%s: nop-flood starts" % c.peer)
                c.mis.pick(("nop-flood",), None, None)  # count it once per connection
                announced = True
            r = Pdu.new(OP_NOP_IN, 0x80, RESERVED_TAG)
            r.set_u32(20, RESERVED_TAG)
            c.fill_sn(r, advance_stat=False)
            raw = r.encode(c.wire.digest)
            n = self.BATCH if rate == 0 else max(1, rate // 20)
            try:
                while c.wire.urgent_waiting:
                    time.sleep(0)
                c.wire.send_raw(raw * n, urgent=False)
            except ConnectionClosed:
                return
            c.counters.inc("nop_in_sent", n)
            c.counters.inc("nop_in_flood", n)
            if rate:
                time.sleep(0.05)


# ----------------------------------------------------------------------------- target


class Target:
    """The listening socket, the LUNs, the connections, signals and the counters file.

    Thread model: the main thread accepts connections and handles signals (SIGTERM
    and SIGINT end the process, SIGUSR1 toggles the misbehaviours, SIGUSR2 dumps the
    counters); each connection has its own thread (Connection); a housekeeping thread
    polls --control FILE."""

    def __init__(self, opts):
        self.opts = opts
        self.counters = Counters(opts.counters)
        self.misbehaviours = Misbehaviours(opts.misbehave, not opts.start_off, self.counters)
        self.luns = []
        for spec in opts.lun:
            self.luns.append(LogicalUnit.from_spec(spec))
        first = opts.luns_first
        for i in range(opts.luns_count):
            n = first + i
            self.luns.append(LogicalUnit(lun_address(n), BackingMemory(opts.luns_size),
                                         number=n, serial="BTMEM%05d" % n))
        self._by_address = {}
        for lun in self.luns:
            self._by_address.setdefault(lun.address, lun)
        self.executor = ScsiExecutor(self)
        self.conns = set()
        self.conns_lock = threading.Lock()
        self.listener = None
        self.ending = False
        self.control_mtime = None

    def lun_by_address(self, field):
        return self._by_address.get(bytes(field))

    def portal(self):
        return self.listener.getsockname()[:2]

    def forget(self, conn):
        with self.conns_lock:
            self.conns.discard(conn)

    def dump(self):
        self.counters.dump({"misbehaving": self.misbehaviours.enabled,
                            "misbehaviours": [m.spec for m in self.misbehaviours.items],
                            "connections_open": len(self.conns)})

    def poll_control(self):
        """--control FILE: 'on' or 'off' (anything else is ignored)."""
        path = self.opts.control
        while not self.ending:
            try:
                st = os.stat(path)
                if st.st_mtime_ns != self.control_mtime:
                    self.control_mtime = st.st_mtime_ns
                    with open(path) as f:
                        word = f.read().strip().lower()
                    if word in ("on", "off"):
                        self.misbehaviours.set_enabled(word == "on", "control file")
                        self.dump()
            except FileNotFoundError:
                pass
            except OSError as e:
                log("control file %s: %s" % (path, e))
            time.sleep(0.05)

    def serve(self):
        ls = socket.socket(socket.AF_INET6 if ":" in self.opts.host else socket.AF_INET)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((self.opts.host, self.opts.port))
        ls.listen(64)
        ls.settimeout(0.2)
        self.listener = ls
        host, port = self.portal()
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        signal.signal(signal.SIGUSR1, self._on_toggle)
        signal.signal(signal.SIGUSR2, lambda *_: self.dump())
        if self.opts.control:
            threading.Thread(target=self.poll_control, daemon=True).start()
        self.dump()
        log("serving %s with %d LUN(s) on %s:%d; misbehaviour %s: %s" % (
            self.opts.iqn, len(self.luns), host, port,
            "ON" if self.misbehaviours.enabled else "OFF", self.misbehaviours.describe()))
        if self.opts.port_file:
            tmp = self.opts.port_file + ".tmp"
            with open(tmp, "w") as f:
                f.write("%d\n" % port)
            os.replace(tmp, self.opts.port_file)
        print("PORT %d" % port, flush=True)
        while not self.ending:
            try:
                sock, peer = ls.accept()
            except socket.timeout:
                continue
            except OSError:
                if self.ending:
                    break
                raise
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Connection(self, sock, "%s:%d" % peer[:2])
            with self.conns_lock:
                self.conns.add(conn)
            threading.Thread(target=conn.run, daemon=True).start()
        self.shutdown()

    def _on_term(self, *_):
        self.ending = True

    def _on_toggle(self, *_):
        self.misbehaviours.set_enabled(not self.misbehaviours.enabled, "SIGUSR1")
        self.dump()

    def shutdown(self):
        log("exiting")
        self.listener.close()
        with self.conns_lock:
            conns = list(self.conns)
        for c in conns:
            c.stop.set()
            c.wire.close()
        self.dump()


def build_parser():
    p = argparse.ArgumentParser(
        prog="badtarget.py",
        description="A small iSCSI target that misbehaves on purpose (see tests/target/README.md).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="misbehaviours (--misbehave NAME[:ARG][,op=OPS][,after=N][,times=N][,lba=A-B][,lun=N]):\n" +
        "\n".join("  %-20s %s%s" % (k, v[2], "" if v[1] is None else " [ARG %s]" % v[1])
                  for k, v in MISBEHAVIOURS.items()))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 (default): any free port")
    p.add_argument("--port-file", help="write the port here once listening")
    p.add_argument("--iqn", default="iqn.2026-11.org.iscsifs.badtarget:disk")
    p.add_argument("--lun", action="append", default=[],
                   help="N=PATH[,bs=512][,thin][,ro][,serial=X][,max_unmap=N][,size=S], "
                        "N=mem:SIZE[,...], or 0xHHHHHHHHHHHHHHHH=... for a raw 8-byte LUN address")
    p.add_argument("--luns-count", type=int, default=0, help="add N tiny in-memory LUNs")
    p.add_argument("--luns-first", type=int, default=1, help="number of the first of --luns-count")
    p.add_argument("--luns-size", type=parse_number, default=1 << 20, help="their size (1M)")
    p.add_argument("--misbehave", action="append", default=[], metavar="NAME[:ARG][,SCOPE...]")
    p.add_argument("--start-off", action="store_true", help="start with the misbehaviours off")
    p.add_argument("--control", help="file holding 'on' or 'off' (polled every 50 ms)")
    p.add_argument("--counters", help="JSON counters file (SIGUSR2, on/off changes and exit)")
    p.add_argument("--header-digest", choices=("none", "crc32c"), default="none",
                   help="digest to pick when the initiator offers it")
    p.add_argument("--mrdsl", type=parse_number, default=262144,
                   help="our MaxRecvDataSegmentLength")
    p.add_argument("--max-burst", type=parse_number, default=262144)
    p.add_argument("--first-burst", type=parse_number, default=65536)
    p.add_argument("--no-immediate-data", dest="immediate_data", action="store_false")
    p.add_argument("--initial-r2t", action="store_true", help="insist on InitialR2T=Yes")
    p.add_argument("--datain-max", type=parse_number, default=1 << 24,
                   help="largest Data-In segment we send (also bounded by the initiator's)")
    p.add_argument("--separate-status", action="store_true",
                   help="status in a SCSI Response after the Data-In, not in the last Data-In")
    p.add_argument("--cmd-window", type=int, default=64, help="MaxCmdSN - ExpCmdSN + 1")
    p.add_argument("--nop-interval", type=float, default=0,
                   help="seconds between target NOP-In pings (0: none)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every PDU")
    p.add_argument("--list", action="store_true", help="list the misbehaviours and exit")
    return p


def main(argv):
    opts = build_parser().parse_args(argv)
    if opts.list:
        for k, v in MISBEHAVIOURS.items():
            print("%-20s %s" % (k, v[2]))
        return 0
    try:
        target = Target(opts)
    except (ValueError, OSError) as e:
        sys.stderr.write("badtarget.py: %s\n" % e)
        return 2
    if not target.luns:
        sys.stderr.write("badtarget.py: no LUN (use --lun or --luns-count)\n")
        return 2
    target.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
