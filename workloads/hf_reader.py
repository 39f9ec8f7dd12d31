"""Reading one Hugging Face config.json's keys, each checked once (workloads/hf_config.py maps
them): HFConfigError names the file, the key, the value and what was expected.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sim.errors import MemwallError
from workloads.model import Activation

GELUS = ("gelu", "gelu_new", "gelu_fast", "gelu_pytorch_tanh", "gelu_python", "quick_gelu")
#: rope_scaling types: each changes the rotary frequencies only, never a shape or a FLOP count
ROPE_TYPES = ("default", "linear", "dynamic", "yarn", "longrope", "su", "llama3")


MAX_JSON_DEPTH = 32  # nested objects and arrays; a config.json needs 3
MAX_DIGITS = 100  # digits of one number; a config.json's longest is about 20
_TOKENS = re.compile(r'"(?:[^"\\\n]|\\.)*"?|[\[\]{}\n]|-?[0-9][0-9.eE+-]{' + str(MAX_DIGITS) + ',}')


class HFConfigError(MemwallError):
    """A config.json that cannot be mapped: file, key, value and what was expected."""


def load_json(data: bytes, source: str) -> dict[str, Any]:
    """The top-level object of a config.json's bytes, refusing (at its line) what is not UTF-8,
    nesting deeper than MAX_JSON_DEPTH, numbers longer than MAX_DIGITS and duplicate keys."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise HFConfigError(f"{source}:{line}: not UTF-8 text (byte {err.start}, "
                            f"0x{data[err.start]:02x}); expected a JSON config.json") from None
    line, depth = 1, 0
    for m in _TOKENS.finditer(text):  # one pass before parsing: json.loads recurses
        tok = m.group()
        if tok == "\n":
            line += 1
        elif tok in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise HFConfigError(f"{source}:{line}: nested deeper than {MAX_JSON_DEPTH} "
                                    "levels; expected a config.json of plain keys and values")
        elif tok in "]}":
            depth -= 1
        elif not tok.startswith('"'):
            raise HFConfigError(f"{source}:{line}: a number of {len(tok)} characters, "
                                f"too long; expected at most {MAX_DIGITS} digits")

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                at = [text[: m.start()].count("\n") + 1
                      for m in re.finditer(re.escape(json.dumps(key)) + r"\s*:", text)]
                where = f"{source}:{at[1]}" if len(at) > 1 else source
                raise HFConfigError(f"{where}: duplicate key {key!r} (first at line "
                                    f"{at[0] if at else '?'}); expected each key once")
            out[key] = value
        return out

    try:
        raw = json.loads(text, object_pairs_hook=unique)
    except json.JSONDecodeError as err:
        raise HFConfigError(f"{source}:{err.lineno}: invalid JSON: {err.msg} "
                            f"(column {err.colno})") from None
    if not isinstance(raw, dict):
        raise HFConfigError(f"{source}: top level is {type(raw).__name__}: expected an object")
    return raw


class Reader:
    def __init__(self, path: str, raw: dict[str, Any]) -> None:
        self.path, self.raw = path, raw
        self.model_type = raw.get("model_type")

    def fail(self, key: str, value: object, expected: str) -> HFConfigError:
        return HFConfigError(f"{self.path}: key {key!r} = {value!r}: expected {expected}")

    def get(self, key: str, *aliases: str) -> object:
        for k in (key, *aliases):
            if k in self.raw:
                return self.raw[k]
        return None

    def integer(self, key: str, default: int | None = None, *aliases: str) -> int:
        found = next((k for k in (key, *aliases) if k in self.raw), None)
        value = self.raw[found] if found is not None else default
        if value is None and found is None:
            raise HFConfigError(f"{self.path}: missing key {key!r}: expected a positive int "
                                f"for model_type {self.model_type!r}")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.fail(found or key, value, "a positive int")
        return value

    def opt_int(self, key: str, default: int) -> int:
        """`key` if set (not null), else `default` (which may be 0)."""
        return default if self.raw.get(key) is None else self.integer(key)

    def flag(self, key: str, default: bool) -> bool:
        value = self.raw.get(key, default)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(key, value, "true or false")
        return value

    def number(self, key: str, default: float) -> float:
        value = self.raw.get(key, default)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
            raise self.fail(key, value, "a number in (0, 1]")
        return float(value)

    def choice(self, key: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.raw.get(key, default)
        if value not in allowed:
            raise self.fail(key, value, f"one of {', '.join(allowed)}")
        return value

    def refuse(self, key: str, allowed: tuple[object, ...], why: str) -> None:
        """Refuse `key` unless it is absent or one of `allowed` (a feature not modelled)."""
        if key in self.raw and self.raw[key] not in allowed:
            shown = " or ".join(json.dumps(a) for a in allowed)
            raise self.fail(key, self.raw[key], f"{shown} ({why} is not modelled)")

    def gelu_or_relu(self, key: str, default: str) -> Activation:
        value = self.choice(key, default, (*GELUS, "relu"))
        return "relu" if value == "relu" else "gelu"

    def heads(self, d: int, heads: int, d_key: str, h_key: str) -> int:
        """d_head: head_dim when the config gives it, else d_model / heads."""
        if self.raw.get("head_dim") is not None:
            return self.integer("head_dim")
        if d % heads:
            raise self.fail(h_key, heads, f"a divisor of {d_key} = {d}")
        return d // heads

    def kv_heads(self, key: str, heads: int, h_key: str = "num_attention_heads") -> int:
        kv = self.opt_int(key, heads)
        if heads % kv:
            raise self.fail(key, kv, f"a divisor of {h_key} = {heads}")
        return kv

    def rotary(self, dh: int, key: str, value: float) -> int:
        """Rotated dims per head for a fraction `value` of d_head (`key` names it)."""
        rot = int(dh * value)
        if rot < 2 or rot % 2:
            raise self.fail(key, value, f"a fraction of head dim {dh} giving an even number "
                                        "of rotated dims")
        return 0 if rot == dh else rot

    def rope_scaling(self) -> None:
        rs = self.raw.get("rope_scaling")
        if rs is None:
            return
        if not isinstance(rs, dict):
            raise self.fail("rope_scaling", rs, "null or an object")
        kind_key = "rope_type" if "rope_type" in rs else "type"
        kind = rs.get(kind_key, "default")
        if kind not in ROPE_TYPES:
            raise self.fail(f"rope_scaling.{kind_key}", kind,
                            f"one of {', '.join(ROPE_TYPES)} (a type memwall does not know "
                            "may change shapes)")

    def window(self, key: str = "sliding_window") -> int:
        """A window over every layer: 0 when the key is absent or null."""
        return self.opt_int(key, 0)

    def layer_types(self, n_layers: int, window: int, global_every: int) -> None:
        """Check a `layer_types` list (newer configs) against the window pattern mapped."""
        types = self.raw.get("layer_types")
        if types is None:
            return
        if not isinstance(types, list) or len(types) != n_layers:
            raise self.fail("layer_types", types, f"a list of {n_layers} layer types")
        want = ["full_attention" if not window or (
            global_every and i % global_every == global_every - 1) else "sliding_attention"
                for i in range(n_layers)]
        if types != want:
            pattern = ("all full_attention" if not window else
                       "all sliding_attention" if not global_every else
                       f"full_attention every {global_every}th layer, sliding_attention "
                       "otherwise")
            raise self.fail("layer_types", types, f"{pattern}, as its sliding_window says "
                                                  "(other patterns are not modelled)")
