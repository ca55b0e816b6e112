"""alpha_profile: the strength of steering per target layer, as factors of alpha (a named profile or a list)."""

from __future__ import annotations

from unlock_eval.errors import ConfigError
from unlock_eval.params import as_float_list

PROFILES = {
    "flat": "1 at every layer (the same as no profile)",
    "ramp_up": "rising linearly from 1/L at the first layer to 1 at the last",
    "ramp_down": "falling linearly from 1 at the first layer to 1/L at the last",
    "middle": "a triangle peaking at the middle layer (1 when L is odd), falling linearly to 1/L at both ends",
}
PROFILE_HELP = (
    f"strength per target layer as factors of alpha (layer l steered at alpha * factor l): {', '.join(PROFILES)}, "
    "or one factor per target layer as 1;0.5;0;... (0: that layer is not steered)"
)


def parse_profile(name: str, value: object) -> str | list[float]:
    """A profile name, or factors as typed on a command line (`1;0.5;0`, `[1,0.5,0]`) or a list: finite numbers."""
    if isinstance(value, str) and value.strip() in PROFILES:
        return value.strip()
    if isinstance(value, str) and any(c.isalpha() for c in value.replace("e", "").replace("E", "")):
        raise ConfigError(f"{name}={value!r}: allowed profiles are {', '.join(PROFILES)}, or factors as 1;0.5;0")
    return as_float_list(name, value, "1;0.5;0 (one factor per target layer), or a profile: " + ", ".join(PROFILES))


def layer_factors(profile: str | list[float], num_layers: int, name: str = "alpha_profile") -> dict[int, float]:
    """The factor of each of the target's `num_layers` layers; a list must give one per layer."""
    if isinstance(profile, list):
        if len(profile) != num_layers:
            raise ConfigError(
                f"{name}: {len(profile)} factors given; the target has {num_layers} decoder layers (one factor each)"
            )
        return dict(enumerate(profile))
    last = max(num_layers - 1, 1)
    ramp = [(l + 1) / num_layers for l in range(num_layers)]
    shapes = {
        "flat": [1.0] * num_layers,
        "ramp_up": ramp,
        "ramp_down": ramp[::-1],
        "middle": [1.0 - (1.0 - 1.0 / num_layers) * abs(2 * l - last) / last for l in range(num_layers)],
    }
    return dict(enumerate(shapes[profile]))
