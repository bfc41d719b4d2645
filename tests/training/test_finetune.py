"""fine_tune: fine-tuning vs feature extraction, a planted multi-label task, validation, bad input."""

import pytest
import torch

from recsys.errors import ConfigError, DataError
from recsys.text.encoder import BertEncoder
from recsys.text.heads import predict
from recsys.text.tokenizer import TextTokenizer
from recsys.training.finetune import fine_tune

WORDS = ["red", "green", "blue", "apple", "car", "night"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    """Whole-word vocabulary in a fixed order (WordPiece training may number tokens differently run to run)."""
    vocab = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    return TextTokenizer.from_pretrained(vocab, max_length=64)


def planted(n, seed):
    """Texts of 1-3 distinct words; label j says whether WORDS[j] occurs."""
    g = torch.Generator().manual_seed(seed)
    present = torch.rand(n, len(WORDS), generator=g) < 0.35
    present[present.sum(1) == 0, 0] = True
    texts = [" ".join(w for w, p in zip(WORDS, row) if p) for row in present.tolist()]
    return texts, present.float()


def tiny(tok):
    torch.manual_seed(0)
    return BertEncoder(tok.vocab_size, dim=32, num_layers=1, num_heads=2, max_len=16)


def test_fine_tuning_changes_encoder_feature_extraction_does_not(tok):
    texts, labels = planted(64, 0)
    enc = tiny(tok)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    clf, _ = fine_tune(texts, labels, tok, enc, epochs=1, batch_size=16, lr=1e-3, freeze_encoder=True,
                       device="cpu", progress=False)
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())  # bitwise equal
    assert not clf.head.weight.detach().equal(torch.zeros_like(clf.head.weight)) and clf.head.bias.abs().sum() > 0
    fine_tune(texts, labels, tok, enc, epochs=1, batch_size=16, lr=1e-3, device="cpu", progress=False)
    assert any(not torch.equal(before[k], v) for k, v in enc.state_dict().items())


@pytest.mark.slow  # multi-second training: the slow step of CI runs it
def test_planted_multilabel_is_learned(tok):
    texts, labels = planted(384, 1)
    test_texts, test_labels = planted(128, 2)
    clf, result = fine_tune(texts, labels, tok, tiny(tok), epochs=12, batch_size=32, lr=2e-3, head_lr=1e-2,
                            valid=(test_texts, test_labels), device="cpu", progress=False, max_length=16)
    assert [r["valid_loss"] for r in result.history][-1] < result.history[0]["valid_loss"]
    predicted = predict(clf, tok, test_texts, device="cpu") > 0.5
    truth = test_labels.bool()
    f1 = 2 * (predicted & truth).sum() / (predicted.sum() + truth.sum())
    assert f1 > 0.9


def test_deterministic_per_seed(tok):
    texts, labels = planted(48, 3)
    runs = [fine_tune(texts, labels, tok, tiny(tok), epochs=1, batch_size=16, seed=5, device="cpu", progress=False)[0]
            for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(runs[0].state_dict().values(), runs[1].state_dict().values()))


def test_multiclass_and_regression_run(tok):
    texts, labels = planted(32, 4)
    clf, _ = fine_tune(texts, labels.argmax(1), tok, tiny(tok), task="multiclass", epochs=1, device="cpu", progress=False)
    assert clf.num_labels == len(WORDS) and torch.allclose(predict(clf, tok, texts[:3], device="cpu").sum(1), torch.ones(3))
    clf, _ = fine_tune(texts, labels.sum(1), tok, tiny(tok), task="regression", epochs=1, device="cpu", progress=False)
    assert predict(clf, tok, texts[:3], device="cpu").shape == (3, 1)


def test_bad_input_raises_one_clear_error(tok):
    texts, labels = planted(8, 5)
    enc = tiny(tok)
    with pytest.raises(DataError, match="8 texts"):
        fine_tune(texts, labels[:5], tok, enc, progress=False, device="cpu")
    with pytest.raises(DataError, match="multilabel labels must be"):
        fine_tune(texts, labels[:, 0], tok, enc, num_labels=6, progress=False, device="cpu")
    with pytest.raises(ConfigError, match="unknown task"):
        fine_tune(texts, labels, tok, enc, task="ranking", progress=False, device="cpu")
    with pytest.raises(DataError, match="valid"):
        fine_tune(texts, labels, tok, enc, valid=(texts[:3], labels), progress=False, device="cpu")


def test_optimizer_is_adamw_with_bert_schedule():
    from recsys.training.finetune import LinearWarmupAdamW

    w, ref = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    ours = LinearWarmupAdamW([w], lr=0.1, total_steps=4, warmup_steps=0, weight_decay=0.1)
    theirs = torch.optim.AdamW([ref], lr=0.1, weight_decay=0.1)
    lrs = []
    for _ in range(4):
        lrs.append(ours.param_groups[0]["lr"])
        theirs.param_groups[0]["lr"] = lrs[-1]
        g = torch.randn(3)
        w.grad, ref.grad = g.clone(), g.clone()
        ours.step()
        theirs.step()
    assert lrs == pytest.approx([0.1, 0.075, 0.05, 0.025]) and torch.allclose(w, ref)


def test_optimizer_state_dict_resumes_the_schedule():
    from recsys.training.finetune import LinearWarmupAdamW

    def run(steps, resume_at=None):
        torch.manual_seed(0)
        w = torch.nn.Parameter(torch.ones(3))
        opt = LinearWarmupAdamW([w], lr=0.1, total_steps=6, warmup_steps=2)
        lrs = []
        for step in range(steps):
            if step == resume_at:  # a new optimizer from the saved state, as a resumed run builds it
                saved = opt.state_dict()
                opt = LinearWarmupAdamW([w], lr=0.1, total_steps=6, warmup_steps=2)
                opt.load_state_dict(saved)
            lrs.append(opt.param_groups[0]["lr"])
            w.grad = torch.full((3,), 0.5)
            opt.step()
        return lrs, w.detach().clone()

    straight, w_straight = run(6)
    resumed, w_resumed = run(6, resume_at=3)
    assert resumed == pytest.approx(straight) and torch.equal(w_resumed, w_straight)
    assert straight[3] != pytest.approx(straight[0])  # the schedule moved, so the test can fail
