"""Bring your own model: a TorchScript encoder + decoder pair (or one scripted module with
``encode`` / ``decode`` methods), named by a small TOML file.

Why TorchScript: it is the one format that carries an arbitrary architecture without its Python
source, so a model from any library opens here. The archives are stored *inside*
``model.safetensors`` as uint8 tensors (``encoder_program`` / ``decoder_program``, or
``module_program``), so the checkpoint folder stays card + safetensors and moves as one piece; the
modules are rebuilt with ``torch.jit.load`` when the weights are loaded. Loading such a checkpoint
runs its TorchScript program (TorchScript, not Python: it cannot import modules or call
``os.system``), so open TorchScript imports only from people you trust, as you would run their model.

The TOML (paths relative to it)::

    encoder = "encoder.pt"        # [B, C, 64, 64] in [0, 1] -> [B, D]
    decoder = "decoder.pt"        # [B, D] -> [B, C, 64, 64] logits (or output = "probabilities")
    # module = "model.pt"         # instead: one module with encode(x) and decode(z)
    dataset = "dsprites"          # optional; must equal --dataset when both are given
    [latents]
    kind = "gaussian"             # gaussian | deterministic | quantised | uniform (default deterministic)
    kinds = ["gaussian", ...]     # optional, one per latent
    ranges = [[-3, 3], ...]       # optional slider ranges; deterministic ones default to the data's range
    codebooks = [[-1, 0, 1], ...] # values of quantised latents
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from disviz.core.errors import UserError
from disviz.core.limits import parse_toml
from disviz.data.base import DatasetInfo
from disviz.importers.base import LATENT_KINDS, ImportedConfig, ImportedModel, file_sha256
from disviz.importers.errors import ModelImportError
from disviz.models.base import ConfigError

__all__ = ["TorchScriptConfig", "TorchScriptModel", "convert", "read_spec"]

_PROBS_EPS = 1e-4  # clamp before logit() for decoders that output probabilities
MAX_PROGRAM_BYTES = 200 * 1024**2  # load_checkpoint counts the stored bytes against its parameter limit
MAX_SPEC_BYTES = 64 * 1024
_SPEC_KEYS = {"encoder", "decoder", "module", "dataset", "latents", "output", "name"}
_LATENT_KEYS = {"kind", "kinds", "ranges", "codebooks"}


@dataclass
class TorchScriptConfig(ImportedConfig):
    """Sizes of the stored archives (so the model can be built on the meta device) and the decoder's output."""

    latent_kind: str = "deterministic"
    program_bytes: list[int] | None = None  # [encoder, decoder] or [module]
    decoder_output: str = "logits"  # or "probabilities"

    def validate(self) -> None:
        super().validate()
        sizes = self.program_bytes or []
        if len(sizes) not in (1, 2) or not all(isinstance(n, int) and 0 < n <= MAX_PROGRAM_BYTES for n in sizes):
            raise ConfigError(f"program_bytes {self.program_bytes!r} must be one or two sizes in bytes")
        if self.decoder_output not in ("logits", "probabilities"):
            raise ConfigError(f"decoder_output {self.decoder_output!r}: use logits or probabilities")


