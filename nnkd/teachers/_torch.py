"""``TorchTeacher``: a ``torch.nn.Module`` (or TorchScript file) as a teacher."""

from __future__ import annotations

import inspect
import io
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from nnkd.teachers._base import Teacher


def _is_method(model: torch.nn.Module, name: str) -> bool:
    """Whether ``model.<name>`` is a method (a TorchScript ``ScriptMethod`` included), not a module."""
    attr = getattr(model, name, None) if name and not name.startswith("_") else None
    return inspect.ismethod(attr) or isinstance(attr, torch.ScriptMethod)


class TorchTeacher(Teacher):
    """Embeddings and soft labels from a PyTorch model, in eval mode and without gradients.

    Parameters
    ----------
    model : torch.nn.Module
        Maps a float32 batch ``(n, n_features)`` to logits ``(n, n_classes)``.
    embedding : str or callable, default=None
        Where the embedding comes from: the name of a submodule (``"net.3"``, as in
        ``model.named_modules()``) whose output is captured by a forward hook (flattened per
        row); the name of a method of the model (``"embed"``: ``model.embed(batch)``; a
        TorchScript model keeps a method decorated with ``@torch.jit.export``); or a callable
        ``embedding(model, batch) -> tensor``. ``None``: the logits. TorchScript models do not
        run forward hooks, so for them a submodule name is refused: export a method.
    temperature : float, default=1.0
        Default temperature of ``soft_labels``.
    batch_size : int, default=1024
    device : str, default="cpu"
    progress : bool, default=False
        Progress bar over batches (stderr).
    """

    def __init__(self, model: torch.nn.Module, *, embedding: str | Callable | None = None, temperature: float = 1.0,
                 batch_size: int = 1024, device: str = "cpu", progress: bool = False):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}.")
        if isinstance(embedding, str):
            names = dict(model.named_modules())
            if embedding in names and embedding and isinstance(model, torch.jit.ScriptModule):
                raise ValueError(f"embedding={embedding!r} names a submodule of a TorchScript model, whose output "
                                 "cannot be captured (TorchScript runs no forward hooks); decorate a method "
                                 "returning the embedding with @torch.jit.export before scripting and pass its "
                                 "name, or pass a callable embedding(model, batch).")
            if embedding not in names and not _is_method(model, embedding):
                raise ValueError(f"model has no submodule or method {embedding!r}; choose a submodule of "
                                 f"{sorted(n for n in names if n)} or a method of the model.")
        elif embedding is not None and not callable(embedding):
            raise TypeError("embedding must be a submodule name, a callable or None.")
        self.model, self.embedding = model, embedding
        self.temperature, self.batch_size, self.device, self.progress = temperature, batch_size, device, progress

    @classmethod
    def from_torchscript(cls, path, **kwargs) -> TorchTeacher:
        """Load a TorchScript model file (``torch.jit.save``); keyword arguments as the constructor.

        Raises
        ------
        FileNotFoundError
            No such file.
        ValueError
            The file is not a TorchScript archive.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such TorchScript teacher file.")
        try:
            model = torch.jit.load(str(path), map_location=kwargs.get("device", "cpu"))
        except RuntimeError as exc:
            raise ValueError(f"{path} is not a TorchScript model (save one with torch.jit.save(torch.jit.script(model), "
                             f"path)): {str(exc).splitlines()[0]}") from None
        return cls(model, **kwargs)

    # Dask ships a teacher to its workers by pickle. A TorchScript module cannot be pickled
    # (torch raises "does not have a __getstate__ method"), so it travels as the bytes of its
    # archive and is loaded again on arrival; an eager module pickles as itself.
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if isinstance(self.model, torch.jit.ScriptModule):
            buffer = io.BytesIO()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)   # torch.jit.save's deprecation notice
                torch.jit.save(self.model, buffer)
            state["model"] = None
            state["_torchscript"] = buffer.getvalue()
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        archive = state.pop("_torchscript", None)
        if archive is not None:
            state["model"] = torch.jit.load(io.BytesIO(archive), map_location=state.get("device", "cpu"))
        self.__dict__.update(state)

    def _run(self, X: np.ndarray, capture: bool) -> np.ndarray:
        self.model.eval()
        batch = torch.from_numpy(np.ascontiguousarray(X)).to(self.device)
        with torch.no_grad():
            if not capture or self.embedding is None:
                return self.model(batch).detach().cpu().numpy()
            if callable(self.embedding):
                return self.embedding(self.model, batch).detach().cpu().numpy()
            modules = dict(self.model.named_modules())
            if self.embedding not in modules:
                out = getattr(self.model, self.embedding)(batch)
                return out.reshape(len(X), -1).detach().cpu().numpy()
            captured = []
            module = modules[self.embedding]
            handle = module.register_forward_hook(lambda mod, inp, out: captured.append(out))
            try:
                self.model(batch)
            finally:
                handle.remove()
            return captured[-1].reshape(len(X), -1).detach().cpu().numpy()

    def _logits_batch(self, X: np.ndarray) -> np.ndarray:
        return self._run(X, capture=False)

    def classifier_layer(self) -> tuple[str, np.ndarray]:
        """(name, weight matrix) of the model's last ``torch.nn.Linear`` (``named_modules`` order).

        Raises
        ------
        ValueError
            The model has no ``torch.nn.Linear``.
        """
        # TorchScript modules keep the Python class name in ``original_name``.
        found = [(name, m) for name, m in self.model.named_modules()
                 if isinstance(m, torch.nn.Linear) or getattr(m, "original_name", None) == "Linear"]
        if not found:
            raise ValueError(f"{type(self.model).__name__} has no torch.nn.Linear layer to read the class weights "
                             "from; pass the final layer's (n_classes, n_hidden) weights explicitly (weights=... for "
                             "DataImpressions, CallableTeacher(classifier_weights=...) for LELP).")
        name, layer = found[-1]
        return name, layer.weight.detach().cpu().numpy().astype(np.float32)

    def classifier_weights(self) -> np.ndarray:
        """Weights of the model's last ``torch.nn.Linear`` (see :meth:`classifier_layer`)."""
        return self.classifier_layer()[1]

    def _embed_batch(self, X: np.ndarray) -> np.ndarray:
        return self._run(X, capture=True)
