"""CapabilityPack: one transferred key as a file (its directions, source key, factored map and provenance) that loads,
checks that it fits a target, composes with others and compares with them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from unlock_eval.cache import CorruptArtifactError, fingerprint, load_artifact, save_artifact, sha256_of
from unlock_eval.errors import ConfigError
from unlock_eval.methods.unlock.align import SubspaceMap
from unlock_eval.methods.unlock.masterkey import MasterKey
from unlock_eval.methods.unlock.steer import unit_vector

PACK_VERSION = 1
SUFFIX = ".safetensors"
# names pickles go by: a pack is never one (loading a pickle runs whatever code it holds)
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt", ".joblib", ".npy", ".npz")
# what every pack's metadata holds (unlock-eval pack writes them all; `pack inspect` shows them)
REQUIRED_FIELDS = {
    "pack_version": "the pack layout's version",
    "unlock_eval_version": "the unlock-eval that made it",
    "created": "when (UTC)",
    "models": "target, source and source_locked: spec, identity (content hashes, revisions)",
    "target_shape": "the target's decoder layer count and hidden size",
    "hyperparameters": "every argument of the run that made the key (n, k, aggregator, layer_map, ...)",
    "templates": "the locked and unlocked templates and their sha256",
    "extraction": "the extraction set, its n and the sha256 of its questions",
    "dtypes": "the concrete dtype of each stage",
    "diagnostics": "per target layer rows and the verdict (null when n < 4 or native)",
    "hashes": "the cache keys and checksums of the key and map",
}


@dataclass
class CapabilityPack:
    """`target_key` `[L_t, d_t]` is what steers the target (one direction per target layer); `source_key`
    `[L_s, d_s]` and `subspace_map` (None: native, the source is the target) are how it was made; `target_norms`
    `[L_t]` is the mean norm of the target's final-token states (what a fixed-vector export scales by); `provenance`
    holds REQUIRED_FIELDS and, for a pack made from a results folder, `applied` (what that run steered with)."""

    target_key: MasterKey
    source_key: MasterKey
    subspace_map: SubspaceMap | None
    target_norms: torch.Tensor
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def num_layers(self) -> int:
        return self.target_key.num_layers

    @property
    def hidden_size(self) -> int:
        return self.target_key.hidden_size

    def norms(self) -> torch.Tensor:
        """The target-space direction's norm per target layer `[L_t]`."""
        return self.target_key.vectors.double().norm(dim=-1).float()

    def cosine(self, other: CapabilityPack, names: Sequence[str] = ("first", "second")) -> torch.Tensor:
        """Per target layer cosine between two packs' directions (packs for one target only; `names`: how a refusal
        names the two, e.g. their files)."""
        check_same_target([self, other], names)
        return self.target_key.cosine(other.target_key)

    # ------------------------------------------------------------------ file layout
    def to_artifact(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {"target_key": self.target_key.vectors, "source_key": self.source_key.vectors}
        tensors["target_norms"] = self.target_norms.detach().float().cpu()
        meta: dict[str, Any] = {
            "artifact": "CapabilityPack",
            **self.provenance,
            "pack_version": PACK_VERSION,
            "target_key_metadata": self.target_key.to_artifact()[1],
            "source_key_metadata": self.source_key.to_artifact()[1],
            "map_metadata": None,
        }
        if self.subspace_map is not None:
            map_tensors, meta["map_metadata"] = self.subspace_map.to_artifact()
            tensors.update({f"map.{name}": t for name, t in map_tensors.items()})
        return tensors, meta

    def save(self, path: str | os.PathLike) -> str:
        """Write the pack atomically (safetensors, metadata as JSON); returns the file's sha256."""
        path = Path(path)
        if path.suffix != SUFFIX:
            raise ConfigError(f"{path}: a capability pack is a {SUFFIX} file")
        save_artifact(path, *self.to_artifact())
        return sha256_of(path)

    @classmethod
    def load(cls, path: str | os.PathLike, arg: str | None = None) -> CapabilityPack:
        """Read and check a pack; every problem is one ConfigError naming the file (as `arg=PATH` when given)."""
        where = f"{arg}={path}" if arg else str(path)
        check_pack_name(path, arg)
        try:
            tensors, meta = load_artifact(path)
        except CorruptArtifactError as exc:
            raise ConfigError(f"{where}: corrupt or not a capability pack ({_reason(exc, path)})") from None
        except ConfigError:
            raise ConfigError(f"{where}: no such file") from None
        kind = meta.get("artifact")
        if kind != "CapabilityPack":
            raise ConfigError(
                f"{where}: a {kind or 'safetensors'} file, not a capability pack (make one with unlock-eval pack)"
            )
        missing = [name for name in REQUIRED_FIELDS if name not in meta]
        if missing:
            raise ConfigError(f"{where}: metadata field {missing[0]!r} is missing ({REQUIRED_FIELDS[missing[0]]})")
        if meta["pack_version"] != PACK_VERSION:
            raise ConfigError(f"{where}: pack_version {meta['pack_version']!r}; this unlock-eval reads {PACK_VERSION}")
        absent = [name for name in ("target_key", "source_key", "target_norms") if name not in tensors]
        if absent:
            raise ConfigError(f"{where}: tensor {absent[0]!r} is missing")
        try:
            pack = cls._from_parts(tensors, meta)
        except (ConfigError, KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: inconsistent pack ({exc})") from None
        shape = meta["target_shape"]
        if [shape.get("num_layers"), shape.get("hidden_size")] != [pack.num_layers, pack.hidden_size]:
            raise ConfigError(
                f"{where}: target_shape says {shape} but the directions are [{pack.num_layers}, {pack.hidden_size}]"
            )
        return pack

    @classmethod
    def _from_parts(cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> CapabilityPack:
        provenance = {k: v for k, v in meta.items() if k not in _LAYOUT_KEYS}
        target_key = MasterKey.from_artifact({"vectors": tensors["target_key"]}, meta["target_key_metadata"])
        source_key = MasterKey.from_artifact({"vectors": tensors["source_key"]}, meta["source_key_metadata"])
        smap = None
        if meta.get("map_metadata") is not None:
            parts = {name: tensors[f"map.{name}"] for name in ("Vs", "M", "Vt")}
            smap = SubspaceMap.from_artifact(parts, meta["map_metadata"])
        norms = tensors["target_norms"]
        if norms.shape != (target_key.num_layers,):
            raise ConfigError(f"target_norms of shape {tuple(norms.shape)} for {target_key.num_layers} layers")
        return cls(target_key, source_key, smap, norms, provenance)

    # ------------------------------------------------------------------ fitting a target
    def check_target(self, identity: dict[str, Any], target: str, arg: str = "key") -> None:
        """Refuse, in one line, a target whose identity is not the pack's."""
        made_for = self.provenance["models"]["target"]
        if not same_model(made_for["identity"], identity):
            raise ConfigError(
                f"{arg}: this pack was made for target {made_for['spec']} ({describe_identity(made_for['identity'])}); "
                f"this run's target {target} is another model ({describe_identity(identity)}); make a pack for it "
                "with unlock-eval pack, or pass key_target_check=shape to apply it to a model of the same shape"
            )

    def check_shape(self, num_layers: int, hidden_size: int | None, target: str, arg: str = "key") -> None:
        """Refuse, in one line, a target of another layer count or hidden size."""
        if num_layers != self.num_layers:
            raise ConfigError(
                f"{arg}: this pack steers {self.num_layers} decoder layers; target {target} has {num_layers}"
            )
        if hidden_size is not None and hidden_size != self.hidden_size:
            raise ConfigError(
                f"{arg}: this pack's directions have hidden size {self.hidden_size}; target {target} has {hidden_size}"
            )


_LAYOUT_KEYS = ("artifact", "pack_version", "target_key_metadata", "source_key_metadata", "map_metadata")


def _reason(exc: Exception, path: str | os.PathLike) -> str:
    return str(exc).replace(f"{path}: ", "")


def check_pack_name(path: str | os.PathLike, arg: str | None = None) -> None:
    """A pack's file name: .safetensors; pickles and llama.cpp's .gguf are named apart, in one line."""
    suffix = Path(path).suffix.lower()
    where = f"{arg}={path}" if arg else str(path)
    if suffix in PICKLE_SUFFIXES:
        raise ConfigError(
            f"{where}: a pickle file name ({suffix}); capability packs are {SUFFIX} files, and unlock-eval never "
            "unpickles (loading a pickle can run any code it holds)"
        )
    if suffix == ".gguf":
        raise ConfigError(
            f"{where}: a .gguf control vector is llama.cpp's format (unlock-eval pack --format gguf writes it for "
            f"llama.cpp); unlock-eval reads the {SUFFIX} pack it was made from"
        )
    if suffix != SUFFIX:
        raise ConfigError(f"{where}: expected a {SUFFIX} capability pack (unlock-eval pack writes them)")


def same_model(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two identities name the same weights: equal, or equal in their content hashes (an embedded model and its .gguf
    file; a local folder and another copy of it)."""
    if fingerprint(a) == fingerprint(b):
        return True
    for content in ("gguf_sha256", "files"):
        if a.get(content) is not None and a.get(content) == b.get(content):
            return True
    return False


def describe_identity(identity: dict[str, Any]) -> str:
    """An identity in a few words: its content hash or revision."""
    if identity.get("gguf_sha256"):
        return f"gguf sha256 {identity['gguf_sha256'][:12]}"
    if identity.get("files"):
        return f"files {fingerprint(identity['files'])[:12]}"
    if identity.get("revision"):
        return f"{identity.get('repo', identity.get('name', 'hub'))} at {str(identity['revision'])[:12]}"
    return f"identity {fingerprint(identity)[:12]}"


def check_same_target(packs: Sequence[CapabilityPack], names: Sequence[str]) -> None:
    """Packs used together steer one target: same identity and shape, else one line naming the two."""
    first = packs[0]
    for pack, name in zip(packs[1:], names[1:]):
        a, b = first.provenance["models"]["target"], pack.provenance["models"]["target"]
        if (pack.num_layers, pack.hidden_size) != (first.num_layers, first.hidden_size):
            raise ConfigError(
                f"{names[0]} and {name} steer targets of different shapes ([{first.num_layers}, {first.hidden_size}] "
                f"and [{pack.num_layers}, {pack.hidden_size}])"
            )
        if not same_model(a["identity"], b["identity"]):
            raise ConfigError(f"{names[0]} was made for target {a['spec']}, {name} for {b['spec']}: one target only")


def compose(packs: Sequence[CapabilityPack], weights: Sequence[float], names: Sequence[str]) -> MasterKey:
    """The steering vector of several packs per target layer: sum_i w_i * r_i / ||r_i|| (in float64; a pack's zero
    layers add nothing), not normalised again, so weights scale like llama.cpp's --control-vector-scaled (one pack at
    weight 1 is its unit direction; at 0.5 + 0.5 with itself, the same)."""
    check_same_target(packs, names)
    total = torch.zeros(packs[0].num_layers, packs[0].hidden_size, dtype=torch.float64)
    for pack, weight in zip(packs, weights):
        for layer, vector in enumerate(pack.target_key.vectors):
            unit = unit_vector(vector)
            if unit is not None:
                total[layer] += weight * unit
    return MasterKey(total.float(), {"composed": [{"pack": n, "weight": w} for n, w in zip(names, weights)]})
