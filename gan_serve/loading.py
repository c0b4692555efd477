"""How a model is loaded, as one value: `HowToLoad` (everything but which file), which the
commands build from their flags and Ray's bulk workers receive pinned to the driver's choices.

Light on purpose (no torch, no typer): a Ray actor unpickles it before it loads anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from .spec import LoadOptions

if TYPE_CHECKING:
    from .generator import Generator
    from .protocols import ImageGenerator


@dataclass(frozen=True)
class HowToLoad:
    """The options that say how to load a model (all but which file), as one value."""

    options: LoadOptions = field(default_factory=LoadOptions)
    backend: str = "auto"
    device: str = "cpu"
    precision: str | None = None
    trust_code: bool = False

    def load(self, model: str | None, allow_nonfinite: bool = False) -> Generator:
        """`Generator.load(model, ...)` with these options."""
        from .generator import Generator

        return Generator.load(model, backend=self.backend, device=self.device, precision=self.precision,
                              options=self.options, trust_code=self.trust_code,
                              allow_nonfinite=allow_nonfinite)

    def pinned_to(self, G: ImageGenerator) -> HowToLoad:
        """These options with what loading `G` chose (backend, precision, device) fixed, so that
        another process or machine loads the same path instead of choosing again."""
        r = G.runner
        return replace(self, backend=r.kind, precision=r.precision, device=r.device)
