"""The one budget unit every strategy is charged in: candidate evaluations.

One evaluation = one mask scored on the whole scoring subset. Cheaper scoring (a halving
rung on a fraction of the subset) costs that fraction. The budget is kept in images so the
arithmetic is exact: a search with budget B never scores more than B x subset images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Budget:
    """`evaluations` full evaluations of `images_per_evaluation` images each."""

    evaluations: int
    images_per_evaluation: int
    spent_images: int = 0

    def __post_init__(self) -> None:
        if self.evaluations < 0 or self.images_per_evaluation < 1:
            raise ValueError("budget: evaluations >= 0 and images_per_evaluation >= 1 required")

    @property
    def total_images(self) -> int:
        return self.evaluations * self.images_per_evaluation

    @property
    def remaining_images(self) -> int:
        return self.total_images - self.spent_images

    @property
    def spent(self) -> float:
        """Evaluations spent (fractional with halving)."""
        return self.spent_images / self.images_per_evaluation

    @property
    def exhausted(self) -> bool:
        return self.remaining_images <= 0

    def can_afford(self, images: int) -> bool:
        return images <= self.remaining_images

    def charge(self, images: int) -> None:
        if not self.can_afford(images):
            raise RuntimeError(f"budget exceeded: {images} images, {self.remaining_images} left")
        self.spent_images += images

    def state_dict(self) -> dict[str, Any]:
        return {
            "evaluations": self.evaluations,
            "images_per_evaluation": self.images_per_evaluation,
            "spent_images": self.spent_images,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if (state["evaluations"], state["images_per_evaluation"]) != (
            self.evaluations,
            self.images_per_evaluation,
        ):
            raise ValueError("budget state belongs to another budget")
        self.spent_images = int(state["spent_images"])
