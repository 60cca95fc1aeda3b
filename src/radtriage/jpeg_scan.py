"""Is a JPEG whose end-of-image marker is missing whole? An exact answer, from its Huffman scan.

A file cut in its last bytes lacks the end marker (FF D9) that libjpeg needs to finish, so Pillow
refuses it ("image file is truncated"). Whether the pixels are all there cannot be learnt from a
decoder: with the marker appended, libjpeg silently decodes the missing scan data as zero bits and
then mid-gray (so does Pillow's LOAD_TRUNCATED_IMAGES), whatever the cut; fed the data without it,
the decoder holds back the last MCU row; and comparing decodes with different bytes appended is no
proof either (in tests, libjpeg-turbo finished a last block whose bits were missing the same way
whatever the bytes). So :func:`scan_is_whole` walks the scan itself: Huffman symbol lengths only,
no pixel maths, about 0.5 s per MB of scan in Python.

Only single-scan sequential Huffman JPEGs (baseline/extended, 8-bit: what scanners and cameras
write) can be whole. A progressive JPEG (or a sequential one with a scan per component) is a
sequence of scans, each refining all rows or adding a component: without the end marker nothing
says that the last scan present is the last one written, and a file cut between scans has every row
at reduced quality (or lacks a component), so it is never called whole.
"""

from __future__ import annotations

import array
import re
import struct

import numpy as np

_SEQUENTIAL_HUFFMAN_SOF = (0xC0, 0xC1)
_MARKER = re.compile(rb"\xff+(?:[^\x00\xff]|\Z)")  # FF 00 is a stuffed data byte; FF FF.. fill


