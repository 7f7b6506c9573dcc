"""What an artifact computes with, as one sha256: the content a record in its metadata (the fast decode's check) was
measured on, so the record is not trusted on a model changed since or on another model."""

from __future__ import annotations

import hashlib
from pathlib import Path

from toolkit.errors import RtkError
from toolkit.io import sha256_file

ONNX_METADATA_PROPS = 14      # ModelProto.metadata_props, where rtk keeps an ONNX file's metadata


def content_sha256(path: Path) -> str:
    """sha256 of what an artifact computes with, leaving out the rtk metadata it carries: an IR's graph (its .xml's
    layers and edges) and .bin, an engine's plan, an ONNX file's top-level protobuf fields except metadata_props
    (walked at the wire level, so the runtime-only install needs no onnx package; external weight files are not
    included). A record kept in the metadata can then name the content it was measured on."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".xml":
        import xml.etree.ElementTree as ET

        try:
            net = ET.parse(path).getroot()
        except ET.ParseError as exc:
            raise RtkError(f"{path}: not a readable OpenVINO IR ({exc}); compile it again") from None
        graph = b"".join(ET.tostring(part) for part in (net.find("layers"), net.find("edges")) if part is not None)
        return hashlib.sha256(hashlib.sha256(graph).digest() + bytes.fromhex(sha256_file(path.with_suffix(".bin")))
                              ).hexdigest()
    if suffix != ".onnx":
        return sha256_file(path)
    data = memoryview(path.read_bytes())
    digest, pos = hashlib.sha256(), 0

    def varint() -> int:
        nonlocal pos
        value = shift = 0
        while True:
            if pos >= len(data) or shift > 63:
                raise RtkError(f"{path}: not a readable ONNX file (damaged protobuf); re-export it")
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    while pos < len(data):
        start = pos
        tag = varint()
        wire = tag & 7
        if wire == 0:
            varint()
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        elif wire == 2:
            size = varint()
            pos += size
        else:
            raise RtkError(f"{path}: not a readable ONNX file (damaged protobuf); re-export it")
        if pos > len(data):
            raise RtkError(f"{path}: not a readable ONNX file (truncated); re-export it")
        if tag >> 3 != ONNX_METADATA_PROPS:
            digest.update(data[start:pos])
    return digest.hexdigest()
