"""Where a worker gets its data: a picklable recipe, so that worker processes load their own."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kmlp.network import Dataset, load_cifar10

DataSource = Callable[[], Dataset]


@dataclass(frozen=True, kw_only=True)
class CifarSource:
    """``load_cifar10`` with these options; ``data_dir`` None means ``$KMLP_DATA`` or the cache."""

    data_dir: str | None = None
    n_train: int | None = None
    n_val: int | None = None
    dtype: str = "float32"
    progress: bool = False

    def __call__(self) -> Dataset:
        return load_cifar10(
            data_dir=self.data_dir,
            n_train=self.n_train,
            n_val=self.n_val,
            dtype=self.dtype,
            progress=self.progress,
        )

    @classmethod
    def from_options(cls, options: dict[str, Any], **overrides: Any) -> CifarSource:
        """From ``cli.common.data_options_from_args`` output or a study's ``data`` attribute."""
        known = ("data_dir", "n_train", "n_val", "dtype", "progress")
        fields = {k: options[k] for k in known if k in options}
        if fields.get("data_dir") is not None:
            fields["data_dir"] = str(fields["data_dir"])
        fields.update(overrides)
        return cls(**fields)


def data_record(data: Dataset, *, n_train: int | None, n_val: int | None) -> dict[str, Any]:
    """The study's ``data`` user attribute: what identifies the data the trials used."""
    return {
        "n_train": n_train,
        "n_val": n_val,
        "train_size": len(data.train.y),
        "val_size": len(data.val.y),
        "dtype": str(data.train.X.dtype),
        "fingerprint": data.fingerprint,
        "source": str(data.source),
    }
