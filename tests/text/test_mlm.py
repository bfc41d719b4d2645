import torch
import torch.nn.functional as F

from recsys.text.encoder import BertEncoder
from recsys.text.mlm import IGNORE_INDEX, MaskedLanguageModel, MLMBatches, mask_tokens
from recsys.text.tokenizer import TextTokenizer


def test_masking_proportions():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 1000, (400, 100), generator=g)
    special = torch.zeros_like(ids, dtype=torch.bool)
    special[:, 0] = special[:, -10:] = True  # CLS and padding
    inputs, labels = mask_tokens(ids, special, mask_id=4, vocab_size=1000, generator=g)
    selected = labels != IGNORE_INDEX
    assert not selected[special].any()
    assert abs(selected.sum().item() / (~special).sum().item() - 0.15) < 0.01
    assert torch.equal(labels[selected], ids[selected])
    assert torch.equal(inputs[~selected], ids[~selected])  # unselected tokens untouched
    n = selected.sum().item()
    masked = (inputs[selected] == 4).sum().item() / n
    unchanged = (inputs[selected] == ids[selected]).sum().item() / n
    random = 1 - masked - unchanged
    assert abs(masked - 0.8) < 0.02 and abs(unchanged - 0.1) < 0.015 and abs(random - 0.1) < 0.015


def test_loss_only_on_masked_positions():
    torch.manual_seed(0)
    enc = BertEncoder(vocab_size=20, dim=8, num_layers=1, num_heads=2, max_len=8, dropout=0.0).eval()
    model = MaskedLanguageModel(enc).eval()
    ids = torch.tensor([[2, 6, 7, 8, 3]])
    labels = torch.tensor([[IGNORE_INDEX, 9, IGNORE_INDEX, 11, IGNORE_INDEX]])
    loss = model.loss({"input_ids": ids, "labels": labels})
    hidden = enc(ids)[0, [1, 3]]
    logits = model.transform(hidden) @ enc.embeddings.word.weight.T + model.bias
    assert torch.allclose(loss, F.cross_entropy(logits, torch.tensor([9, 11])))


def test_batches_deterministic_per_epoch():
    texts = [f"{a} {b} story" for a in ("red", "green", "blue", "dark") for b in ("apple", "car", "house", "night")] * 4
    tok = TextTokenizer.train(texts, vocab_size=60)
    batches = MLMBatches(texts, tok, batch_size=8, seed=3)
    first = [b["labels"] for b in batches]
    assert all(torch.equal(a, b) for a, b in zip(first, (b["labels"] for b in batches)))
    batches.set_epoch(1)
    assert not all(torch.equal(a, b) for a, b in zip(first, (b["labels"] for b in batches)))


def test_model_forward_is_its_loss():
    enc = BertEncoder(vocab_size=20, dim=8, num_layers=1, num_heads=2, max_len=8, dropout=0.0).eval()
    model = MaskedLanguageModel(enc).eval()
    batch = {"input_ids": torch.tensor([[2, 6, 7, 3]]), "labels": torch.tensor([[IGNORE_INDEX, 9, IGNORE_INDEX, IGNORE_INDEX]])}
    assert torch.equal(model(batch), model.loss(batch))
    nothing = {"input_ids": batch["input_ids"], "labels": torch.full((1, 4), IGNORE_INDEX)}
    assert model.loss(nothing).item() == 0.0
