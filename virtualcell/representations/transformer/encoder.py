"""``transformer``: a gene-token transformer whose pooled state is the cell's representation."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from ...component import Encoder
from ...execution import autocast, progress_bar, resolve_device, seeded
from .model import POOLINGS, GeneTokenModel, bert_config_dict
from .pretrain import use_amp
from .tokenize import MODES, SPECIAL_TOKENS, TokenBatch, check_values, gene_medians, tokenize
from .vocabulary import check_coverage

__all__ = ["TransformerEncoder"]


class TransformerEncoder(Encoder):
    """Cells as gene-token sequences through a BERT (``transformers``); ``encode(x [n, genes]) -> z [n, hidden]``.

    ``fit`` pretrains on the user's cells with a masked-expression objective (see
    :mod:`.model`); ``from_pretrained`` starts from a local BERT masked-LM checkpoint and a gene-token
    table instead (Geneformer's layout). The vocabulary (genes and token ids), the value encoding
    (bins, or the rank normalisation's per-gene medians) and the tokenization settings are saved with
    the weights in the artifact (``config.json`` + ``weights.safetensors``).

    Default value encoding: ``"rank"`` (Geneformer), chosen by cross-validation on Kang control cells
    only (``benchmarks/bench_represent.py select``: label transfer between halves of the control
    cells, macro-F1 0.73 for rank at 10 epochs against 0.62-0.65 for binned values at 3 or 10 epochs
    and 0.51 for CLS pooling). In sparse cells (a median of 70 expressed HVGs in Kang) most values are
    one count, so scGPT's bins carry little beyond the gene set, while dividing by each gene's median
    brings the cell-defining genes forward. ``"binned"`` (scGPT) keeps magnitudes and adds a
    cell-level value objective (MVC); prefer it for deeply sequenced cells.

    Args:
        mode: ``"binned"`` or ``"rank"`` value encoding (see :mod:`.tokenize`).
        max_tokens: genes per cell (the most expressed ones); ``n_bins``: value bins (binned mode).
            The CPU defaults (256 tokens, 2 layers of 64) were fixed a priori for a 2-core machine;
            ``benchmarks/bench_represent.py`` measures their throughput.
        hidden_size, num_layers, num_heads: BERT shape (the representation has ``hidden_size`` dims).
        pooling: ``"mean"`` over gene tokens (default) or ``"cls"``.
        dropout: BERT's hidden and attention dropout.
        mask_fraction: share of gene tokens masked in pretraining.
        lr, weight_decay, max_epochs: AdamW and a linear warm-up (5%) then decay of the learning rate.
        batch_size: cells per step (None: 64 on CPU, 256 on a GPU).
        device: where training runs (None: where the data is); mixed_precision: bf16 autocast
            (None: on for CUDA, off on CPU, where bf16 is slower without AMX).
        min_coverage: ``align_genes`` refuses data covering less of its genes than this.
        median_cells: a fit from disk takes rank mode's per-gene medians from a seeded sample of at most
            this many cells (every cell when the file has no more: then exactly the in-memory medians,
            which use every cell); the sample's non-zero values are held, 8 bytes each.
        checkpoint_dir: write a resumable checkpoint every epoch (and, from disk, every
            ``checkpoint_every_steps`` steps within one) and resume from it when present.
    """

    test_config: ClassVar[dict[str, Any]] = {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "max_tokens": 16,
                                             "max_epochs": 1, "batch_size": 32, "n_bins": 5}

    def __init__(self, mode: str = "rank", max_tokens: int = 256, n_bins: int = 51, hidden_size: int = 64,
                 num_layers: int = 2, num_heads: int = 4, pooling: str = "mean", dropout: float = 0.0,
                 mask_fraction: float = 0.15, lr: float = 1e-3, weight_decay: float = 0.01, max_epochs: int = 10,
                 batch_size: int | None = None, device: str | None = None, mixed_precision: bool | None = None,
                 min_coverage: float = 0.5, median_cells: int = 100_000, checkpoint_dir: str | None = None) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}; got {mode!r}.")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}; got {pooling!r}.")
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size ({hidden_size}) must be a multiple of num_heads ({num_heads}).")
        if not 0 < mask_fraction < 1:
            raise ValueError(f"mask_fraction must lie in (0, 1); got {mask_fraction}.")
        for name, value in (("max_tokens", max_tokens), ("n_bins", n_bins), ("num_layers", num_layers),
                            ("max_epochs", max_epochs), ("median_cells", median_cells)):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1; got {value}.")
        self.model: GeneTokenModel | None = None
        self.vocabulary: list[str] = []          # genes with a token, in token-table order
        self.special: dict[str, int | None] = dict(SPECIAL_TOKENS)
        self.bert_config: dict[str, Any] = {}
        self.log_input = True
        self.coverage: dict[str, Any] | None = None
        self.register_buffer("vocab_token_ids", torch.zeros(0, dtype=torch.long))   # [V]
        self.register_buffer("vocab_medians", torch.zeros(0))                       # [V] (rank mode)
        self._positions: tuple[tuple[str, ...], torch.Tensor] | None = None

    # -- shape and state -------------------------------------------------------------------------
    @property
    def n_latent(self) -> int:
        return int(self.bert_config.get("hidden_size", self.config["hidden_size"]))

    @property
    def mode(self) -> str:
        return self.config["mode"]

    def fitted_state(self) -> dict[str, Any]:
        own = self.vocabulary == list(self.features or [])
        return {**super().fitted_state(), "bert_config": self.bert_config, "special_tokens": self.special,
                "vocabulary": None if own else self.vocabulary, "log_input": self.log_input,
                "coverage": self.coverage}

    def load_fitted_state(self, state: Mapping[str, Any]) -> None:
        super().load_fitted_state(state)
        self.bert_config = dict(state["bert_config"])
        self.special = dict(state["special_tokens"])
        self.vocabulary = list(state["vocabulary"]) if state.get("vocabulary") is not None else []
        self.log_input = bool(state.get("log_input", True))
        self.coverage = state.get("coverage")
        self.model = self._build_model(self.bert_config)

    def _build_model(self, bert_config: Mapping[str, Any], seed: int = 0) -> GeneTokenModel:
        with seeded(seed):
            n_bins = self.config["n_bins"] if self.mode == "binned" else 0
            return GeneTokenModel(bert_config, n_bins=n_bins, pooling=self.config["pooling"])

    def _feature_tokens(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids [genes] and medians [genes] of ``input_features``, from the vocabulary buffers."""
        features = tuple(self.features or ())
        if not self.vocabulary:           # own vocabulary: features are the vocabulary
            self.vocabulary = list(features)
        if self._positions is None or self._positions[0] != features:
            import pandas as pd

            positions = pd.Index(self.vocabulary).get_indexer(list(features))
            if (positions < 0).any():
                raise ValueError(f"input features {[g for g, p in zip(features, positions) if p < 0][:10]} are not in "
                                 "the vocabulary; use align_genes(...) to choose the genes.")
            self._positions = (features, torch.as_tensor(positions, dtype=torch.long))
        index = self._positions[1].to(self.vocab_token_ids.device)
        return self.vocab_token_ids[index], self.vocab_medians[index]

    def tokenize(self, x: torch.Tensor) -> TokenBatch:
        """The token batch of ``x`` [n, input_features] (see :func:`.tokenize.tokenize`)."""
        tokens, medians = self._feature_tokens()
        return tokenize(x, tokens.to(x.device), mode=self.mode, max_tokens=self.config["max_tokens"],
                        n_bins=self.config["n_bins"], medians=medians.to(x.device) if self.mode == "rank" else None,
                        log_input=self.log_input, pad_id=int(self.special["pad"]), cls_id=self.special.get("cls"))

    def align_genes(self, genes: Sequence[str], *, min_coverage: float | None = None) -> dict[str, Any]:
        """Use the data's ``genes`` that the vocabulary has as ``input_features`` (in the data's order).

        Genes the vocabulary lacks are counted and named (a warning); below ``min_coverage`` (default:
        the config's) covered, or with the wrong gene-ID type (symbols vs Ensembl), it refuses with a
        ``DataError``. Returns the coverage report, also kept in ``self.coverage``.
        """
        self._check_fitted()
        vocabulary = self.vocabulary or list(self.features or [])
        limit = self.config["min_coverage"] if min_coverage is None else float(min_coverage)
        report = check_coverage(genes, vocabulary, min_fraction=limit)
        if report["n_missing"]:
            warnings.warn(f"{report['n_missing']} of {report['n_genes']} genes are not in the vocabulary and are left "
                          f"out ({report['fraction']:.1%} covered), e.g. {report['missing']}.", stacklevel=2)
        self.vocabulary = vocabulary
        known = set(vocabulary)
        self.features = [str(g) for g in genes if str(g) in known]
        self.coverage = report
        return report

    # -- training --------------------------------------------------------------------------------
    def _batch_size(self, device: torch.device) -> int:
        return int(self.config["batch_size"] or (256 if device.type == "cuda" else 64))

    def _medians(self, x: Any, seed: int) -> torch.Tensor:
        """Rank mode's per-gene divisors [genes] (all cells in memory; a sample of ``median_cells`` from disk);
        ones in binned mode."""
        if self.mode != "rank":
            return torch.ones(x.shape[1])
        if isinstance(x, torch.Tensor):
            return gene_medians(x)
        from .disk_medians import disk_gene_medians

        return disk_gene_medians(x, at_most=self.config["median_cells"], seed=seed)

    def fit(self, x: torch.Tensor, features: Sequence[str], *, seed: int = 0, progress: bool = True,
            **kwargs: Any) -> "TransformerEncoder":
        """Pretrain on ``x`` [n, genes] (log-normalised, non-negative; columns named by ``features``).

        ``x`` may be on-disk rows (``train.disk_loader.DiskRows``): the values are then checked per batch
        read, rank mode's medians come from a seeded sample of at most ``median_cells`` cells
        (:mod:`.disk_medians`), and the minibatches are read from disk in the in-memory order (the same
        fit) or, with the rows' ``loader_options``, in shuffled blocks (each process its shard under
        torchrun, DistributedDataParallel); see :mod:`.pretrain`.
        """
        from .pretrain import pretrain

        c = self.config
        if x.ndim != 2 or x.shape[1] != len(features):
            raise ValueError(f"x has shape {tuple(x.shape)} but {len(features)} feature names were given.")
        if isinstance(x, torch.Tensor):         # else DiskRows: checked per batch as it is read
            check_values(x)
        device = x.device if c["device"] is None else resolve_device(c["device"])
        x = x.to(device=device, dtype=torch.float32)
        self.features, self.vocabulary = list(features), list(features)
        self.special = dict(SPECIAL_TOKENS)
        n_special = len(SPECIAL_TOKENS)
        self.vocab_token_ids = torch.arange(n_special, n_special + len(features), device=device)
        self.vocab_medians = self._medians(x, seed).to(device)
        self._positions = None
        self.bert_config = bert_config_dict(vocab_size=n_special + len(features), hidden_size=c["hidden_size"],
                                            num_layers=c["num_layers"], num_heads=c["num_heads"],
                                            max_tokens=c["max_tokens"], dropout=c["dropout"])
        self.model = self._build_model(self.bert_config, seed).to(device)
        history = pretrain(self, x, batch_size=self._batch_size(device), device=device, seed=seed, progress=progress)
        last = history.epochs[-1] if history.epochs else {}
        self.training_summary = {"epochs": len(history.epochs), "seconds": round(history.seconds, 2),
                                 "cells_per_second": round(x.shape[0] * len(history.epochs) / max(history.seconds, 1e-9), 1),
                                 "last_epoch": {k: round(float(v), 4) for k, v in last.items() if k != "epoch"}}
        self.history = history
        self.training_history = history.record()
        self.is_fitted = True
        return self.eval()

    # -- inference -------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, x: torch.Tensor, *, batch_size: int | None = None, progress: bool = False) -> torch.Tensor:
        """Pooled representations [n, hidden] of ``x`` [n, input_features] (deterministic)."""
        self._check_fitted()
        n_genes = len(self.features or [])
        if x.ndim != 2 or x.shape[1] != n_genes:
            raise ValueError(f"TransformerEncoder expects x [cells, {n_genes}] in input_features order; got {tuple(x.shape)}.")
        check_values(x)
        device = self.device
        amp = use_amp(device, self.config["mixed_precision"])
        size = batch_size or self._batch_size(device) * 4
        was_training = self.model.training
        self.model.eval()
        out = []
        try:
            for begin in progress_bar(range(0, x.shape[0], size), desc="encode", enabled=progress):
                batch = self.tokenize(x[begin:begin + size].to(device=device, dtype=torch.float32))
                with autocast(device, amp):
                    out.append(self.model(batch).float().to(x.device))
        finally:
            self.model.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, self.n_latent, device=x.device)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, token_table: str | Path | None = None,
                        gene_medians: str | Path | None = None, **kwargs: Any) -> "TransformerEncoder":
        """A fitted encoder from a local BERT masked-LM folder (``config.json`` + ``model.safetensors``)
        and a gene-token table (JSON/TSV; pickles are refused), rank-value encoded as Geneformer does.
        See :func:`.checkpoint.load_pretrained`."""
        from .checkpoint import load_pretrained

        return load_pretrained(cls, path, token_table=token_table, gene_medians=gene_medians, **kwargs)

