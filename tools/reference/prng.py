"""The checkpoint PRNG of docs/CHECKPOINTS.md, in vectorised numpy, bit-exact with `sailvl make-model`.

Every weight element is a pure function of (tensor name, element index, seed): a counter-based
generator (SplitMix64's finaliser `mix`, keyed by the FNV-1a-64 hash of the name), so any element
can be produced without generating the ones before it, in any order, on any number of threads.

numpy note: arithmetic on uint64 *arrays* wraps modulo 2**64 silently, which is exactly the
C++ semantics we need; arithmetic on numpy uint64 *scalars* may warn on overflow, and Python ints
never wrap. So scalar parts (the per-tensor `base`) are computed with Python ints and an explicit
`& MASK64`, and the per-element part runs on uint64 arrays only.
"""

from __future__ import annotations

import math

import numpy as np

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3

# Elements generated per numpy batch: bounds the temporaries (a few uint64 arrays of this size).
CHUNK = 1 << 22


def mix_int(z: int) -> int:
    """SplitMix64 finaliser on a Python int (mod 2**64)."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def mix_array(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a uint64 array (numpy array arithmetic wraps mod 2**64)."""
    assert z.dtype == np.uint64
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def fnv1a64(data: bytes) -> int:
    h = FNV_OFFSET
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & MASK64
    return h


def fnv1a64_hex(data: bytes) -> str:
    """FNV-1a-64 of a byte string as 16 lower-case hex digits (the weights.json spelling)."""
    # The recurrence is serial (no vectorised form), so this is a plain loop: ~4 s per 20 MB.
    h = FNV_OFFSET
    prime = FNV_PRIME
    for b in memoryview(data).cast("B"):
        h = ((h ^ b) * prime) & MASK64
    return f"{h:016x}"


def base(name: str, seed: int = 0) -> int:
    """base(name, seed) = fnv1a64(utf8(name)) ^ mix(seed * GOLDEN)."""
    return fnv1a64(name.encode("utf-8")) ^ mix_int(seed * GOLDEN)


def uniform_pm1(name: str, count: int, seed: int = 0, start: int = 0) -> np.ndarray:
    """r(name, i) = 2*u - 1 for i in [start, start+count), as float64 (exact: 24-bit values)."""
    b = np.uint64(base(name, seed))
    i = np.arange(start + 1, start + count + 1, dtype=np.uint64)  # (i + 1)
    z = mix_array(b + i * np.uint64(GOLDEN))
    u = (z >> np.uint64(40)).astype(np.float64) / float(1 << 24)
    return 2.0 * u - 1.0


def f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns, round to nearest even (NaN kept quiet), as uint16."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    r = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    r = np.where(nan, (u >> np.uint32(16)) | np.uint32(0x0040), r)
    return r.astype(np.uint16)


def bf16_bits_to_f32(h: np.ndarray) -> np.ndarray:
    return (h.astype(np.uint32) << np.uint32(16)).view(np.float32)


def init_rule(name: str, shape: tuple[int, ...]) -> tuple[float, float]:
    """(offset, scale) for a tensor, per the table in docs/CHECKPOINTS.md (both float32 values).

    The rows are tested in table order; the first that applies wins.
    """
    f32 = lambda v: float(np.float32(v))  # noqa: E731  -- "scale and offset are float32 values"
    one_d = len(shape) == 1
    if name.endswith("embed_tokens.weight") or name.endswith("lm_head.weight"):
        return 0.0, f32(0.1)
    if one_d and name.endswith(".weight") and ("norm" in name or name == "mlp1.0.weight"):
        return 1.0, f32(0.1)
    if one_d and name.endswith(".bias"):
        return 0.0, f32(0.02)
    if name.endswith(".ls1") or name.endswith(".ls2"):
        return f32(0.5), f32(0.1)
    if name.endswith("class_embedding") or name.endswith("position_embedding") or name.endswith("pos_embed"):
        return 0.0, f32(0.1)
    if len(shape) >= 2:
        fan_in = math.prod(shape[1:])
        return 0.0, f32(1.0 / math.sqrt(fan_in))
    raise ValueError(f"no init rule for 1-D tensor {name} {shape}")


def tensor_bf16_bits(name: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """The BF16 bit patterns (uint16, C order, `shape`) that make-model writes for this tensor."""
    offset, scale = init_rule(name, shape)
    n = math.prod(shape)
    out = np.empty(n, dtype=np.uint16)
    for s in range(0, n, CHUNK):
        c = min(CHUNK, n - s)
        v = offset + scale * uniform_pm1(name, c, seed, s)  # exact in float64 (see CHECKPOINTS.md)
        out[s:s + c] = f32_to_bf16_bits(v.astype(np.float32))  # f64 -> f32 is RNE in numpy
    return out.reshape(shape)


def scalar_r(name: str, i: int, seed: int = 0) -> float:
    """r(name, i) for one element, the slow obvious way (Python ints): cross-checks the vector code."""
    z = mix_int((base(name, seed) + (i + 1) * GOLDEN) & MASK64)
    return 2.0 * ((z >> 40) / 2.0**24) - 1.0


def self_test() -> None:
    """Vectorised path == scalar path on scattered elements of a few tensors (run by make_fixtures)."""
    import struct

    for name, shape in [("language_model.model.embed_tokens.weight", (151936, 256)),
                        ("vision_model.encoder.layers.0.ls1", (128,)),
                        ("mlp1.0.weight", (512,)),
                        ("vision_model.encoder.layers.1.attn.qkv.bias", (384,))]:
        n = math.prod(shape)
        offset, scale = init_rule(name, shape)
        for seed in (0, 7):
            idx = [0, 1, n // 3, n - 1]
            vec = tensor_bf16_bits(name, shape, seed).reshape(-1)
            for i in idx:
                v = offset + scale * scalar_r(name, i, seed)
                f = struct.unpack("<f", struct.pack("<f", v))[0]  # f64 -> f32 (RNE)
                u = struct.unpack("<I", struct.pack("<f", f))[0]
                want = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
                assert vec[i] == want, (name, seed, i, vec[i], want)
    assert fnv1a64(b"") == FNV_OFFSET and fnv1a64(b"a") == 0xAF63DC4C8601EC8C  # published FNV-1a test vectors