class TorchScriptModel(ImportedModel):
    """Your scripted modules behind the disviz interface."""

    name = "torchscript"
    config_class = TorchScriptConfig

    def __init__(self, config: TorchScriptConfig, dataset_info: DatasetInfo):
        super().__init__(config, dataset_info)
        sizes = list(config.program_bytes or [])
        names = ["encoder_program", "decoder_program"] if len(sizes) == 2 else ["module_program"]
        for name, n in zip(names, sizes, strict=True):
            self.register_buffer(name, torch.zeros(n, dtype=torch.uint8))  # the archive's bytes: [n]
        self._scripts: dict[str, torch.jit.ScriptModule] = {}
        self.register_load_state_dict_post_hook(lambda module, _keys: module.compile_programs())

    def compile_programs(self) -> None:
        """Rebuild the scripted modules from the stored archive bytes (after weights are loaded)."""
        self._scripts = {}
        for name, buf in self.named_buffers():
            if name.endswith("_program") and buf.device.type != "meta":
                data = bytes(buf.cpu().numpy().tobytes())
                try:
                    m = torch.jit.load(io.BytesIO(data), map_location="cpu")
                except Exception as exc:  # torch raises RuntimeError / ValueError / its own types
                    raise ModelImportError(f"stored TorchScript {name} cannot be loaded ({_first_line(exc)})") from None
                self._scripts[name.removesuffix("_program")] = m.eval()

    def _apply(self, fn: Any, recurse: bool = True) -> TorchScriptModel:
        super()._apply(fn, recurse)
        for m in self._scripts.values():
            m._apply(fn)
        return self

    def _device(self) -> torch.device:
        m = next(iter(self._scripts.values()), None)
        p = next(iter(m.parameters()), None) if m is not None else None
        return p.device if p is not None else torch.device("cpu")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if "module" in self._scripts:
            z = self._scripts["module"].encode(x.to(self._device()))
        else:
            z = self._scripts["encoder"](x.to(self._device()))
        return z.float().to(x.device)  # [B, D]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if "module" in self._scripts:
            out = self._scripts["module"].decode(z.to(self._device()))
        else:
            out = self._scripts["decoder"](z.to(self._device()))
        out = out.float().to(z.device)  # [B, C, 64, 64]
        if self.config.decoder_output == "probabilities":
            return torch.logit(out.clamp(_PROBS_EPS, 1 - _PROBS_EPS))
        return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_spec(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The import TOML, checked: known keys, files that exist, latent kinds known."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(MAX_SPEC_BYTES + 1)
        if len(text) > MAX_SPEC_BYTES:
            raise ModelImportError(f"{path} is larger than {MAX_SPEC_BYTES // 1024} kB; an import spec is a few lines")
        spec = parse_toml(text, str(path))
    except UserError as exc:
        raise ModelImportError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelImportError(f"cannot read {path} ({exc})") from None
    unknown = sorted(set(spec) - _SPEC_KEYS)
    if unknown:
        raise ModelImportError(f"{path}: unknown key(s) {unknown}; known: {sorted(_SPEC_KEYS)}")
    pair, single = "encoder" in spec or "decoder" in spec, "module" in spec
    if pair == single or (pair and not ("encoder" in spec and "decoder" in spec)):
        raise ModelImportError(
            f"{path}: name either encoder and decoder, or module (one scripted module with encode/decode)"
        )
    latents = spec.get("latents", {})
    if not isinstance(latents, dict) or set(latents) - _LATENT_KEYS:
        raise ModelImportError(f"{path}: [latents] may hold {sorted(_LATENT_KEYS)} only")
    for kind in [latents.get("kind", "deterministic"), *latents.get("kinds", [])]:
        if kind not in LATENT_KINDS:
            raise ModelImportError(f"{path}: latent kind {kind!r}; use one of {', '.join(LATENT_KINDS)}")
    if spec.get("output", "logits") not in ("logits", "probabilities"):
        raise ModelImportError(f"{path}: output = {spec['output']!r}; use logits or probabilities")
    for key in ("encoder", "decoder", "module"):
        if key in spec:
            file = path.parent / str(spec[key])
            if not file.is_file():
                raise ModelImportError(f"{path}: {key} file {file} does not exist")
            spec[key] = file
    return spec


def convert(path: Path, info: DatasetInfo) -> tuple[TorchScriptModel, dict[str, Any]]:
    """(model, provenance facts) from the TOML at ``path`` and the archives it names."""
    if path.suffix.lower() != ".toml":
        raise ModelImportError(f"{path}: TorchScript imports start from a .toml file naming the modules and dataset")
    spec = read_spec(path)
    if spec.get("dataset") not in (None, info.name):
        raise ModelImportError(f"{path} names dataset {spec['dataset']!r} but the import asked for {info.name!r}")
    files = [spec["encoder"], spec["decoder"]] if "encoder" in spec else [spec["module"]]
    programs = []
    for f in files:
        size = f.stat().st_size
        if size > MAX_PROGRAM_BYTES:
            raise ModelImportError(
                f"{f} is {size / 1e6:.0f} MB, above the {MAX_PROGRAM_BYTES / 1e6:.0f} MB limit for one module"
            )
        programs.append(torch.frombuffer(bytearray(f.read_bytes()), dtype=torch.uint8))  # [n]
    latents = spec.get("latents", {})
    # one probe encode finds D before the config (which needs D) is final
    probe = TorchScriptConfig(latent_dim=1, program_bytes=[len(p) for p in programs])
    model = TorchScriptModel(probe, info)
    _set_programs(model, programs)
    from disviz.data.base import to_tensor_batch

    x = to_tensor_batch(torch.zeros(2, 64, 64, info.channels, dtype=torch.uint8).numpy())  # x: [2, C, 64, 64]
    try:
        with torch.inference_mode():
            z = model.encode(x)
    except Exception as exc:  # a scripted module raises torch.jit.Error, RuntimeError, …
        raise ModelImportError(
            f"{path}: encoding a {info.channels}-channel 64×64 batch failed ({_first_line(exc)})"
        ) from None
    if z.ndim != 2:
        raise ModelImportError(f"{path}: the encoder returned shape {tuple(z.shape)}; it must return [B, D]")
    d = int(z.shape[1])
    kinds = list(latents.get("kinds", []))
    codebooks = [list(map(float, c)) for c in latents.get("codebooks", [])]
    try:
        config = TorchScriptConfig(
            latent_dim=d,
            latent_kind=latents.get("kind", "deterministic"),
            latent_kinds=kinds,
            codebooks=codebooks,
            program_bytes=[len(p) for p in programs],
            decoder_output=spec.get("output", "logits"),
        )
        model = TorchScriptModel(config, info)
    except ConfigError as exc:
        raise ModelImportError(f"{path}: {exc}") from None
    if "quantised" in config.kinds() and len(codebooks) != d:
        raise ModelImportError(f"{path}: quantised latents need codebooks = one list of values per latent ({d})")
    _set_programs(model, programs)
    ranges = latents.get("ranges")
    given: list[int] = []
    if ranges is not None:
        if len(ranges) != d or not all(isinstance(r, list) and len(r) == 2 for r in ranges):
            raise ModelImportError(f"{path}: ranges must hold {d} [low, high] pairs (one per latent)")
        with torch.no_grad():
            for j, (lo, hi) in enumerate(ranges):
                model.z_low[j], model.z_high[j] = float(lo), float(hi)
        given = list(range(d))
    facts = {
        "library": "torch.jit",
        "library_version": torch.__version__,
        "files": {f.name: file_sha256(f) for f in files},
        "ranges_given": given,
    }
    return model, facts


def _set_programs(model: TorchScriptModel, programs: list[torch.Tensor]) -> None:
    names = ["encoder_program", "decoder_program"] if len(programs) == 2 else ["module_program"]
    with torch.no_grad():
        for name, data in zip(names, programs, strict=True):
            getattr(model, name).copy_(data)
    model.compile_programs()