def scan_is_whole(data: bytes) -> bool:
    """True when ``data`` is a single-scan sequential Huffman JPEG whose scan holds every MCU of the
    image and runs to the end of the file: only the end-of-image marker (or its second byte) is
    missing. False for anything else, including a scan that is one bit short."""
    header = _scan_header(data)
    if header is None:
        return False
    start, mcus, restart, blocks = header
    segments = []  # entropy-coded data between restart markers
    end = len(data)
    for m in _MARKER.finditer(data, start):
        if m.end() == len(data) and data[-1] == 0xFF:  # the first byte of the missing end marker
            end = m.start()
            break
        if not 0xD0 <= data[m.end() - 1] <= 0xD7:  # EOI or another marker: not cut off at the end
            return False
        segments.append(data[start : m.start()])
        start = m.end()
    segments.append(data[start:end])
    per = restart or mcus
    if len(segments) != -(-mcus // per):
        return False
    for k, segment in enumerate(segments):
        if b"\xff\xff" in segment:
            return False
        if not _huffman_walk(segment.replace(b"\xff\x00", b"\xff"), min(per, mcus - k * per), blocks):
            return False
    return True


def _scan_header(data: bytes) -> tuple[int, int, int, list[tuple[list[int], list[int], list[int]]]] | None:
    """The frame and scan headers (ITU-T T.81 B.2) of a single-scan sequential Huffman JPEG: where its
    entropy-coded data starts, its MCU count, its restart interval, and the (DC, AC, AC step) lookup
    tables of each block of an MCU. None for any other kind of JPEG or a malformed header."""
    pos, n = 2, len(data)
    tables: dict[tuple[int, int], tuple[list[int], list[int]]] = {}
    frame: tuple[int, int, dict[int, tuple[int, int]]] | None = None
    restart = 0
    while True:
        while pos + 1 < n and data[pos] == 0xFF and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes
        if pos + 4 > n or data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if 0xD0 <= marker <= 0xD9 or marker == 0x01:
            return None  # a standalone marker (RST, SOI, EOI, TEM) before the scan
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        body = data[pos + 4 : pos + 2 + length]
        if length < 2 or len(body) != length - 2:
            return None
        pos += 2 + length
        if marker == 0xDA:  # start of scan
            break
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start of frame
            if marker not in _SEQUENTIAL_HUFFMAN_SOF or frame is not None or len(body) < 6:
                return None  # progressive, lossless, arithmetic-coded, or a second frame
            precision, rows, columns, count = struct.unpack(">BHHB", body[:6])
            if precision != 8 or not rows or not columns or not count or len(body) != 6 + 3 * count:
                return None
            sampling = {body[6 + 3 * i]: (body[7 + 3 * i] >> 4, body[7 + 3 * i] & 15) for i in range(count)}
            if any(not 1 <= f <= 4 for hv in sampling.values() for f in hv):
                return None
            frame = (rows, columns, sampling)
        elif marker == 0xC4:  # Huffman tables
            i = 0
            while i < len(body):
                counts = list(body[i + 1 : i + 17])
                symbols = body[i + 17 : i + 17 + sum(counts)]
                kind, ident = body[i] >> 4, body[i] & 15
                if len(counts) != 16 or len(symbols) != sum(counts) or kind > 1:
                    return None
                table = _huffman_lookup(counts, symbols, ac=kind == 1)
                if table is None:
                    return None
                tables[kind, ident] = table
                i += 17 + len(symbols)
        elif marker == 0xDD:  # restart interval
            if len(body) != 2:
                return None
            restart = struct.unpack(">H", body)[0]
    if frame is None or not body:
        return None
    rows, columns, sampling = frame
    count = body[0]
    if count != len(sampling) or len(body) != 4 + 2 * count:
        return None  # a scan without every component: the file has several scans
    blocks = []
    for i in range(count):
        component, selectors = body[1 + 2 * i], body[2 + 2 * i]
        dc, ac = tables.get((0, selectors >> 4)), tables.get((1, selectors & 15))
        if component not in sampling or dc is None or ac is None:
            return None
        h, v = sampling[component] if count > 1 else (1, 1)  # a one-component scan: MCU = one block
        blocks += [(dc[0], ac[0], ac[1])] * (h * v)
    if count > 1:
        h_max = max(h for h, _ in sampling.values())
        v_max = max(v for _, v in sampling.values())
        mcus = -(-columns // (8 * h_max)) * -(-rows // (8 * v_max))
    else:
        mcus = -(-columns // 8) * -(-rows // 8)
    return pos, mcus, restart, blocks


def _huffman_lookup(counts: list[int], symbols: bytes, *, ac: bool) -> tuple[list[int], list[int]] | None:
    """A Huffman table (T.81 C) as lookups on the next 16 bits: bits to skip (code + the value bits
    that follow it; 0 = no such code), and for AC the coefficient step (0 = end of block)."""
    skip = np.zeros(1 << 16, np.int64)
    step = np.zeros(1 << 16, np.int64)
    code, i = 0, 0
    for length, n in enumerate(counts, start=1):
        for _ in range(n):
            if code >= 1 << length:
                return None  # over-subscribed table
            symbol = symbols[i]
            i += 1
            lo, hi = code << (16 - length), (code + 1) << (16 - length)
            run, size = (symbol >> 4, symbol & 15) if ac else (0, symbol)
            skip[lo:hi] = length + size
            step[lo:hi] = run + 1 if size else 16 if run == 15 else 0
            code += 1
        code <<= 1
    return skip.tolist(), step.tolist()


def _huffman_walk(segment: bytes, mcus: int, blocks: list[tuple[list[int], list[int], list[int]]]) -> bool:
    """True when ``mcus`` MCUs decode from the (unstuffed) entropy-coded ``segment`` with every bit
    they need inside it (trailing padding bits allowed)."""
    bits = 8 * len(segment)
    # One-bits after the end: a block that runs past it (<= 64 codes of <= 27 bits) stays in bounds.
    padded = np.frombuffer(segment + b"\xff" * 256, np.uint8).astype(np.uint32)
    windows = array.array("I")  # the 24 bits from each byte: a 16-bit window at any bit offset
    windows.frombytes(((padded[:-2] << 16) | (padded[1:-1] << 8) | padded[2:]).astype(np.uint32).tobytes())
    pos = 0
    for _ in range(mcus):
        for dc, ac, step in blocks:
            skip = dc[(windows[pos >> 3] >> (8 - (pos & 7))) & 0xFFFF]
            if not skip:
                return False
            pos += skip
            k = 1
            while k < 64:
                w = (windows[pos >> 3] >> (8 - (pos & 7))) & 0xFFFF
                if not ac[w]:
                    return False
                pos += ac[w]
                if not step[w]:
                    break  # end of block
                k += step[w]
            if pos > bits:
                return False
    return True
