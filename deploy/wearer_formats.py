"""What a sensor hub sends the gateway: samples that carry the wearer's id, as text lines or compact binary frames.

**Lines** (UTF-8, one sample a line, comma or whitespace separated; a UDP datagram carries one or more, of one
wearer or several):

    device,t,AccV,AccML,AccAP          e.g.  ward3-bed12,812.015625,-0.98,0.05,0.11

`device` names the wearer (1-64 characters, no whitespace, ',', '/', '+', '#' or control characters: it becomes one
level of an MQTT topic), `t` the sensor's timestamp in seconds, the axes in the source's units. Blank lines and
lines starting with `#` are ignored.

**Binary frames, version 1** (little-endian, packed; one datagram may carry several frames back to back):

    offset      size       field
    0           2          magic b"FG"
    2           1          version, uint8 = 1
    3           1          L: length of the device id in bytes, uint8, 1..64
    4           L          device id, UTF-8 (the rules of the line format)
    4 + L       2          n: samples in the frame, uint16, 1..3270
    6 + L       20 n       n samples, each: t float64 (seconds), AccV, AccML, AccAP float32 (source units)

20 bytes a sample instead of ~40 as text, parsed with one numpy view. A frame that does not parse (bad magic, a
version this gateway does not know, a length that disagrees with n) is rejected whole: counted under its wearer
when the id was readable (`binary`), else as unattributed. A text line always starts with a printable character,
never with "FG" followed by the byte 0x01, so one port takes both.

Nothing here raises on bad input: what cannot be read is counted by reason (deploy.sources.Chunk.rejected) and
reported by the gateway under the wearer it names, or as unattributed when it names none.
"""
from __future__ import annotations

import re
import struct
import time

import numpy as np

from deploy.sources import Chunk

MAGIC = b"FG"
VERSION = 1
MAX_ID = 64
MAX_FRAME_SAMPLES = 3270          # a frame fits one UDP datagram (65,507 bytes)
SAMPLE = np.dtype([("t", "<f8"), ("acc", "<f4", (3,))])    # 20 bytes, packed
DEVICE_RE = re.compile(r"[^\s,/+#\x00-\x1f\x7f]{1,64}")
UNATTRIBUTED = ""                 # the key under which what names no wearer is counted
_FIRST = re.compile(r"([^,\s]*)[,\s]*")


def valid_device(name: str) -> bool:
    return bool(DEVICE_RE.fullmatch(name))


def _empty(rejected: dict) -> Chunk:
    return Chunk(np.empty(0), np.empty((0, 3)), time.monotonic(), rejected)


def parse_tagged_lines(lines, arrival: float | None = None) -> dict[str, Chunk]:
    """{device: Chunk} from `device,t,AccV,AccML,AccAP` lines; a line that names no valid device is counted under
    UNATTRIBUTED, one that names a device but not four numbers under that device."""
    rows: dict[str, list] = {}
    rejected: dict[str, dict] = {}
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        head = _FIRST.match(line)        # the device is the text before the first comma or blank (maybe empty)
        parts = [head.group(1)] + line[head.end():].replace(",", " ").split()
        device = parts[0] if valid_device(parts[0]) else UNATTRIBUTED
        if device == UNATTRIBUTED or len(parts) != 5:
            reason = "device" if device == UNATTRIBUTED else "columns"
            bucket = rejected.setdefault(device, {})
            bucket[reason] = bucket.get(reason, 0) + 1
            continue
        try:
            rows.setdefault(device, []).append([float(p) for p in parts[1:]])
        except ValueError:
            bucket = rejected.setdefault(device, {})
            bucket["parse"] = bucket.get("parse", 0) + 1
    arrival = time.monotonic() if arrival is None else arrival
    out = {}
    for device in rows.keys() | rejected.keys():
        data = np.array(rows.get(device, []), dtype=np.float64).reshape(-1, 4)
        out[device] = Chunk(data[:, 0].copy(), data[:, 1:].copy(), arrival, rejected.get(device, {}))
    return out


def pack_frame(device: str, t, acc) -> bytes:
    """One binary frame (version 1) of `device`'s samples: t (n,) seconds, acc (n, 3)."""
    ident = device.encode("utf-8")
    if not valid_device(device) or len(ident) > MAX_ID:
        raise ValueError(f"device id {device!r}: 1-64 bytes, no whitespace, ',', '/', '+', '#' or control "
                         "characters")
    t = np.asarray(t, np.float64).reshape(-1)
    if not 1 <= len(t) <= MAX_FRAME_SAMPLES:
        raise ValueError(f"a frame carries 1..{MAX_FRAME_SAMPLES} samples, not {len(t)}")
    samples = np.empty(len(t), SAMPLE)
    samples["t"], samples["acc"] = t, np.asarray(acc, np.float32).reshape(-1, 3)
    return MAGIC + struct.pack("<BB", VERSION, len(ident)) + ident + struct.pack("<H", len(t)) + samples.tobytes()


def is_binary(data: bytes) -> bool:
    return data[:3] == MAGIC + bytes([VERSION]) or (data[:2] == MAGIC and len(data) > 2 and data[2] < 0x20)


def _frame_header(data: bytes, at: int):
    """(device or None, samples n, where the samples start) of the frame at `at`, or None when the header is bad."""
    if data[at:at + 2] != MAGIC or len(data) < at + 4 or data[at + 2] != VERSION:
        return None
    size = data[at + 3]
    if not 1 <= size <= MAX_ID or len(data) < at + 6 + size:
        return None
    try:
        device = data[at + 4:at + 4 + size].decode("utf-8")
    except UnicodeDecodeError:
        device = None
    (count,) = struct.unpack_from("<H", data, at + 4 + size)
    return (device if device is not None and valid_device(device) else None), count, at + 6 + size


def parse_frames(data: bytes, arrival: float | None = None) -> dict[str, Chunk]:
    """{device: Chunk} from one or more binary frames; a frame that does not parse ends the datagram (what
    follows it cannot be found), counted under its device when readable, else UNATTRIBUTED."""
    arrival = time.monotonic() if arrival is None else arrival
    parts: dict[str, list] = {}
    rejected: dict[str, dict] = {}
    at = 0
    while at < len(data):
        header = _frame_header(data, at)
        end = None if header is None else header[2] + SAMPLE.itemsize * header[1]
        if header is None or header[0] is None or header[1] == 0 or end > len(data):
            device = header[0] if header is not None and header[0] else UNATTRIBUTED
            present = 0 if header is None else (len(data) - header[2]) // SAMPLE.itemsize
            count = max(1, min(header[1], present)) if device != UNATTRIBUTED else 1   # what the bytes hold
            bucket = rejected.setdefault(device, {})
            bucket["binary"] = bucket.get("binary", 0) + count
            break
        device, count, start = header
        parts.setdefault(device, []).append(np.frombuffer(data, SAMPLE, count=count, offset=start))
        at = end
    out = {}
    for device in parts.keys() | rejected.keys():
        samples = np.concatenate(parts[device]) if device in parts else np.empty(0, SAMPLE)
        out[device] = Chunk(samples["t"].astype(np.float64), samples["acc"].astype(np.float64), arrival,
                            rejected.get(device, {}))
    return out


def parse_datagram(data: bytes, arrival: float | None = None) -> dict[str, Chunk]:
    """A datagram of binary frames or of tagged lines; bytes that are neither count as one unattributed sample."""
    if is_binary(data):
        return parse_frames(data, arrival)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return {UNATTRIBUTED: _empty({"encoding": 1})}
    return parse_tagged_lines(text.splitlines(), arrival)
