"""A text classifier (bag of word embeddings, fastText-style) that knows nothing of tuner.

It runs the same way in three places:

- as a command trial on Ray: ``python train.py --lr 0.01 ...`` with the bundled ``data/``;
- as a SageMaker training job in the image built from the ``Dockerfile``: the hyperparameters
  arrive as arguments, the data in ``SM_CHANNEL_TRAIN``, and the model goes to ``SM_MODEL_DIR``;
- by hand, to try one configuration.

Each epoch prints ``epoch=N val_loss=X val_accuracy=Y``, which the spec's
``metric_definitions`` read (on SageMaker from the job's CloudWatch log), so early stopping
works on both backends. It trains on a GPU when there is one.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import time
from collections import Counter
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent


def read(path: Path) -> tuple[list[str], list[str]]:
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def tokens(text: str, ngrams: int) -> list[str]:
    """The words of ``text`` and its word n-grams up to ``ngrams``."""
    words = re.findall(r"[a-z0-9']+", text.lower())
    grams = [
        " ".join(words[i : i + n]) for n in range(2, ngrams + 1) for i in range(len(words) - n + 1)
    ]
    return words + grams


class Vocabulary:
    def __init__(self, texts: list[str], ngrams: int, min_count: int):
        counts = Counter(t for text in texts for t in tokens(text, ngrams))
        self.ngrams = ngrams
        self.index = {t: i + 1 for i, (t, n) in enumerate(counts.most_common()) if n >= min_count}

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat token ids and offsets, as nn.EmbeddingBag takes them (0 = unknown)."""
        ids: list[int] = []
        offsets: list[int] = []
        for text in texts:
            offsets.append(len(ids))
            ids.extend(self.index.get(t, 0) for t in tokens(text, self.ngrams))
        return torch.tensor(ids, dtype=torch.long), torch.tensor(offsets, dtype=torch.long)


class Classifier(nn.Module):
    def __init__(self, vocabulary: int, dim: int, hidden: int, classes: int, dropout: float):
        super().__init__()
        self.embed = nn.EmbeddingBag(vocabulary + 1, dim, mode="mean")
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        if hidden:
            layers += [nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout)]
        layers.append(nn.Linear(hidden or dim, classes))
        self.head = nn.Sequential(*layers)

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(ids, offsets))


def batches(texts: list[str], size: int, generator: torch.Generator) -> list[list[int]]:
    order = torch.randperm(len(texts), generator=generator).tolist()
    return [order[i : i + size] for i in range(0, len(order), size)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--embed_dim", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=0)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--weight_decay", type=float, default=1e-5)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--ngrams", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=os.environ.get("SM_CHANNEL_TRAIN", str(HERE / "data")))
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR"))
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    train_texts, train_labels = read(Path(args.data, "train.csv"))
    val_texts, val_labels = read(Path(args.data, "val.csv"))
    classes = sorted(set(train_labels))
    vocabulary = Vocabulary(train_texts, args.ngrams, min_count=2)
    label_ids = {c: i for i, c in enumerate(classes)}
    y_train = torch.tensor([label_ids[c] for c in train_labels], device=device)
    y_val = torch.tensor([label_ids[c] for c in val_labels], device=device)
    val_ids, val_offsets = (t.to(device) for t in vocabulary.encode(val_texts))

    model = Classifier(
        len(vocabulary.index), args.embed_dim, args.hidden, len(classes), args.dropout
    ).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    started = time.time()
    for epoch in range(args.epochs):
        model.train()
        for batch in batches(train_texts, args.batch_size, generator):
            ids, offsets = vocabulary.encode([train_texts[i] for i in batch])
            optimizer.zero_grad()
            loss = loss_fn(model(ids.to(device), offsets.to(device)), y_train[batch])
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            logits = model(val_ids, val_offsets)
            val_loss = loss_fn(logits, y_val).item()
            accuracy = (logits.argmax(1) == y_val).float().mean().item()
        print(f"epoch={epoch} val_loss={val_loss:.5f} val_accuracy={accuracy:.4f}", flush=True)
    print(f"trained in {time.time() - started:.1f}s on {device}", flush=True)

    if args.model_dir:
        folder = Path(args.model_dir)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), folder / "model.pt")
        (folder / "vocabulary.json").write_text(
            json.dumps({"classes": classes, "ngrams": args.ngrams, "index": vocabulary.index})
        )


if __name__ == "__main__":
    main()
