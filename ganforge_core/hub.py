"""A ``ganforge export`` directory as a Hugging Face Hub model (the ``hub`` extra).

``HubGenerator.from_pretrained(DIR_OR_REPO_ID)`` is huggingface_hub's
``PyTorchModelHubMixin.from_pretrained``: it reads ``config.json`` and builds the
class from its keys (the mixin passes every key to ``__init__``, which takes them
as ``**config``); the generator is rebuilt by name and options from the installed
plugins, as :func:`ganforge_core.export.load_generator` does. The weights are then
read from ``model.safetensors`` under the generator's own keys (so the file is the
one ``load_generator`` reads, and the plugin's module can load it directly), all of
them: the mixin's default would load into this wrapper with ``strict=False``.
``save_pretrained`` writes the same two files back.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import Tensor, nn

try:
    from huggingface_hub import PyTorchModelHubMixin, hf_hub_download
except ModuleNotFoundError as exc:  # pragma: no cover - the hub extra is part of the test extra
    raise ModuleNotFoundError(
        "ganforge_core.hub needs huggingface_hub: pip install 'ganforge[hub]'", name=exc.name
    ) from exc

from ganforge_core.export import CONFIG, WEIGHTS, build_generator, check_config, load_weights, save_weights


class HubGenerator(nn.Module, PyTorchModelHubMixin, library_name="ganforge", tags=["gan", "ganforge"]):
    """An exported generator, built from the keys of its ``config.json``.

    ``generator`` is the plugin's module; calling a ``HubGenerator`` calls it
    (``model(z)``, or ``model(z, labels)`` when ``conditional``). ``z_dim``,
    ``num_classes`` and ``data_shape`` are the config's.
    """

    def __init__(self, **config: Any) -> None:
        super().__init__()
        check_config(config, CONFIG)
        self.generator = build_generator(config, CONFIG)
        self.z_dim = int(config["z_dim"])
        self.num_classes = int(config["num_classes"])
        self.data_shape = tuple(int(s) for s in config["data_shape"])
        self.conditional = self.num_classes > 0

    def forward(self, *inputs: Tensor) -> Tensor:
        output: Tensor = self.generator(*inputs)
        return output

    def _save_pretrained(self, save_directory: Path) -> None:
        save_weights(self.generator, save_directory / WEIGHTS)

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        map_location: str = "cpu",
        **config: Any,
    ) -> HubGenerator:
        model = cls(**config)
        if os.path.isdir(model_id):
            weights = Path(model_id) / WEIGHTS
        else:
            weights = Path(
                hf_hub_download(
                    repo_id=model_id,
                    filename=WEIGHTS,
                    revision=revision,
                    cache_dir=cache_dir,
                    force_download=force_download,
                    token=token,
                    local_files_only=local_files_only,
                )
            )
        load_weights(model.generator, weights, config["generator"]["name"])
        return model.to(map_location).eval().requires_grad_(False)
