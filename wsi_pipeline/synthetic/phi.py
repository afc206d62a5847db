"""Fake patient data for the synthetic slide: label and macro pictures, PHI properties.

Everything here is invented (``PATIENT: DOE^JANE``), and it is there on purpose: tests
prove that none of it leaks into any output. :data:`PHI_STRINGS` lists the strings that
must never appear in outputs.
"""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image, ImageDraw, ImageFont

PATIENT = "DOE^JANE"
ACCESSION = "S24-12345"
MRN = "00123456"
BIRTH_DATE = "1961-04-02"
BARCODE = f"{ACCESSION}-A1"
SCAN_FILENAME = f"{ACCESSION}_A1_DOE_JANE"
USER = "3f2c9a4e-77b1-4c1e-9d2a-5b8e0c6f1a42"
PHI_STRINGS = (PATIENT, "DOE", "JANE", ACCESSION, MRN, BIRTH_DATE, USER)

# Aperio ImageDescription keys that carry (fake) patient or site data
PHI_PROPERTIES = {
    "ScanScope ID": "SS7731",
    "Filename": SCAN_FILENAME,
    "Date": "03/14/24",
    "Time": "10:21:07",
    "Time Zone": "GMT+01:00",
    "User": USER,
    "Barcode": BARCODE,
    "Patient": PATIENT,
    "DSR ID": "dsr-host-01",
    "ImageID": "880211",
    "Rack": "3",
    "Slide": "7",
}


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow built without FreeType
        return ImageFont.load_default()


def _barcode(text: str, width: int, height: int) -> Image.Image:
    """A fake 1-D barcode (bars from a hash of ``text``), black on white."""
    bits = "".join(f"{b:08b}" for b in hashlib.sha256(text.encode()).digest())
    img = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(img)
    x, unit = 6, max(1, (width - 12) // (len(bits) // 2 + 20))
    for i, bit in enumerate(bits):
        if x >= width - 6:
            break
        wide = unit * (2 if bits[(i + 1) % len(bits)] == "1" else 1)
        if bit == "1":
            draw.rectangle([x, 4, x + wide - 1, height - 5], fill=0)
        x += wide
    return img


def make_label(*, size: tuple[int, int] = (480, 420)) -> np.ndarray:
    """The slide label: patient text and a barcode; ``(h, w, 3)`` uint8."""
    w, h = size
    img = Image.new("RGB", size, (236, 236, 230))
    draw = ImageDraw.Draw(img)
    font = _font(max(12, h // 14))
    lines = [f"PATIENT: {PATIENT}", f"MRN: {MRN}", f"DOB: {BIRTH_DATE}", f"{ACCESSION} A1  H&E"]
    y = h // 20
    for line in lines:
        draw.text((w // 20, y), line, fill=(10, 10, 10), font=font)
        y += h // 9
    code = _barcode(BARCODE, w - w // 10, h // 4).convert("RGB")
    img.paste(code, (w // 20, h - h // 4 - h // 20))
    return np.asarray(img)


def make_macro(thumbnail: np.ndarray, label: np.ndarray, *, size: tuple[int, int] = (1500, 560)) -> np.ndarray:
    """Photograph of the whole glass slide: label at the left, tissue thumbnail on glass.

    ``thumbnail`` and ``label`` are ``(h, w, 3)`` uint8; returns ``(size[1], size[0], 3)`` uint8.
    """
    w, h = size
    img = Image.new("RGB", size, (214, 216, 220))
    lab = Image.fromarray(label)
    lab.thumbnail((w // 3 - 20, h - 20))
    img.paste(lab, (10, (h - lab.height) // 2))
    glass = Image.new("RGB", (w - w // 3 - 10, h - 20), (240, 241, 243))
    thumb = Image.fromarray(thumbnail)
    thumb.thumbnail((glass.width - 40, glass.height - 40))
    glass.paste(thumb, ((glass.width - thumb.width) // 2, (glass.height - thumb.height) // 2))
    img.paste(glass, (w // 3, 10))
    return np.asarray(img)
