"""A sweep's grid: base `--model_args` plus alpha, k and n axes, validated up front, in the order that reuses most.

Points run n by n (each n is one extraction), largest k first within an n (its subspace decomposition then serves
every smaller k), alpha innermost (a new alpha reuses every artifact). Before anything runs, the base arguments are
parsed once with the `unlock` adapter's own argument table and every point's typed alpha, k and n are checked by
the spec (UnlockSpec), so a bad value stops the sweep at once with the adapter's one-line error. A point reaches
lm-eval as `--model_args` text (recorded in its results file) and, reusing the loaded model, as typed values.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

from unlock_eval.errors import ConfigError
from unlock_eval.methods.unlock.align import check_rank
from unlock_eval.methods.unlock.masterkey import DEFAULT_AGGREGATOR, centers
from unlock_eval.params import as_float, as_int, parse_field

AXES = ("alpha", "k", "n")


@dataclass(frozen=True)
class Point:
    alpha: float
    k: int
    n: int

    @property
    def name(self) -> str:
        """A folder name: n32_k4_alpha0.1."""
        return f"n{self.n}_k{self.k}_alpha{self.alpha:g}"

    def label(self) -> str:
        return f"alpha={self.alpha:g} k={self.k} n={self.n}"


@dataclass
class Grid:
    """The user's `--model_args` (`base`, without the swept keys), the swept axes and the points in run order."""

    base: str
    swept: tuple[str, ...]
    points: list[Point]
    spec: object  # UnlockSpec of the first point: the models, templates, extraction set shared by every point
    hf_kwargs: dict
    skipped: list[str] = field(default_factory=list)  # points whose k does not fit their n

    def model_args(self, point: Point, share_alphas: list[float] | None = None) -> str:
        """The point's `--model_args` (with `share_alphas` when its pass generates for those alphas too)."""
        swept = [f"{axis}={arg_text(getattr(point, axis))}" for axis in self.swept]
        swept += [f"share_alphas={';'.join(arg_text(a) for a in share_alphas)}"] if share_alphas else []
        return ",".join(part for part in (self.base, *swept) if part)

    @property
    def largest_n(self) -> int:
        return max(point.n for point in self.points)


def arg_text(value: float | int) -> str:
    """A number as written into `--model_args`: short (2, 0.1) and exact (lm-eval reads back the same value)."""
    short = str(value) if isinstance(value, int) else f"{value:g}"
    return short if float(short) == value else repr(value)


def parse_axis(flag: str, text: str | None, parse) -> list | None:
    """`0.05,0.1` (or `;`/space separated) -> distinct values in the order given; None when not given."""
    if text is None:
        return None
    values = [parse(flag, part) for part in re.split(r"[,;\s]+", text.strip()) if part]
    if not values:
        raise ConfigError(f"{flag}={text!r}: give one or more values, comma-separated")
    return list(dict.fromkeys(values))


def base_arguments(model_args: str) -> dict:
    """`--model_args` as lm-eval parses it (the adapter sees exactly this)."""
    from lm_eval.utils import simple_parse_args_string

    try:
        return simple_parse_args_string(model_args)
    except Exception as exc:  # noqa: BLE001 - lm-eval's parser raises plain ValueErrors on bad syntax
        raise ConfigError(f"--model_args {model_args!r}: {exc}") from None


def pack_extraction(key: str | None) -> dict | None:
    """k, n and extract_from of the (first) capability pack in a key= argument; None without one."""
    if not key:
        return None
    from unlock_eval.methods.unlock.pack import CapabilityPack

    first = str(key).split(";")[0].strip()
    made = CapabilityPack.load(first, "key").provenance
    return {"k": made["hyperparameters"]["k"], "n": made["extraction"]["n"],
            "extract_from": made["extraction"]["extract_from"]}  # fmt: skip


def build_grid(model_args: str, alphas: str | None, ks: str | None, ns: str | None) -> Grid:
    """The grid of `--model_args` x `--alphas` x `--ks` x `--ns`, every point validated by the adapter's rules."""
    from unlock_eval.methods.unlock.spec import UnlockSpec
    from unlock_eval.model_adapters.arguments import parse_unlock_model_args

    base_text = model_args.strip().strip(",")
    base = base_arguments(base_text)
    axes = {
        "alpha": parse_axis("--alphas", alphas, as_float),
        "k": parse_axis("--ks", ks, lambda flag, v: as_int(flag, v, 1)),
        "n": parse_axis("--ns", ns, lambda flag, v: as_int(flag, v, 1)),
    }
    for axis, values in axes.items():
        if values is not None and axis in base:
            raise ConfigError(f"{axis} is swept by --{axis}s: drop {axis}= from --model_args")
    packed = pack_extraction(base.get("key"))  # key=: k, n and the extraction set are the pack's
    if packed and (axes["k"] or axes["n"]):
        raise ConfigError(
            "--ks/--ns: k and n are fixed by the capability pack in key= when it was made; sweep --alphas"
        )
    swept = tuple(axis for axis in AXES if axes[axis] is not None)
    if not swept:
        raise ConfigError("nothing to sweep: give --alphas, --ks and/or --ns (comma-separated values)")
    # an axis not swept: the base's value (or the default), parsed and checked as the spec declares it
    values = {
        axis: axes[axis]
        or ([packed[axis]] if packed and axis in packed else None)
        or [parse_field(UnlockSpec, axis, base.get(axis, UnlockSpec.__dataclass_fields__[axis].default))]
        for axis in AXES
    }
    points = [
        Point(alpha, k, n)
        for n in sorted(values["n"])
        for k in sorted(values["k"], reverse=True)
        for alpha in sorted(values["alpha"])
    ]
    grid = Grid(base_text, swept, [], None, {})
    for point in points:  # every point checked by the spec's own rules (k <= n, finite alpha, ...)
        try:
            check_rank(point.k, point.n, center=centers(base.get("aggregator", DEFAULT_AGGREGATOR)))
        except ConfigError as exc:  # k > n: a corner of a k x n grid, not a typo; said in the log and the report
            grid.skipped.append(f"{point.label()} ({exc})")
            continue
        typed = {"alpha": point.alpha} if packed else dataclasses.asdict(point)
        try:
            if grid.spec is None:  # the base arguments, parsed once as the adapter parses them
                grid.spec, grid.hf_kwargs = parse_unlock_model_args({**base, **typed})
                if packed:  # what selection keeps apart from the dev rows: the pack's extraction set
                    grid.spec = dataclasses.replace(grid.spec, **packed)
            else:
                dataclasses.replace(grid.spec, **typed)
        except ConfigError as exc:
            raise ConfigError(f"grid point {point.label()}: {exc}") from None
        grid.points.append(point)
    if not grid.points:
        raise ConfigError(f"no valid grid point: {'; '.join(grid.skipped)}")
    return grid
