#!/usr/bin/env python3
"""Image goldens for tests/test_image.cpp: PIL + torchvision run the model card's preprocessing.

Writes into OUT_DIR (default tests/data/images):
  src/<name>.<ext>        input images: PNG modes (palette+tRNS, 4-bit palette, out-of-range index,
                          1/2/4/8/16-bit gray, gray+tRNS, LA, 16-bit LA, RGB, RGBA, 16-bit RGB/RGBA,
                          Adam7 interlaced), JPEG (baseline 4:2:0, 4:4:4, progressive, gray, CMYK),
                          WebP (lossless, lossy, lossy+alpha); shapes square, 3:1, 1:4, 27x27, 1x1,
                          1x10000, two exact aspect-ratio ties, and a natural photo (scikit-image's
                          "chelsea", CC0) downsized with PIL.
  decoded/<name>.rgb      Image.open(f).convert('RGB') as raw bytes (H*W*3), the decode golden.
  tiles/<name>_<c>x<r>.png  the card's dynamic_preprocess tiles (uint8, before ToTensor), stacked
                          vertically: a 448 x (448*T) RGB PNG. One file per (image, grid): MAX values
                          that choose the same grid share it.
  resize/<name>_<w>x<h>.png  PIL image.resize((w, h)) (BICUBIC) of a source, for resize-only tests.
  norm/<name>_max<M>.f32  the card's load_image(f, max_num=M) float32 tensor [T,3,448,448], sampled at
                          rows/cols 0, 14, 28, ... (32x32) -> [T,3,32,32] little-endian float32.
  norm/lut.f32            ToTensor+Normalize of every byte value per channel: [3,256] float32
                          (a 256x1 RGB image through T.ToTensor(), T.Normalize(mean, std)).
  manifest.json           everything above with the grid and tile count per MAX in {1, 6, 10, 12}.

Deterministic: fixed seeds, no timestamps. The chosen grid is taken from the card's own functions
(copied verbatim below), never from the C++ code.

Usage: make_image_goldens.py [OUT_DIR] [--bench JPEG_OUT]
  --bench also writes a 4000x3000 JPEG (not committed) and times PIL+torchvision's load_image on it.
"""
import io
import json
import os
import struct
import sys
import time
import zlib

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image
from torchvision.transforms.functional import InterpolationMode

MAX_VALUES = [1, 6, 10, 12]
S = 448

# The model card's code, verbatim, lives in card.py (the single copy shared with the model goldens).
from card import (IMAGENET_MEAN, IMAGENET_STD, build_transform, dynamic_preprocess,  # noqa: E402,F401
                  find_closest_aspect_ratio, load_image)


def grid_of(image, max_num):
    """The (cols, rows) the card's code picks, recomputed with its own find_closest_aspect_ratio."""
    w, h = image.size
    ratios = set((i, j) for n in range(1, max_num + 1) for i in range(1, n + 1) for j in range(1, n + 1)
                 if i * j <= max_num and i * j >= 1)
    ratios = sorted(ratios, key=lambda x: x[0] * x[1])
    return find_closest_aspect_ratio(w / h, ratios, w, h, S)


# ---- a minimal PNG writer for the modes PIL cannot write (16-bit RGB/LA, Adam7, odd palettes) ----

def _chunk(tag, data):
    return struct.pack('>I', len(data)) + tag + data + struct.pack('>I', zlib.crc32(tag + data) & 0xffffffff)


