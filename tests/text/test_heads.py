"""TextClassifier: losses against torch's references, pooling, frozen encoder, label checks, predict."""

import pytest
import torch
import torch.nn.functional as F

from recsys.errors import ConfigError, DataError
from recsys.text.encoder import BertEncoder
from recsys.text.heads import TextClassifier, check_labels, predict, task_loss
from recsys.text.tokenizer import TextTokenizer

TEXTS = ["red apple", "green apple pie", "red car", "blue sky at night", "apple", "green green car"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def tok():
    return TextTokenizer.train(TEXTS * 3, vocab_size=80)


def encoder(tok, **kw):
    torch.manual_seed(0)
    return BertEncoder(tok.vocab_size, dim=16, num_layers=1, num_heads=2, max_len=32, **kw)


def test_losses_match_torch_references():
    logits = torch.tensor([[0.5, -1.0, 2.0], [-0.3, 0.1, 0.0]])
    multi = torch.tensor([[1, 0, 1], [0, 0, 1]])
    assert torch.allclose(task_loss(logits, multi, "multilabel"), F.binary_cross_entropy_with_logits(logits, multi.float()))
    classes = torch.tensor([2, 0])
    assert torch.allclose(task_loss(logits, classes, "multiclass"), F.cross_entropy(logits, classes))
    values = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    assert torch.allclose(task_loss(logits, values, "regression"), F.mse_loss(logits, values))
    assert torch.allclose(task_loss(logits[:, :1], values[:, 0], "regression"), F.mse_loss(logits[:, 0], values[:, 0]))
    with pytest.raises(ConfigError, match="task"):
        task_loss(logits, multi, "ranking")


@pytest.mark.parametrize("task", ["multilabel", "multiclass", "regression"])
def test_classifier_loss_is_task_loss_of_its_logits(tok, task):
    clf = TextClassifier(encoder(tok), num_labels=3, task=task).eval()
    batch = tok(TEXTS[:2])
    labels = {"multilabel": torch.tensor([[1.0, 0, 1], [0, 1, 0]]), "multiclass": torch.tensor([1, 2]),
              "regression": torch.randn(2, 3)}[task]
    logits = clf(batch["input_ids"], batch["attention_mask"])
    assert logits.shape == (2, 3)
    assert torch.allclose(clf.loss({**batch, "labels": labels}), task_loss(logits, labels, task))
    features = clf.features(batch["input_ids"], batch["attention_mask"])
    assert torch.allclose(clf.loss({"features": features, "labels": labels}), task_loss(logits, labels, task))


def test_pooling(tok):
    enc = encoder(tok, dropout=0.0).eval()
    batch = tok(TEXTS[:3])
    hidden = enc(batch["input_ids"], batch["attention_mask"])
    mean = TextClassifier(enc, 2, pooling="mean").features(batch["input_ids"], batch["attention_mask"])
    cls = TextClassifier(enc, 2, pooling="cls").features(batch["input_ids"], batch["attention_mask"])
    assert torch.allclose(cls, hidden[:, 0])
    assert torch.allclose(mean[1], hidden[1, : int(batch["attention_mask"][1].sum())].mean(0), atol=1e-6)
    with pytest.raises(ConfigError, match="pooling"):
        TextClassifier(enc, 2, pooling="max")


def test_frozen_encoder_has_no_grad_and_no_dropout(tok):
    clf = TextClassifier(encoder(tok, dropout=0.5), num_labels=2, freeze_encoder=True, dropout=0.0).train()
    assert not any(p.requires_grad for p in clf.encoder.parameters()) and clf.head.weight.requires_grad
    assert not clf.encoder.training and clf.head.training
    batch = tok(TEXTS[:3])
    first, second = clf(**batch), clf(**batch)
    assert torch.equal(first, second)  # encoder dropout is off while training the head
    first.sum().backward()
    assert clf.head.weight.grad is not None and all(p.grad is None for p in clf.encoder.parameters())


def test_bad_configs_and_labels(tok):
    enc = encoder(tok)
    with pytest.raises(ConfigError, match="task"):
        TextClassifier(enc, 2, task="ranking")
    with pytest.raises(ConfigError, match="num_labels"):
        TextClassifier(enc, 1, task="multiclass")
    with pytest.raises(DataError, match="3 texts"):
        check_labels(torch.zeros(2, 4), 3, 4, "multilabel", "here")
    with pytest.raises(DataError, match=r"\(N, 4\)"):
        check_labels(torch.zeros(3, 5), 3, 4, "multilabel", "here")
    with pytest.raises(DataError, match="0 or 1"):
        check_labels(torch.full((3, 4), 0.5), 3, 4, "multilabel", "here")
    with pytest.raises(DataError, match="class ids"):
        check_labels(torch.tensor([0, 1, 4]), 3, 4, "multiclass", "here")
    with pytest.raises(DataError, match="indices"):
        check_labels(torch.zeros(3, 4), 3, 4, "multiclass", "here")
    assert check_labels(torch.tensor([1.0, 2.0, 3.0]), 3, 1, "regression", "here").shape == (3, 1)


def test_predict_matches_forward_in_input_order(tok):
    clf = TextClassifier(encoder(tok), num_labels=3, task="multiclass").train()
    probs = predict(clf, tok, TEXTS, batch_size=2, device="cpu")
    assert clf.training  # mode restored
    clf.eval()
    with torch.no_grad():
        reference = torch.cat([clf(**tok([t])).softmax(-1) for t in TEXTS])
    assert torch.allclose(probs, reference, atol=1e-5)
    assert torch.allclose(probs.sum(1), torch.ones(len(TEXTS)))
    pairs = predict(clf, tok, TEXTS[:2], pairs=["car", "sky"], device="cpu")
    with torch.no_grad():
        assert torch.allclose(pairs, clf(**tok(TEXTS[:2], pairs=["car", "sky"])).softmax(-1), atol=1e-5)
