"""Read Synchformer weights from any of the known containers, safely; write the package's own format.

Containers understood by :func:`read_checkpoint`:

- ``official``: the released stage II/III files, ``{'args': DictConfig, 'model': state_dict, ...}``;
- ``stage1``: the stage I (contrastive) files, ``{'state_dict': {'module.v_encoder.…', 'module.a_encoder.…',
  'module.logit_scale'}, ...}``; only the two encoders are kept, renamed to the stage II layout;
- ``state_dict``: a bare state dict (optionally ``module.``-prefixed, optionally wrapped in
  ``{'state_dict': …}`` or ``{'model': …}``), as downstream projects re-host the weights;
- ``safetensors``: the package's own format (config JSON in the metadata under ``synchformer_config``).

A state dict of the package's may hold ``synchformer_settings`` (``model.synchformer.SETTINGS_KEY``): the
settings the reference never has (centred segments, ...), so that a bare copy says them. It is no weight:
:class:`Checkpoint` has it as ``settings``.

``.pt``/``.pth`` files are pickles, and unpickling can run arbitrary code. They are read through
``torch.load`` with our own pickle module whose ``find_class`` only hands out an allow-list of harmless
callables (tensor rebuild functions, plain containers) and inert stand-ins for omegaconf classes; any other
global makes the load fail before anything is called.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import collections
import hashlib
import json
import os
import pickle
import tarfile
import tempfile
import types
import typing
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from synchformer.errors import SynchformerError
from synchformer.io.outputs import current_umask
from synchformer.model.synchformer import SETTINGS_KEY, read_settings

PathLike = typing.Union[str, os.PathLike]

# Stage II/III layout: every key of a Synchformer state dict starts with one of these.
PREFIXES = ("vfeat_extractor.", "afeat_extractor.", "vproj.", "aproj.", "transformer.")
# Stage I (AVCLIP) encoders hold the same tensors under other names.
_STAGE1_RENAMES = (("v_encoder.", "vfeat_extractor."), ("a_encoder.", "afeat_extractor."))
HEAD_KEYS = {"offset": "transformer.off_head.weight", "synchronizability": "transformer.sync_head.weight"}
CONFIG_METADATA_KEY = "synchformer_config"


@dataclass
class Checkpoint:
    state_dict: dict[str, torch.Tensor]  # keys in the stage II/III layout (see PREFIXES)
    source_format: str  # 'official' | 'stage1' | 'state_dict' | 'safetensors'
    head: str | None  # 'offset' | 'synchronizability' | None (encoders only)
    config: dict | None = None  # our JSON config, or the official `args` as plain dicts/lists
    logit_scale: torch.Tensor | None = None  # stage I only
    ignored_keys: list[str] = field(default_factory=list)  # keys that are not Synchformer weights
    sidecar: dict | None = None  # <file>.json beside the weights: what they cannot tell (head counts, ...)
    settings: dict | None = None  # what the weights' SETTINGS_KEY says (the package's own models); None: none


# ---------------------------------------------------------------------------------------------------
# Restricted unpickling


class _Refused(Exception):
    """Raised from find_class; turned into a SynchformerError naming the file."""

    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


class Inert:
    """Stand-in for a pickled class we will not import (omegaconf, argparse): it only stores its state."""

    qualname = "?"

    def __init__(self, *args, **kwargs):  # REDUCE calls the class: keep the arguments, do nothing
        self._args, self._kwargs = args, kwargs

    def __setstate__(self, state):  # BUILD: keep the state as data, never setattr on ourselves
        self._state = state

    def __repr__(self):
        return f"<inert {self.qualname}>"


_INERT_CLASSES: dict[str, type] = {}


def _inert_class(module: str, name: str) -> type:
    key = f"{module}.{name}"
    if key not in _INERT_CLASSES:
        _INERT_CLASSES[key] = type(name, (Inert,), {"qualname": key})
    return _INERT_CLASSES[key]


_PLAIN_BUILTINS = {  # constructors of plain data: calling them cannot reach the OS
    t.__name__: t
    for t in (bool, int, float, complex, str, bytes, bytearray, list, tuple, dict, set, frozenset)
}
_DEFAULTDICT_FACTORIES = (dict, list, set, int, float, str, tuple, collections.OrderedDict)


def _defaultdict(factory=None, *args):
    # the factory is called later on a missing key, so it must be a plain constructor, not just any
    # allow-listed callable
    if factory is not None and not any(factory is f for f in _DEFAULTDICT_FACTORIES):
        raise _Refused(f"collections.defaultdict({getattr(factory, '__qualname__', factory)!r})")
    return collections.defaultdict(factory, *args)


def _codecs_encode(obj, encoding="utf-8", errors="strict"):
    # protocol-2 pickles store bytes as _codecs.encode(str, 'latin1'); no other codec is looked up
    if not isinstance(encoding, str) or encoding.lower().replace("-", "").replace("_", "") not in (
        "latin1", "iso88591", "utf8", "ascii"
    ):
        raise _Refused(f"_codecs.encode(..., {encoding!r})")
    return codecs.encode(obj, encoding, errors)


def _torch_globals() -> dict[str, object]:
    u = torch._utils
    allowed = {
        # what torch.save writes for tensors and parameters
        "torch._utils._rebuild_tensor": u._rebuild_tensor,
        "torch._utils._rebuild_tensor_v2": u._rebuild_tensor_v2,
        "torch._utils._rebuild_tensor_v3": u._rebuild_tensor_v3,
        "torch._utils._rebuild_parameter": u._rebuild_parameter,
        "torch._utils._rebuild_parameter_with_state": u._rebuild_parameter_with_state,
        # tensors carrying python attributes; its `func`/`new_type` come through this allow-list too
        "torch._tensor._rebuild_from_type_v2": torch._tensor._rebuild_from_type_v2,
        "torch.nn.parameter.Parameter": torch.nn.Parameter,
        "torch.Tensor": torch.Tensor,
        "torch.Size": torch.Size,
        "torch.device": torch.device,
        "torch.UntypedStorage": torch.UntypedStorage,
        "torch.storage.UntypedStorage": torch.UntypedStorage,
    }
    for name, value in vars(torch).items():
        if isinstance(value, torch.dtype):
            allowed[f"torch.{name}"] = value
        elif name.endswith("Storage") and name not in ("TypedStorage", "UntypedStorage"):
            try:  # legacy typed storages (torch.FloatStorage ...) are dtype tags, as in torch.load
                allowed[f"torch.{name}"] = torch.serialization.StorageType(name)
            except (KeyError, AttributeError):
                pass
    return allowed


_ALLOWED: dict[str, object] | None = None


def _allowed_globals() -> dict[str, object]:
    global _ALLOWED
    if _ALLOWED is None:
        _ALLOWED = {
            **_torch_globals(),
            **{f"builtins.{n}": t for n, t in _PLAIN_BUILTINS.items()},
            "collections.OrderedDict": collections.OrderedDict,
            "collections.defaultdict": _defaultdict,
            "_codecs.encode": _codecs_encode,
            "typing.Any": typing.Any,  # omegaconf metadata's ref_type
        }
    return _ALLOWED


def _numpy_global(module: str, name: str):
    """numpy scalars/arrays (e.g. metrics): only the constructors of plain numeric data."""
    import numpy as np

    if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in ("_reconstruct", "scalar"):
        try:
            multiarray = np._core.multiarray
        except AttributeError:  # numpy < 2
            multiarray = np.core.multiarray
        return getattr(multiarray, name)
    if module == "numpy" and name == "ndarray":
        return np.ndarray
    if module == "numpy" and name == "dtype":

        def dtype(*args):  # object dtypes would hold arbitrary python objects: not plain data
            d = np.dtype(*args)
            if d.hasobject:
                raise _Refused("numpy.dtype('O')")
            return d

        return dtype
    return None


class SafeUnpickler(pickle.Unpickler):
    """pickle.Unpickler whose find_class hands out only the allow-list above."""

    def find_class(self, module, name):
        # py2-era names (torch.save writes protocol 2): __builtin__ -> builtins, long -> int, ...
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        qualified = f"{module}.{name}"
        if qualified in _allowed_globals():
            return _allowed_globals()[qualified]
        if module == "omegaconf" or module.startswith("omegaconf.") or qualified == "argparse.Namespace":
            return _inert_class(module, name)  # configs: keep their data, never import the library
        if module == "numpy" or module.startswith("numpy."):
            found = _numpy_global(module, name)
            if found is not None:
                return found
        raise _Refused(qualified)


def _safe_load(file, **kwargs):
    return SafeUnpickler(file, **kwargs).load()


# what torch.load uses of a pickle module: Unpickler, load, and __name__ (it checks for dill)
SAFE_PICKLE_MODULE = types.SimpleNamespace(
    __name__="synchformer.safe_pickle", Unpickler=SafeUnpickler, load=_safe_load,
    UnpicklingError=pickle.UnpicklingError,
)


def to_plain(obj):
    """Turn inert omegaconf stand-ins (DictConfig/ListConfig/value nodes) into plain dicts/lists/values."""
    if isinstance(obj, Inert):
        state = getattr(obj, "_state", None)
        if isinstance(state, tuple) and state:  # (state, slotstate)
            state = state[0]
        state = state if isinstance(state, Mapping) else {}
        kind = type(obj).__name__
        if kind in ("DictConfig", "ListConfig"):
            content = state.get("_content")  # `_parent` points back up: never follow it
            if isinstance(content, Mapping):
                return {k if isinstance(k, (str, int, float, bool)) else str(k): to_plain(v)
                        for k, v in content.items()}
            if isinstance(content, (list, tuple)):
                return [to_plain(v) for v in content]
            return content  # None, '???' (missing) or an unresolved '${...}' string
        if "_val" in state:  # AnyNode, StringNode, IntegerNode, ...
            return to_plain(state["_val"])
        if kind == "Namespace":
            return {k: to_plain(v) for k, v in state.items()}
        return obj
    if isinstance(obj, Mapping):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(to_plain(v) for v in obj)
    return obj


# ---------------------------------------------------------------------------------------------------
# Reading


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split()) or "no details"
    return f"{type(err).__name__}: {text[:160]}"


def _check_file(path: Path) -> bytes:
    """Return the first bytes of `path`, or fail with a one-line reason."""
    if not path.exists():
        raise SynchformerError(path, "file not found")
    if path.is_dir():
        raise SynchformerError(path, "is a directory, not a checkpoint file")
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise SynchformerError(path, f"cannot read: {e.strerror or e}") from None
    if not head:
        raise SynchformerError(path, "file is empty")
    return head


def _is_safetensors(path: Path, head: bytes) -> bool:
    # safetensors: u64 little-endian header size, then the JSON header
    return path.suffix.lower() == ".safetensors" or (len(head) > 8 and head[8:9] == b"{")


def _torch_load(path: Path, head: bytes):
    if head.startswith(b"PK\x03\x04"):
        try:  # also catches truncated archives (no central directory) with a clear message
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise SynchformerError(path, f"is truncated or corrupt (zip archive unreadable: {_short(e)})") from None
        if any(n.rsplit("/", 1)[-1] == "constants.pkl" for n in names):
            # torch.load would hand it to torch.jit.load, which runs the archive's code
            raise SynchformerError(path, "is a TorchScript archive, not a state dict; refusing to load it")
    elif head[:1] == b"\x80":  # legacy (non-zip) torch.save: a sequence of protocol-2 pickles
        if tarfile.is_tarfile(path):  # PyTorch < 0.4 tar format: not a format Synchformer was saved in
            raise SynchformerError(path, "uses the legacy tar checkpoint format, which is not supported")
    else:
        raise SynchformerError(path, "is not a PyTorch checkpoint or a safetensors file (unrecognised content)")
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=SAFE_PICKLE_MODULE)
    except _Refused as e:
        raise SynchformerError(
            path, f"refuses to load: the file wants to run `{e.what}` (only tensors and plain data are allowed)"
        ) from None
    except SynchformerError:
        raise
    except MemoryError:
        raise SynchformerError(path, "is corrupt (asks for an impossible amount of memory)") from None
    except Exception as e:  # pickle/zip/torch errors on damaged files: one line, no traceback
        raise SynchformerError(path, f"is truncated or corrupt ({_short(e)})") from None


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict | None]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # SafetensorError (bad header, short file), OSError, ...
        raise SynchformerError(path, f"is not a valid safetensors file ({_short(e)})") from None
    config = None
    if CONFIG_METADATA_KEY in metadata:
        try:
            config = json.loads(metadata[CONFIG_METADATA_KEY])
        except ValueError as e:
            problem = f"has an unreadable {CONFIG_METADATA_KEY!r} metadata entry ({_short(e)})"
            raise SynchformerError(path, problem) from None
    return tensors, config


def _unwrap(obj, path: PathLike | None) -> tuple[Mapping, str, object]:
    """Find the state dict in a loaded object: (state dict, source format, official `args` or None)."""
    if not isinstance(obj, Mapping):
        raise SynchformerError(path, f"holds a {type(obj).__name__}, not a state dict or checkpoint dict")
    if isinstance(obj.get("model"), Mapping) and ("args" in obj or "model_type" in obj):
        return obj["model"], "official", obj.get("args")
    for key in ("state_dict", "model"):
        if isinstance(obj.get(key), Mapping):
            return obj[key], "state_dict", obj.get("args")
    return obj, "state_dict", None


def _normalise(raw: Mapping, path: PathLike | None):
    """Map keys to the stage II/III layout. Returns (state dict, logit_scale, ignored keys, was_stage1,
    settings: what a SETTINGS_KEY entry says, or None)."""
    stripped: dict[str, tuple[str, object]] = {}
    ignored: list[str] = []
    for key, value in raw.items():
        if not isinstance(key, str):
            ignored.append(repr(key))
            continue
        short = key[len("module."):] if key.startswith("module.") else key  # DDP wrapper
        if short in stripped:
            raise SynchformerError(path, f"has the key '{short}' both with and without a 'module.' prefix")
        stripped[short] = (key, value)

    settings = None
    if SETTINGS_KEY in stripped:
        key, marker = stripped.pop(SETTINGS_KEY)
        try:
            settings = read_settings(marker)
        except ValueError as e:
            raise SynchformerError(path, f"has an unreadable '{key}' entry ({e})") from None
    official = any(k.startswith(PREFIXES) for k in stripped)
    stage1 = not official and any(k.startswith(old) for k in stripped for old, _ in _STAGE1_RENAMES)
    out: dict[str, torch.Tensor] = {}
    logit_scale = None
    for short, (key, value) in stripped.items():
        if stage1:
            if short == "logit_scale":
                logit_scale = value if isinstance(value, torch.Tensor) else None
                continue
            for old, new in _STAGE1_RENAMES:
                if short.startswith(old):
                    short = new + short[len(old):]
        if not short.startswith(PREFIXES):
            ignored.append(key)
        elif not isinstance(value, torch.Tensor):
            raise SynchformerError(path, f"key '{key}' holds a {type(value).__name__}, not a tensor")
        else:
            out[short] = value
    if not out:
        sample = ", ".join(repr(k) for k in list(raw)[:3]) or "none"
        raise SynchformerError(
            path,
            f"has no Synchformer weights: expected keys starting with {', '.join(PREFIXES)} "
            f"(or stage I v_encoder./a_encoder.); found {len(raw)} keys, e.g. {sample}",
        )
    return out, logit_scale, ignored, stage1, settings


def normalise_state_dict(raw: Mapping, path: PathLike | None = None) -> dict[str, torch.Tensor]:
    """The stage II/III-layout tensors of an in-memory state dict (or checkpoint dict); `path` names it in errors."""
    return checkpoint_of(raw, path).state_dict


def checkpoint_of(raw: Mapping, path: PathLike | None = None) -> Checkpoint:
    """An in-memory state dict (or checkpoint dict) as read_checkpoint reads a file; `path` names it in errors."""
    state_dict, _, _ = _unwrap(raw, path)
    sd, logit_scale, ignored, _, settings = _normalise(state_dict, path)
    return Checkpoint(state_dict=sd, source_format="state_dict", head=detect_head(sd, path),
                      logit_scale=logit_scale, ignored_keys=ignored, settings=settings)


def _sidecar_config(path: Path) -> dict | None:
    sidecar = path.with_suffix(".json")
    if sidecar == path or not sidecar.is_file():
        return None
    try:
        config = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SynchformerError(sidecar, f"config sidecar is unreadable ({_short(e)})") from None
    if not isinstance(config, dict):
        raise SynchformerError(sidecar, "config sidecar must hold a JSON object")
    return config


def detect_head(state_dict: Mapping, path: PathLike | None = None) -> str | None:
    """'offset', 'synchronizability', or None when the weights hold only the encoders."""
    heads = [name for name, key in HEAD_KEYS.items() if key in state_dict]
    if len(heads) > 1:
        raise SynchformerError(path, "has both an offset head and a synchronizability head")
    return heads[0] if heads else None


def read_checkpoint(path: PathLike) -> Checkpoint:
    """Load Synchformer weights from an official, stage I, bare state-dict or safetensors file."""
    path = Path(path)
    head = _check_file(path)
    config = None
    if _is_safetensors(path, head):
        raw, config = _read_safetensors(path)
        source_format, args = "safetensors", None
    else:
        raw, source_format, args = _unwrap(_torch_load(path, head), path)
    state_dict, logit_scale, ignored, stage1, settings = _normalise(raw, path)
    if stage1 and source_format != "safetensors":
        source_format = "stage1"
    if args is not None:
        try:  # nice to have (e.g. the number of transformer layers): never fail a load over it
            plain = to_plain(args)
            config = plain if isinstance(plain, dict) else None
        except RecursionError:
            config = None
    sidecar = _sidecar_config(path)
    if config is None:
        config = sidecar

    return Checkpoint(
        state_dict=state_dict,
        source_format=source_format,
        head=detect_head(state_dict, path),
        config=config,
        logit_scale=logit_scale,
        ignored_keys=ignored,
        sidecar=sidecar,
        settings=settings,
    )


# ---------------------------------------------------------------------------------------------------
# Writing


def sha256sum(path: PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (weight files are ~1 GB)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(chunk_size):
                digest.update(block)
    except OSError as e:
        raise SynchformerError(path, f"cannot read: {e.strerror or e}") from None
    return digest.hexdigest()


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _sort_metadata(path: Path) -> None:
    """Put the header's metadata in sorted order, in place: safetensors writes it from a hash map whose order
    changes from process to process, and the same weights must give the same bytes (and sha256) every time."""
    with open(path, "rb+") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        meta = header.get("__metadata__")
        if not meta:
            return
        header["__metadata__"] = dict(sorted(meta.items()))
        # the tensors' order is safetensors' own (deterministic); the same pairs reordered keep the same length
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) > n:  # (a different escaping than serde's): leave the file as it is, still valid
            return
        f.seek(8)
        f.write(text + b" " * (n - len(text)))  # trailing spaces are allowed padding in a safetensors header


def save_safetensors(
    state_dict: Mapping[str, torch.Tensor], path: PathLike, config: dict, *, protect: Iterable[PathLike] = ()
) -> str:
    """Write `state_dict` and `config` to `path` (safetensors) atomically; return the file's sha256.

    `protect` lists input files that must never be overwritten (e.g. the checkpoint being converted).
    """
    path = Path(path)
    for p in protect:
        p = Path(p)
        if _same_file(path, p) or path.resolve() == p.resolve():
            raise SynchformerError(path, f"refuses to overwrite the input file {p}")
    if path.is_dir():
        raise SynchformerError(path, "is a directory; give a file name for the weights")
    if not path.parent.is_dir():
        raise SynchformerError(path, "cannot write: the folder does not exist")

    tensors: dict[str, torch.Tensor] = {}
    seen_storages: set[int] = set()
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"state_dict[{key!r}] is a {type(value).__name__}, not a tensor")
        t = value.detach().to("cpu").contiguous()
        storage = t.untyped_storage()
        # safetensors refuses tensors that share memory (tied weights, views of one buffer): copy those
        if storage.data_ptr() in seen_storages or storage.nbytes() != t.numel() * t.element_size():
            t = t.clone()
            storage = t.untyped_storage()
        seen_storages.add(storage.data_ptr())
        tensors[key] = t
    metadata = {"format": "pt", CONFIG_METADATA_KEY: json.dumps(config, sort_keys=True)}

    from safetensors.torch import save_file

    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        save_file(tensors, tmp, metadata=metadata)
        _sort_metadata(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp made it 0600: the permissions a plain open() gives
        with open(tmp, "rb+") as f:  # make the bytes durable before the rename makes them visible
            os.fsync(f.fileno())
        digest = sha256sum(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise SynchformerError(path, f"cannot write: {e.strerror or e}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return digest