def _pack_rows(samples, bit_depth):
    """samples: uint array [h, w*channels] -> filter-0 scanlines."""
    out = bytearray()
    for row in samples:
        out.append(0)
        if bit_depth == 16:
            out += row.astype('>u2').tobytes()
        elif bit_depth == 8:
            out += row.astype(np.uint8).tobytes()
        else:
            per = 8 // bit_depth
            vals = list(row) + [0] * ((-len(row)) % per)
            for k in range(0, len(vals), per):
                b = 0
                for v in vals[k:k + per]:
                    b = (b << bit_depth) | int(v)
                out.append(b)
    return bytes(out)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def write_png(path, pixels, bit_depth, color_type, plte=None, trns=None, interlace=False):
    """pixels: [h, w, channels] (or [h, w]) integer samples."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    h, w, c = pixels.shape
    if interlace:
        raw = b''
        for x0, y0, dx, dy in ADAM7:
            sub = pixels[y0::dy, x0::dx]
            if sub.shape[0] and sub.shape[1]:
                raw += _pack_rows(sub.reshape(sub.shape[0], -1), bit_depth)
    else:
        raw = _pack_rows(pixels.reshape(h, w * c), bit_depth)
    data = b'\x89PNG\r\n\x1a\n' + _chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, bit_depth, color_type, 0, 0,
                                                                1 if interlace else 0))
    if plte is not None:
        data += _chunk(b'PLTE', bytes(plte))
    if trns is not None:
        data += _chunk(b'tRNS', bytes(trns))
    data += _chunk(b'IDAT', zlib.compress(raw, 9)) + _chunk(b'IEND', b'')
    with open(path, 'wb') as f:
        f.write(data)


# ---- synthetic content (smooth, so upscaled tiles compress well; with detail so errors show) ----

def synth_rgb(w, h, seed, noise=2.0, discs=4):
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 127 + 100 * np.sin(x / max(w, 1) * 6.3 + seed) * np.cos(y / max(h, 1) * 3.1)
    g = 255 * (x + y) / max(w + h - 2, 1)
    b = 127 + 120 * np.cos(np.hypot(x - w / 3, y - h / 2) / max(w, h) * 12)
    img = np.stack([r, g, b], -1)
    # a few hard-edged discs: ringing at edges exercises clamping in the resize
    for _ in range(discs):
        cx, cy, rad = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(2, max(3, min(w, h) / 4))
        img[(x - cx) ** 2 + (y - cy) ** 2 < rad ** 2] = rng.randint(0, 256, 3)
    img += rng.normal(0, noise, img.shape) if noise else 0
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def chelsea():
    import skimage.data
    return Image.fromarray(skimage.data.chelsea())  # 451x300 RGB, CC0


# ---- writers ----

def save_tile_strip(tiles, path):
    strip = Image.new('RGB', (S, S * len(tiles)))
    for k, t in enumerate(tiles):
        assert t.size == (S, S)
        strip.paste(t, (0, S * k))
    strip.save(path, optimize=True)


def make_sources(src):
    """Write the input images; returns [(name, filename, kind)] with kind in {'tiles', 'decode'}."""
    out = []

    def png_rgb(name, arr, kind='tiles'):
        Image.fromarray(arr).save(os.path.join(src, name + '.png'))
        out.append((name, name + '.png', kind))

    # shapes, all PNG RGB (bit-exact path)
    png_rgb('square', synth_rgb(64, 64, 1))
    png_rgb('wide3x1', synth_rgb(150, 50, 2))
    png_rgb('tall1x4', synth_rgb(40, 160, 3))
    png_rgb('tiny27', synth_rgb(27, 27, 4))
    png_rgb('one1x1', np.array([[[200, 30, 90]]], np.uint8))
    png_rgb('strip1x10000', synth_rgb(1, 10000, 5, noise=0, discs=0))  # refused by default (aspect > 200)
    # exact ties: aspect 1.0 with area > 0.5*448^2*4 (-> (2,2) beats (1,1) for MAX >= 4);
    # aspect 2.5 sits exactly between 2/1 and 3/1 for MAX < 10: 1000x400 lets the later one win,
    # 250x100 keeps the earlier one.
    png_rgb('tie_square640', synth_rgb(640, 640, 6, noise=0, discs=1))
    png_rgb('tie_wide1000x400', synth_rgb(1000, 400, 7, noise=0, discs=1))
    png_rgb('tie_wide250x100', synth_rgb(250, 100, 8, noise=0, discs=1))
    photo = chelsea().resize((150, 100))  # PIL-downsized natural photo, 3:2
    photo.save(os.path.join(src, 'photo.png'))
    out.append(('photo', 'photo.png', 'tiles'))
    photo.save(os.path.join(src, 'photo.jpg'), quality=90)  # baseline, 4:2:0
    out.append(('photo_jpg', 'photo.jpg', 'tiles'))
    big = chelsea()
    big.save(os.path.join(src, 'chelsea.png'))  # resize-only goldens (downscaling)
    out.append(('chelsea', 'chelsea.png', 'decode'))

    # PNG modes (small; decode goldens)
    base = synth_rgb(33, 17, 9)
    rng = np.random.RandomState(10)
    Image.fromarray(base).convert('RGBA').save(os.path.join(src, 'rgba.png'))
    rgba = np.dstack([base, rng.randint(0, 256, base.shape[:2]).astype(np.uint8)])
    Image.fromarray(rgba, 'RGBA').save(os.path.join(src, 'rgba.png'))
    gray = np.asarray(Image.fromarray(base).convert('L'))
    Image.fromarray(gray).save(os.path.join(src, 'gray.png'))
    Image.fromarray(np.dstack([gray, rgba[..., 3]]), 'LA').save(os.path.join(src, 'gray_alpha.png'))
    pal = Image.fromarray(base).quantize(colors=200)
    pal.info['transparency'] = bytes(range(0, 200, 3))
    pal.save(os.path.join(src, 'palette_trns.png'), transparency=bytes(range(0, 200, 3)))
    pal16 = Image.fromarray(base).quantize(colors=16)
    pal16.save(os.path.join(src, 'palette4bit.png'), bits=4)
    idx = rng.randint(0, 12, (9, 13))  # 8-entry palette, indices 8..11 out of range
    write_png(os.path.join(src, 'palette_oob.png'), idx, 8, 3, plte=rng.randint(0, 256, 24))
    write_png(os.path.join(src, 'gray1bit.png'), rng.randint(0, 2, (11, 21)), 1, 0)
    write_png(os.path.join(src, 'gray2bit.png'), rng.randint(0, 4, (11, 21)), 2, 0)
    write_png(os.path.join(src, 'gray4bit.png'), rng.randint(0, 16, (11, 21)), 4, 0)
    write_png(os.path.join(src, 'gray_trns.png'), gray, 8, 0, trns=struct.pack('>H', int(gray[0, 0])))
    g16 = rng.randint(0, 65536, (17, 33))
    g16[0, :8] = [0, 1, 255, 256, 257, 1000, 32768, 65535]
    write_png(os.path.join(src, 'gray16.png'), g16, 16, 0)
    write_png(os.path.join(src, 'gray16_small.png'), rng.randint(0, 300, (17, 33)), 16, 0)
    write_png(os.path.join(src, 'gray_alpha16.png'), rng.randint(0, 65536, (17, 33, 2)), 16, 4)
    write_png(os.path.join(src, 'rgb16.png'), rng.randint(0, 65536, (17, 33, 3)), 16, 2)
    write_png(os.path.join(src, 'rgba16.png'), rng.randint(0, 65536, (17, 33, 4)), 16, 6)
    write_png(os.path.join(src, 'interlaced.png'), synth_rgb(37, 23, 11), 8, 2, interlace=True)
    write_png(os.path.join(src, 'interlaced_pal2bit.png'), rng.randint(0, 4, (19, 13)), 2, 3,
              plte=[0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255], interlace=True)
    write_png(os.path.join(src, 'interlaced16.png'), rng.randint(0, 65536, (9, 10, 3)), 16, 2, interlace=True)
    for n in ['rgba', 'gray', 'gray_alpha', 'palette_trns', 'palette4bit', 'palette_oob', 'gray1bit',
              'gray2bit', 'gray4bit', 'gray_trns', 'gray16', 'gray16_small', 'gray_alpha16', 'rgb16',
              'rgba16', 'interlaced', 'interlaced_pal2bit', 'interlaced16']:
        out.append((n, n + '.png', 'decode'))

    # JPEG variants (decode against PIL within the stated tolerance)
    photo_arr = chelsea().resize((97, 65))
    photo_arr.save(os.path.join(src, 'jpeg444.jpg'), quality=95, subsampling=0)
    photo_arr.save(os.path.join(src, 'progressive.jpg'), quality=85, progressive=True)
    photo_arr.convert('L').save(os.path.join(src, 'gray.jpg'), quality=90)
    photo_arr.convert('CMYK').save(os.path.join(src, 'cmyk.jpg'), quality=90)
    for n in ['jpeg444', 'progressive', 'gray', 'cmyk']:
        out.append((n + '_jpg', n + '.jpg', 'decode'))

    # WebP
    photo_arr.save(os.path.join(src, 'lossless.webp'), lossless=True)
    photo_arr.save(os.path.join(src, 'lossy.webp'), quality=80)
    Image.fromarray(rgba, 'RGBA').save(os.path.join(src, 'lossy_alpha.webp'), quality=80)
    for n in ['lossless', 'lossy', 'lossy_alpha']:
        out.append((n + '_webp', n + '.webp', 'decode'))
    return out


def sampled(t):
    return t[:, :, ::14, ::14].contiguous()  # [T,3,32,32]


def main(out_dir):
    for d in ['src', 'decoded', 'tiles', 'resize', 'norm']:
        os.makedirs(os.path.join(out_dir, d), exist_ok=True)
    src = os.path.join(out_dir, 'src')
    manifest = {'tile_size': S, 'max_values': MAX_VALUES, 'images': [], 'resize': [],
                'norm_sample_stride': 14}
    norm_cases = {('square', 6), ('photo', 6), ('tie_wide250x100', 6), ('tiny27', 1), ('photo_jpg', 10)}
    for name, fname, kind in make_sources(src):
        path = os.path.join(src, fname)
        with Image.open(path) as im0:
            pil_mode = im0.mode
            rgb = im0.convert('RGB')
        rgb.load()
        entry = {'name': name, 'file': 'src/' + fname, 'pil_mode': pil_mode, 'width': rgb.size[0],
                 'height': rgb.size[1], 'max': {}}
        # Raw decode goldens for the small images only (the big PNG sources are plain 8-bit RGB,
        # the path the small ones already cover; their tiles check the decode anyway).
        if rgb.size[0] * rgb.size[1] <= 20000:
            np.asarray(rgb).tofile(os.path.join(out_dir, 'decoded', name + '.rgb'))
            entry['decoded'] = 'decoded/' + name + '.rgb'
        if kind == 'tiles':
            for m in MAX_VALUES:
                grid = grid_of(rgb, m)
                tiles = dynamic_preprocess(rgb, image_size=S, use_thumbnail=True, max_num=m)
                tfile = 'tiles/%s_%dx%d.png' % (name, grid[0], grid[1])
                if not os.path.exists(os.path.join(out_dir, tfile)):
                    save_tile_strip(tiles, os.path.join(out_dir, tfile))
                rec = {'cols': grid[0], 'rows': grid[1], 'tiles': len(tiles), 'strip': tfile}
                if (name, m) in norm_cases:
                    px = load_image(path, input_size=S, max_num=m)
                    assert px.shape[0] == len(tiles)
                    nfile = 'norm/%s_max%d.f32' % (name, m)
                    sampled(px).numpy().astype('<f4').tofile(os.path.join(out_dir, nfile))
                    rec['norm'] = nfile
                entry['max'][str(m)] = rec
        manifest['images'].append(entry)

    # resize-only goldens on PIL's decode of chelsea.png (451x300): downscales of several factors,
    # one axis only, and an upscale; all PIL BICUBIC (Image.resize's default).
    with Image.open(os.path.join(src, 'chelsea.png')) as im:
        big = im.convert('RGB')
    for (w, h) in [(448, 448), (200, 133), (97, 211), (37, 25), (451, 120), (120, 300), (1, 1), (503, 7),
                   (600, 250), (1000, 299), (400, 30), (311, 20), (312, 20)]:
        f = 'resize/chelsea_%dx%d.png' % (w, h)
        big.resize((w, h)).save(os.path.join(out_dir, f), optimize=True)
        manifest['resize'].append({'source': 'src/chelsea.png', 'width': w, 'height': h, 'file': f})

    # ToTensor + Normalize on every byte value
    ramp = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)  # 1x256 RGB
    t = T.Compose([T.ToTensor(), T.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD)])
    lut = t(Image.fromarray(ramp)).reshape(3, 256)
    lut.numpy().astype('<f4').tofile(os.path.join(out_dir, 'norm', 'lut.f32'))
    manifest['norm_lut'] = 'norm/lut.f32'

    with open(os.path.join(out_dir, 'manifest.json'), 'w') as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write('\n')


def bench(jpeg_path, repeats=5):
    """PIL+torchvision load_image on a 4000x3000 JPEG (written here, not committed)."""
    if not os.path.exists(jpeg_path):
        big = chelsea().resize((4000, 3000))
        big.save(jpeg_path, quality=90)
    torch.set_num_threads(os.cpu_count() or 1)
    for m in (10, 12):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            px = load_image(jpeg_path, max_num=m)
            times.append(time.perf_counter() - t0)
        print('PIL+torchvision load_image(4000x3000 JPEG, max_num=%d): %d tiles, median %.1f ms, min %.1f ms'
              % (m, px.shape[0], 1000 * sorted(times)[len(times) // 2], 1000 * min(times)))


if __name__ == '__main__':
    args = [a for a in sys.argv[1:]]
    if '--bench' in args:
        i = args.index('--bench')
        bench(args[i + 1])
        del args[i:i + 2]
        if not args:
            sys.exit(0)
    here = os.path.dirname(os.path.abspath(__file__))
    main(args[0] if args else os.path.join(here, '..', '..', 'tests', 'data', 'images'))
