"""roicast's network written in plain PyTorch, and a plain training loop: gpu.py's yardstick.

The same layers as `roicast.models.hybrid` (Bi-LSTM 64 → dropout → Bi-LSTM 32 → dropout → 4-head
self-attention with 64-wide keys, projected back, + residual → LayerNorm → mean over time →
Dense 128 ReLU → dropout → Dense per asset, plus the linear highway for `highway`), AdamW
with the same settings and MSE. It is what a PyTorch user would write for speed: cuDNN's
LSTM, fused scaled-dot-product attention, the daily series on the device and each batch's
windows gathered there, and one host synchronisation per epoch. An epoch is a training pass
and a validation pass in batches of 256, as in roicast's fit.
"""

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

EVAL_BATCH = 256


class Attention(nn.Module):
    """Keras's MultiHeadAttention as roicast uses it: `heads` heads of `key_dim`, back to `width`."""

    def __init__(self, width: int, heads: int = 4, key_dim: int = 64):
        super().__init__()
        self.heads, self.key_dim = heads, key_dim
        self.query, self.key, self.value = (nn.Linear(width, heads * key_dim) for _ in range(3))
        self.output = nn.Linear(heads * key_dim, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, steps, _ = x.shape

        def split(projection: nn.Linear) -> torch.Tensor:
            return projection(x).view(batch, steps, self.heads, self.key_dim).transpose(1, 2)

        attended = F.scaled_dot_product_attention(split(self.query), split(self.key), split(self.value))
        return self.output(attended.transpose(1, 2).reshape(batch, steps, -1))


class Network(nn.Module):
    def __init__(self, seq_len: int, n_assets: int, n_features: int, highway: bool):
        super().__init__()
        self.shape = (seq_len, n_assets, n_features)
        self.lstm_1 = nn.LSTM(n_assets * n_features, 64, batch_first=True, bidirectional=True)
        self.lstm_2 = nn.LSTM(128, 32, batch_first=True, bidirectional=True)
        self.dropout_lstm = nn.Dropout(0.2)
        self.attention = Attention(64)
        self.norm = nn.LayerNorm(64, eps=1e-3)
        self.dense = nn.Linear(64, 128)
        self.dropout_dense = nn.Dropout(0.3)
        self.head = nn.Linear(128, n_assets)
        self.highway = nn.Linear(seq_len * n_features, 1) if highway else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.dropout_lstm(self.lstm_1(x)[0])
        hidden = self.dropout_lstm(self.lstm_2(hidden)[0])
        hidden = self.norm(hidden + self.attention(hidden))
        out = self.head(self.dropout_dense(torch.relu(self.dense(hidden.mean(dim=1)))))
        if self.highway is None:
            return out
        seq_len, n_assets, n_features = self.shape
        by_asset = x.view(len(x), seq_len, n_assets, n_features).permute(0, 2, 1, 3)
        return out + self.highway(by_asset.reshape(len(x), n_assets, -1)).squeeze(-1)


def train_epochs(arrays: dict, architecture: str, batch_size: int, epochs: int,
                 seed: int = 42) -> list[float]:
    """Train the network for `epochs`; the wall seconds of each epoch."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(seed)
    seq_len = arrays.seq_len
    n_days, n_assets, n_features = arrays.features.shape
    series = torch.as_tensor(arrays.features.reshape(n_days, -1), device=device)
    offsets = torch.arange(-seq_len, 0, device=device)

    def period(name: str) -> tuple[torch.Tensor, torch.Tensor]:
        indices = arrays.indices(name)
        targets = arrays.target_rows(indices).astype(np.float32)
        return (torch.as_tensor(indices, device=device), torch.as_tensor(targets, device=device))

    (train_idx, train_y), (val_idx, val_y) = period("train"), period("val")
    model = Network(seq_len, n_assets, n_features, architecture == "highway").to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4, eps=1e-7)
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(len(train_idx), device=device)
        for first in range(0, len(order), batch_size):
            rows = order[first:first + batch_size]
            loss = F.mse_loss(model(series[train_idx[rows, None] + offsets]), train_y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        total = torch.zeros((), device=device)
        with torch.no_grad():
            for first in range(0, len(val_idx), EVAL_BATCH):
                rows = slice(first, first + EVAL_BATCH)
                output = model(series[val_idx[rows, None] + offsets])
                total += F.mse_loss(output, val_y[rows], reduction="sum")
        total.item()  # the one synchronisation: the epoch's work is done
        seconds.append(time.perf_counter() - start)
    return seconds
